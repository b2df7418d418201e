"""Objects: a body with an `_OBJECT_HEADER` 0x30 bytes before it, and handle tables."""

from __future__ import annotations

from machine.types.view import Struct

OBJECT_HEADER_BODY = 0x30
HANDLE_TABLE_ENTRY_SIZE = 0x10
HANDLES_PER_PAGE = 0x1000 // HANDLE_TABLE_ENTRY_SIZE

# TypeIndex of each object type: the machine's own ObTypeIndexTable order (a debugger
# resolves the index through the table in memory, so only consistency matters).
OBJECT_TYPES = {"Type": 2, "Directory": 3, "SymbolicLink": 4, "Token": 5, "Job": 6,
                "Process": 7, "Thread": 8, "Event": 16, "Device": 33, "Driver": 34,
                "File": 37}


def create_object(m, type_name: str, body_size: int, tag: str, pool_type: int = 0) -> int:
    """ObCreateObject: allocate header + body from pool; returns the body address."""
    block = m.pool.allocate(pool_type, OBJECT_HEADER_BODY + body_size, tag)
    h = Struct(m.kspace, "_OBJECT_HEADER", block)
    h.set("PointerCount", 1)
    h.set("HandleCount", 0)
    h.set("TypeIndex", OBJECT_TYPES[type_name])
    h.set("KernelObject", 1)
    return block + OBJECT_HEADER_BODY


def reference(m, body: int, count: int = 1) -> None:
    h = Struct(m.kspace, "_OBJECT_HEADER", body - OBJECT_HEADER_BODY)
    h.set("PointerCount", h.get("PointerCount") + count)


def create_handle_table(m, pid: int) -> int:
    """A one-level `_HANDLE_TABLE` whose TableCode points at one page of entries."""
    ht = m.pool.allocate(1, m.catalog.get("_HANDLE_TABLE").size, "Obtb")
    page = m.pool.allocate(1, 0x1000, "Obtb")
    t = Struct(m.kspace, "_HANDLE_TABLE", ht)
    t.set("TableCode", page)  # low bits 0: a single level
    t.set("UniqueProcessId", pid)
    t.set("NextHandleNeedingPool", HANDLES_PER_PAGE * 4)
    return ht


def insert_handle(m, handle_table: int, body: int, access: int = 0x1F0001) -> int:
    """ObInsertObject's handle: the first free entry; handles are multiples of 4."""
    table = Struct(m.kspace, "_HANDLE_TABLE", handle_table).get("TableCode") & ~7
    for index in range(1, HANDLES_PER_PAGE):  # entry 0 is never used
        entry = table + index * HANDLE_TABLE_ENTRY_SIZE
        e = Struct(m.kspace, "_HANDLE_TABLE_ENTRY", entry)
        if e.get("ObjectPointerBits") == 0:
            header = body - OBJECT_HEADER_BODY
            e.set("ObjectPointerBits", (header >> 4) & ((1 << 44) - 1))
            e.set("Unlocked", 1)
            e.set("Attributes", 0)
            e.set("GrantedAccessBits", access)
            h = Struct(m.kspace, "_OBJECT_HEADER", header)
            h.set("HandleCount", h.get("HandleCount") + 1)
            reference(m, body)
            return index * 4
    raise RuntimeError("handle table full")


def lookup_handle(m, handle_table: int, handle: int) -> int | None:
    """ExpLookupHandleTableEntry + the object body it names."""
    table = Struct(m.kspace, "_HANDLE_TABLE", handle_table).get("TableCode") & ~7
    index = handle // 4
    if not 0 < index < HANDLES_PER_PAGE:
        return None
    e = Struct(m.kspace, "_HANDLE_TABLE_ENTRY", table + index * HANDLE_TABLE_ENTRY_SIZE)
    bits = e.get("ObjectPointerBits")
    if not bits:
        return None
    header = (bits << 4) | 0xFFFF000000000000
    return header + OBJECT_HEADER_BODY
