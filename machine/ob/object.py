"""Objects: a body with an `_OBJECT_HEADER` 0x30 bytes before it (and an optional
name-info header before that), object types, the directory namespace, handle tables."""

from __future__ import annotations

from collections.abc import Callable

from machine.ke.native import Call, routine
from machine.rtl.unicode import read_unicode_string
from machine.types.view import Struct

OBJECT_HEADER_BODY = 0x30
HANDLE_TABLE_ENTRY_SIZE = 0x10
HANDLES_PER_PAGE = 0x1000 // HANDLE_TABLE_ENTRY_SIZE

# Object types in ObTypeIndexTable order: the machine's own numbering (a debugger finds
# a type through the table in memory); each type object's Key is its pool tag.
OBJECT_TYPES = {"Type": 2, "Directory": 3, "SymbolicLink": 4, "Token": 5, "Job": 6,
                "Process": 7, "Thread": 8, "Event": 16, "Mutant": 17, "Semaphore": 19,
                "Timer": 20, "Device": 33, "Driver": 34, "File": 37}
TYPE_TAGS = {"Type": "ObjT", "Directory": "Dire", "SymbolicLink": "Symb", "Token": "Toke",
             "Job": "Job ", "Process": "Proc", "Thread": "Thre", "Event": "Even",
             "Mutant": "Muta", "Semaphore": "Sema", "Timer": "Time", "Device": "Devi",
             "Driver": "Driv", "File": "File"}
OB_INFO_NAME = 0x2  # InfoMask bit: an _OBJECT_HEADER_NAME_INFO precedes the header
NAME_INFO_SIZE = 0x20
DIRECTORY_BUCKETS = 37


def encode_type_index(m, header: int, index: int) -> int:
    """Windows 10 stores TypeIndex XORed with nt!ObHeaderCookie and the second byte of
    the header's address; a debugger undoes it the same way."""
    return index ^ m.ob_header_cookie ^ ((header >> 8) & 0xFF)


def create_object(m, type_name: str, body_size: int, tag: str, pool_type: int = 0,
                  name: str | None = None, directory: int = 0) -> int:
    """ObCreateObject: allocate [name info] + header + body from pool; with a name and a
    directory, the object is also inserted in that directory.  Returns the body."""
    extra = NAME_INFO_SIZE if name is not None else 0
    block = m.pool.allocate(pool_type, extra + OBJECT_HEADER_BODY + body_size, tag)
    header = block + extra
    h = Struct(m.kspace, "_OBJECT_HEADER", header)
    h.set("PointerCount", 1)
    h.set("HandleCount", 0)
    h.set("TypeIndex", encode_type_index(m, header, OBJECT_TYPES[type_name]))
    h.set("KernelObject", 1)
    body = header + OBJECT_HEADER_BODY
    if name is not None:
        from machine.ldr.loader import write_unicode_string

        h.set("InfoMask", OB_INFO_NAME)
        info = Struct(m.kspace, "_OBJECT_HEADER_NAME_INFO", block)
        info.set("Directory", directory)
        write_unicode_string(m, info.addr("Name"), name, "ObNm")
        if directory:
            insert_in_directory(m, directory, name, body)
    kind = m.object_types.get(type_name)
    if kind:
        t = Struct(m.kspace, "_OBJECT_TYPE", kind)
        t.set("TotalNumberOfObjects", t.get("TotalNumberOfObjects") + 1)
        t.set("HighWaterNumberOfObjects",
              max(t.get("HighWaterNumberOfObjects"), t.get("TotalNumberOfObjects")))
    return body


def name_hash(name: str) -> int:
    """The bucket hash of a directory entry (the machine's own function of the
    upper-cased name; lookups and a debugger's walk of all buckets both work with it)."""
    h = 0
    for ch in name.upper():
        h = (h * 37 + ord(ch)) & 0xFFFFFFFF
    return h


def insert_in_directory(m, directory: int, name: str, body: int) -> None:
    entry = m.pool.allocate(1, m.catalog.get("_OBJECT_DIRECTORY_ENTRY").size, "ObDi")
    e = Struct(m.kspace, "_OBJECT_DIRECTORY_ENTRY", entry)
    h = name_hash(name)
    d = Struct(m.kspace, "_OBJECT_DIRECTORY", directory)
    bucket = f"HashBuckets[{h % DIRECTORY_BUCKETS}]"
    e.set("ChainLink", d.get(bucket))
    e.set("Object", body)
    e.set("HashValue", h)
    d.set(bucket, entry)


def remove_from_directory(m, body: int) -> None:
    """The directory entry naming the object goes (ObpDeleteDirectoryEntry); the object
    itself lives on while referenced, nameless to lookups."""
    h = Struct(m.kspace, "_OBJECT_HEADER", body - OBJECT_HEADER_BODY)
    if not h.get("InfoMask") & OB_INFO_NAME:
        return
    info = Struct(m.kspace, "_OBJECT_HEADER_NAME_INFO", h.address - NAME_INFO_SIZE)
    directory, name = info.get("Directory"), object_name(m, body)
    if not directory or name is None:
        return
    d = Struct(m.kspace, "_OBJECT_DIRECTORY", directory)
    link = d.addr(f"HashBuckets[{name_hash(name) % DIRECTORY_BUCKETS}]")
    while entry := m.kspace.read_u64(link):
        e = Struct(m.kspace, "_OBJECT_DIRECTORY_ENTRY", entry)
        if e.get("Object") == body:
            m.kspace.write_u64(link, e.get("ChainLink"))
            free_pool_block(m, entry)
            break
        link = e.addr("ChainLink")
    info.set("Directory", 0)


def object_name(m, body: int) -> str | None:
    h = Struct(m.kspace, "_OBJECT_HEADER", body - OBJECT_HEADER_BODY)
    if not h.get("InfoMask") & OB_INFO_NAME:
        return None
    return read_unicode_string(m.kspace, h.address - NAME_INFO_SIZE + 8)  # .Name


def lookup_in_directory(m, directory: int, name: str) -> int | None:
    """The object a directory holds under `name` (case-insensitive), or None."""
    d = Struct(m.kspace, "_OBJECT_DIRECTORY", directory)
    entry = d.get(f"HashBuckets[{name_hash(name) % DIRECTORY_BUCKETS}]")
    while entry:
        e = Struct(m.kspace, "_OBJECT_DIRECTORY_ENTRY", entry)
        found = object_name(m, e.get("Object"))
        if found is not None and found.lower() == name.lower():
            return e.get("Object")
        entry = e.get("ChainLink")
    return None


def lookup_object(m, path: str) -> int | None:
    """ObpLookupObjectName: `\\Device\\MyFault` -> body, through symbolic links."""
    from machine.ob.symlink import lookup_object as lookup_through_links

    return lookup_through_links(m, path)


def create_directory(m, name: str, parent: int) -> int:
    size = m.catalog.get("_OBJECT_DIRECTORY").size
    return create_object(m, "Directory", size, "Dire", 1, name=name, directory=parent)


def init_object_manager(m) -> None:
    """Type objects in ObTypeIndexTable (and \\ObjectTypes), and the namespace roots."""
    import random

    m.ob_header_cookie = random.Random(f"ob:{m.config.seed}").randrange(1, 256)
    m.kspace.write_int(m.sym("nt!ObHeaderCookie"), 1, m.ob_header_cookie)
    dir_size = m.catalog.get("_OBJECT_DIRECTORY").size
    root = create_object(m, "Directory", dir_size, "Dire", 1, name="\\")
    m.kspace.write_u64(m.sym("nt!ObpRootDirectoryObject"), root)
    types_dir = create_directory(m, "ObjectTypes", root)
    table = m.sym("nt!ObTypeIndexTable")
    tsize = m.catalog.get("_OBJECT_TYPE").size
    for type_name, index in OBJECT_TYPES.items():
        body = create_object(m, "Type", tsize, "ObjT", 0, name=type_name, directory=types_dir)
        t = Struct(m.kspace, "_OBJECT_TYPE", body)
        from machine.ex.pool import tag_value
        from machine.ldr.loader import write_unicode_string
        from machine.rtl.lists import initialize_list_head

        initialize_list_head(m.kspace, t.addr("TypeList"))
        write_unicode_string(m, t.addr("Name"), type_name, "ObNm")
        t.set("Index", index)
        t.set("Key", tag_value(TYPE_TAGS[type_name]))
        m.kspace.write_u64(table + 8 * index, body)
        m.object_types[type_name] = body
    # Objects created before their type existed (the root and \\ObjectTypes, the
    # type objects themselves) are counted now.
    for type_name, count in (("Directory", 2), ("Type", len(OBJECT_TYPES))):
        Struct(m.kspace, "_OBJECT_TYPE", m.object_types[type_name]).set(
            "TotalNumberOfObjects", count)
    m.directories = {"\\": root, "\\ObjectTypes": types_dir}
    for path in ("Device", "Driver", "GLOBAL??", "BaseNamedObjects", "KernelObjects"):
        m.directories["\\" + path] = create_directory(m, path, root)


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
            e.set("GrantedAccessBits", map_generic_access(m, body, access))
            h = Struct(m.kspace, "_OBJECT_HEADER", header)
            h.set("HandleCount", h.get("HandleCount") + 1)
            reference(m, body)
            return index * 4
    raise RuntimeError("handle table full")


# GENERIC_READ, GENERIC_WRITE, GENERIC_EXECUTE, GENERIC_ALL and what the File type's
# GENERIC_MAPPING makes of them (FILE_GENERIC_READ, ...): a handle entry keeps specific
# rights only (GrantedAccessBits is 25 bits wide).
GENERIC_RIGHTS = (0x80000000, 0x40000000, 0x20000000, 0x10000000)
FILE_GENERIC_MAPPING = (0x120089, 0x120116, 0x1200A0, 0x1F01FF)
GRANTED_ACCESS_BITS = 0x1FFFFFF


def map_generic_access(m, body: int, access: int) -> int:
    """RtlMapGenericMask with the object type's mapping (the File type's; other types
    keep only their specific rights)."""
    if type_of(m, body) == "File":
        for generic, specific in zip(GENERIC_RIGHTS, FILE_GENERIC_MAPPING, strict=True):
            if access & generic:
                access = access & ~generic | specific
    return access & GRANTED_ACCESS_BITS


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


def handle_object(m, thread, handle: int) -> int | None:
    """The object body a handle in the thread's process's table names, or None (no such
    handle, or a process whose table has been run down)."""
    table = Struct(m.kspace, "_EPROCESS", thread.process.eprocess).get("ObjectTable")
    return lookup_handle(m, table, handle) if table else None


def handle_object_of_type(m, thread, handle: int, type_name: str) -> int | None:
    """The object a handle of the thread's process names, if it is of the named type."""
    body = handle_object(m, thread, handle)
    return body if body is not None and type_of(m, body) == type_name else None


def remove_handle(m, handle_table: int, handle: int) -> int | None:
    """ObpCloseHandle's table part: free the entry; the object it named, or None."""
    body = lookup_handle(m, handle_table, handle)
    if body is None:
        return None
    table = Struct(m.kspace, "_HANDLE_TABLE", handle_table).get("TableCode") & ~7
    entry = table + (handle // 4) * HANDLE_TABLE_ENTRY_SIZE
    m.kspace.write(entry, bytes(HANDLE_TABLE_ENTRY_SIZE))
    h = Struct(m.kspace, "_OBJECT_HEADER", body - OBJECT_HEADER_BODY)
    h.set("HandleCount", h.get("HandleCount") - 1)
    # The handle's reference goes; a process or thread whose last reference it was is
    # deleted now (a file's close path still needs its object: files have no delete
    # procedure here).
    dereference(m, body)
    return body


def type_of(m, body: int) -> str:
    """The name of an object's type, from its header's encoded TypeIndex."""
    header = body - OBJECT_HEADER_BODY
    stored = Struct(m.kspace, "_OBJECT_HEADER", header).get("TypeIndex")
    index = stored ^ m.ob_header_cookie ^ ((header >> 8) & 0xFF)
    return next((name for name, i in OBJECT_TYPES.items() if i == index), "")


# -- references and deletion --------------------------------------------------------
#
# An object lives while its header's PointerCount (which counts handles too) is above
# zero.  When the last reference goes, the type's delete procedure runs (for the types
# that have one here: processes and threads), then the block goes back to the pool.

DELETE_PROCEDURES: dict[str, Callable] = {}


def register_delete_procedure(type_name: str, procedure: Callable) -> None:
    """The OBJECT_TYPE's DeleteProcedure: procedure(m, body) undoes the object's links."""
    DELETE_PROCEDURES[type_name] = procedure


def dereference(m, body: int, count: int = 1) -> int:
    """ObfDereferenceObject: the new PointerCount; at zero the object is deleted."""
    h = Struct(m.kspace, "_OBJECT_HEADER", body - OBJECT_HEADER_BODY)
    remaining = h.get("PointerCount") - count
    h.set("PointerCount", remaining)
    if remaining == 0:
        delete_object(m, body)
    return remaining


def delete_object(m, body: int) -> None:
    """ObpRemoveObjectRoutine for the types with a delete procedure; objects of other
    types stay where they are (their managers free them their own way)."""
    type_name = type_of(m, body)
    procedure = DELETE_PROCEDURES.get(type_name)
    if procedure is None:
        return
    procedure(m, body)
    kind = m.object_types.get(type_name)
    if kind:
        t = Struct(m.kspace, "_OBJECT_TYPE", kind)
        t.set("TotalNumberOfObjects", t.get("TotalNumberOfObjects") - 1)
    header = Struct(m.kspace, "_OBJECT_HEADER", body - OBJECT_HEADER_BODY)
    block = header.address - (NAME_INFO_SIZE if header.get("InfoMask") & OB_INFO_NAME else 0)
    free_pool_block(m, block)


def free_pool_block(m, block: int) -> None:
    """Give a block the object manager allocated back to the pool (ExFreePool, for frees
    that happen outside any routine that could call it)."""
    m.pool.free(block)


def handles_in(m, handle_table: int) -> list[int]:
    """The handles in use in a table, lowest first."""
    table = Struct(m.kspace, "_HANDLE_TABLE", handle_table).get("TableCode") & ~7
    return [index * 4 for index in range(1, HANDLES_PER_PAGE)
            if Struct(m.kspace, "_HANDLE_TABLE_ENTRY",
                      table + index * HANDLE_TABLE_ENTRY_SIZE).get("ObjectPointerBits")]


def delete_handle_table(m, handle_table: int) -> None:
    """ExDestroyHandleTable: the entry page and the table go back to the pool."""
    free_pool_block(m, Struct(m.kspace, "_HANDLE_TABLE", handle_table).get("TableCode") & ~7)
    free_pool_block(m, handle_table)


@routine("ObfReferenceObject", frame=0x28, size=0x60)
def ObfReferenceObject(m, proc, a):
    """(Object) -> the new pointer count."""
    reference(m, a[0])
    return Struct(m.kspace, "_OBJECT_HEADER", a[0] - OBJECT_HEADER_BODY).get("PointerCount")


REFERENCE_BY_POINTER = 0x18


@routine("ObfDereferenceObject", frame=0x28, size=0x100)
def ObfDereferenceObject(m, proc, a):
    """(Object) -> the new pointer count; the last dereference deletes the object, and
    one more than there were references is REFERENCE_BY_POINTER."""
    h = Struct(m.kspace, "_OBJECT_HEADER", a[0] - OBJECT_HEADER_BODY)
    if h.get("PointerCount") <= 0:
        kind = m.object_types.get(type_of(m, a[0]), 0)
        yield Call(m.sym("KeBugCheckEx"), (REFERENCE_BY_POINTER, kind, a[0], 0, 0), ret=0x4C)
    return dereference(m, a[0])


@routine("ObKillProcess", frame=0x48, size=0x200)
def ObKillProcess(m, proc, a):
    """(Process): close every handle in the process's table through the ordinary close
    path (files get IRP_MJ_CLEANUP and IRP_MJ_CLOSE), then delete the table."""
    ep = Struct(m.kspace, "_EPROCESS", a[0])
    table = ep.get("ObjectTable")
    if not table:
        return 0
    # The caller is the process's last thread: NtClose works on this very table.
    while handles := handles_in(m, table):
        yield Call(m.sym("NtClose"), (handles[0],), ret=0x9C)
    ep.set("ObjectTable", 0)
    delete_handle_table(m, table)
    return 0
