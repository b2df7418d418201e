"""Big pool allocations (more than fits a page with its header): each has whole pages and
an entry in nt!PoolBigPageTable, an array of `_POOL_TRACKER_BIG_PAGES` of
nt!PoolBigPageTableSize entries (what !poolfind and !pool read for a page-aligned block).

An entry holds the block's Va, its tag (Key), NumberOfBytes (the size asked for; the
block has whole pages) and PoolType.
An entry not in use has bit 0 of Va set; a freed block's entry keeps its address with that
bit set until the slot is reused, which is how a second free of the same block is told
apart from a free of an address that was never allocated.  Entries are placed by hashing
the page number of Va (masked to the table size, a power of two) and probing linearly to
the first entry not in use; a lookup probes the whole table from the same start.  A full
table is replaced by one twice its size, as the pool expands it.
"""

from __future__ import annotations

from collections.abc import Callable

from machine.mm.physical import PAGE_SHIFT
from machine.types.view import Struct, sizeof

FREE = 1
BIG_TABLE_ENTRIES = 0x200


def va_hash(va: int, mask: int) -> int:
    return (va >> PAGE_SHIFT) & mask


class BigPageTable:
    """The table as it stands in memory: every access reads its address and size from
    nt!PoolBigPageTable / nt!PoolBigPageTableSize."""

    def __init__(self, mem, table_symbol: int, size_symbol: int,
                 take_pages: Callable[[int], int]) -> None:
        self.mem = mem
        self.table_symbol = table_symbol
        self.size_symbol = size_symbol
        self.take_pages = take_pages  # nonpaged memory for a (new) table: size -> va
        self.entry_size = sizeof("_POOL_TRACKER_BIG_PAGES")

    def create(self, entries: int = BIG_TABLE_ENTRIES) -> None:
        table = self.take_pages(entries * self.entry_size)
        for i in range(entries):
            self.mem.write_u64(table + i * self.entry_size, FREE)
        self.mem.write_u64(self.table_symbol, table)
        self.mem.write_u64(self.size_symbol, entries)

    def _entries(self) -> tuple[int, int]:
        return self.mem.read_u64(self.table_symbol), self.mem.read_u64(self.size_symbol)

    def _probe(self, va: int):
        """Every entry, starting where va hashes to."""
        table, entries = self._entries()
        index = va_hash(va, entries - 1)
        for _ in range(entries):
            yield Struct(self.mem, "_POOL_TRACKER_BIG_PAGES", table + index * self.entry_size)
            index = (index + 1) & (entries - 1)

    def insert(self, va: int, tag: int, nbytes: int, pool_type: int) -> None:
        for e in self._probe(va):
            if e.get("Va") & FREE:
                e.set("Va", va)
                e.set("Key", tag & 0xFFFFFFFF)
                e.set("NumberOfBytes", nbytes)
                e.set("PoolType", pool_type & 0xFFF)
                e.set("Pattern", 0)
                e.set("SlushSize", 0)
                return
        self._expand()
        self.insert(va, tag, nbytes, pool_type)

    def find(self, va: int) -> Struct | None:
        """The entry whose Va is exactly va (va | FREE finds a freed block's entry)."""
        for e in self._probe(va & ~FREE):
            if e.get("Va") == va:
                return e
        return None

    def _expand(self) -> None:
        table, entries = self._entries()
        used = [Struct(self.mem, "_POOL_TRACKER_BIG_PAGES", table + i * self.entry_size)
                for i in range(entries)]
        kept = [(e.get("Va"), e.get("Key"), e.get("NumberOfBytes"), e.get("PoolType"))
                for e in used if not e.get("Va") & FREE]
        self.create(entries * 2)
        for va, key, nbytes, pool_type in kept:
            self.insert(va, key, nbytes, pool_type)
