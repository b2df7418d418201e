"""The pool as a debugger sees it, for pool tests: headers, free lists, the big-page
table and the per-tag counters, all read from memory through nt's symbols."""

from __future__ import annotations

from machine.types.view import Struct

HEADS = {False: "nt!ExpNonPagedPoolListHeads", True: "nt!ExpPagedPoolListHeads"}
BIG_ENTRY_SIZE = 0x18  # sizeof(_POOL_TRACKER_BIG_PAGES)
TRACK_ENTRY_SIZE = 0x38  # sizeof(_POOL_TRACKER_TABLE)


def tag(text: str) -> int:
    return int.from_bytes(text.encode("ascii"), "little")


def header(m, block: int) -> Struct:
    return Struct(m.kspace, "_POOL_HEADER", block - 0x10)


def free_list(m, units: int, paged: bool = False) -> list[int]:
    """The entries (block addresses) on the free list of blocks of `units` units."""
    head = m.sym(HEADS[paged]) + (units - 1) * 0x10
    entries, entry = [], m.kspace.read_u64(head)
    while entry != head:
        assert m.kspace.read_u64(m.kspace.read_u64(entry + 8)) == entry
        entries.append(entry)
        entry = m.kspace.read_u64(entry)
        assert len(entries) < 10_000
    return entries


def big_entries(m) -> list[Struct]:
    table = m.kspace.read_u64(m.sym("nt!PoolBigPageTable"))
    return [Struct(m.kspace, "_POOL_TRACKER_BIG_PAGES", table + i * BIG_ENTRY_SIZE)
            for i in range(m.kspace.read_u64(m.sym("nt!PoolBigPageTableSize")))]


def big_entry(m, va: int) -> Struct | None:
    """The big-page table's entry whose Va is exactly va (va | 1: a freed block's)."""
    return next((e for e in big_entries(m) if e.get("Va") == va), None)


def tracker(m, text: str) -> Struct:
    """A tag's counters, found the way the pool finds them: the tag hash, then linear
    probing to the entry with that Key."""
    key = tag(text)
    table = m.kspace.read_u64(m.sym("nt!PoolTrackTable"))
    size = m.kspace.read_u64(m.sym("nt!PoolTrackTableSize"))
    product = 40543 * key
    index = (product ^ (product >> 32)) & (size - 1)
    for _ in range(size):
        e = Struct(m.kspace, "_POOL_TRACKER_TABLE", table + index * TRACK_ENTRY_SIZE)
        if e.get("Key") & 0xFFFFFFFF == key:
            return e
        assert e.get("Key") != 0, f"no counters for {text!r}"
        index = (index + 1) & (size - 1)
    raise AssertionError(f"no counters for {text!r}")
