"""Per-tag pool counters: nt!PoolTrackTable, an array of `_POOL_TRACKER_TABLE` of
nt!PoolTrackTableSize entries (what !poolused and poolmon read).

An entry is found by hashing the tag, as the pool does: Key x 40543 as a 64-bit product,
its high half folded into the low with xor, masked to the table size (a power of two);
from there, linear probing (index + 1, wrapping) to the entry whose Key is the tag, or to
the first empty one (Key 0), which the tag then claims.  Entries are never removed.
Keys are tags without the PROTECTED_POOL bit.  Bytes count what the pool hands out for
a block: its BlockSize units with the header for a small block, whole pages for a big
one.
"""

from __future__ import annotations

from machine.types.view import Struct, sizeof

PROTECTED_POOL = 0x80000000
TAG_HASH_MULTIPLIER = 40543
TRACK_TABLE_ENTRIES = 0x400


def tag_hash(key: int, mask: int) -> int:
    product = TAG_HASH_MULTIPLIER * (key & 0xFFFFFFFF)
    return ((product ^ (product >> 32)) & 0xFFFFFFFF) & mask


class TrackTable:
    """The counters as they stand in memory: every access reads the table's address and
    size from nt!PoolTrackTable / nt!PoolTrackTableSize."""

    def __init__(self, mem, table_symbol: int, size_symbol: int) -> None:
        self.mem = mem
        self.table_symbol = table_symbol
        self.size_symbol = size_symbol
        self.entry_size = sizeof("_POOL_TRACKER_TABLE")

    def place(self, table: int, entries: int) -> None:
        """Publish a zeroed table of `entries` (a power of two) at `table`."""
        self.mem.write_u64(self.table_symbol, table)
        self.mem.write_u64(self.size_symbol, entries)

    def entry(self, tag: int) -> Struct:
        """The tag's entry, claimed if the tag has none yet."""
        key = tag & 0xFFFFFFFF & ~PROTECTED_POOL
        table = self.mem.read_u64(self.table_symbol)
        entries = self.mem.read_u64(self.size_symbol)
        index = tag_hash(key, entries - 1)
        for _ in range(entries):
            e = Struct(self.mem, "_POOL_TRACKER_TABLE", table + index * self.entry_size)
            found = e.get("Key") & 0xFFFFFFFF
            if found == key:
                return e
            if found == 0:
                e.set("Key", key)
                return e
            index = (index + 1) & (entries - 1)
        raise RuntimeError("the pool tracker table is full")

    def charge(self, tag: int, paged: bool, nbytes: int) -> None:
        e = self.entry(tag)
        kind = "Paged" if paged else "NonPaged"
        e.set(f"{kind}Allocs", e.get(f"{kind}Allocs") + 1)
        e.set(f"{kind}Bytes", e.get(f"{kind}Bytes") + nbytes)

    def credit(self, tag: int, paged: bool, nbytes: int) -> None:
        e = self.entry(tag)
        kind = "Paged" if paged else "NonPaged"
        e.set(f"{kind}Frees", e.get(f"{kind}Frees") + 1)
        e.set(f"{kind}Bytes", e.get(f"{kind}Bytes") - nbytes)
