"""Finding tagged pool blocks as a debugger does: the big-page table
(nt!PoolBigPageTable / nt!PoolBigPageTableSize) for page-sized allocations, and for small
ones every present page of a pool range (found by walking the page tables through
physical memory, commands.pagetable) whose `_POOL_HEADER` chain is consistent from the
page start to its end."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from commands import fmt
from commands.pagetable import mapped_runs
from commands.target import MemoryAccessError

PAGE = 0x1000
BLOCK_UNIT = 0x10
BIG_FREE = 0x1


@dataclass(frozen=True)
class PoolBlock:
    header: int  # the _POOL_HEADER (small blocks), or 0 for a big-page block
    body: int
    size: int
    tag: int
    pool_type: int  # the header's PoolType: 0 free, 1 nonpaged, 2 paged (in use)


class PoolScanner:
    def __init__(self, s) -> None:
        self.s = s
        self.r = s.reader
        types = s.target.types
        self._bits = {name: self._field(types, name)
                      for name in ("PreviousSize", "BlockSize", "PoolType", "PoolTag")}
        self.header_size = types.sizeof("_POOL_HEADER")
        self.big_entry_size = types.sizeof("_POOL_TRACKER_BIG_PAGES")

    @staticmethod
    def _field(types, name: str) -> tuple[int, int, int, int]:
        off, f = types.resolve("_POOL_HEADER", name)
        if f.kind == "bitfield":
            return off, f.size, f.bit_position, f.bit_length
        return off, f.size, 0, 8 * f.size

    def header_field(self, data: bytes, at: int, name: str) -> int:
        """A `_POOL_HEADER` field (PreviousSize, BlockSize, PoolType, PoolTag) of the header
        at `at` in data, by the target's bitfield layout."""
        off, size, pos, length = self._bits[name]
        value = int.from_bytes(data[at + off:at + off + size], "little")
        return (value >> pos) & ((1 << length) - 1)

    # -- the big-page table ---------------------------------------------------------------

    def big_table(self) -> tuple[int, int]:
        """(table address, entries)."""
        return (self.r.u64(self.s.nt("PoolBigPageTable")),
                self.r.u64(self.s.nt("PoolBigPageTableSize")))

    def pool_range(self, paged: bool) -> tuple[str, int, int]:
        """(region name, start, end) of nonpaged or paged pool, as nt publishes them."""
        region = "Paged" if paged else "NonPaged"
        return (region, self.r.u64(self.s.nt(f"Mm{region}PoolStart")),
                self.r.u64(self.s.nt(f"Mm{region}PoolEnd")))

    def scan_lines(self, pattern: str, paged: bool) -> tuple[str, str, int, int]:
        """What !poolfind and !irpfind print before each part of their scan: the big-page
        table's line and the pool range's line, and that range (start, end)."""
        table, count = self.big_table()
        region, start, end = self.pool_range(paged)
        return (f"Scanning large pool allocation table for Tag '{pattern}' "
                f"({fmt.hex16(table)} : {fmt.hex16(table + count * self.big_entry_size)})",
                f"Searching {region} pool ({fmt.hex16(start)} : {fmt.hex16(end)}) for Tag "
                f"'{pattern}'", start, end)

    def big_blocks(self) -> list[PoolBlock]:
        table, count = self.big_table()
        raw = self.r.read(table, count * self.big_entry_size)
        t = "_POOL_TRACKER_BIG_PAGES"
        types = self.s.target.types
        va_off = types.resolve(t, "Va")[0]
        key_off = types.resolve(t, "Key")[0]
        bytes_off = types.resolve(t, "NumberOfBytes")[0]
        out = []
        for i in range(count):
            at = i * self.big_entry_size
            va = int.from_bytes(raw[at + va_off:at + va_off + 8], "little")
            if not va or va & BIG_FREE:
                continue
            key = int.from_bytes(raw[at + key_off:at + key_off + 4], "little")
            size = int.from_bytes(raw[at + bytes_off:at + bytes_off + 8], "little")
            pool_type = self.r.field(t, table + at, "PoolType")
            out.append(PoolBlock(0, va, size, key, (pool_type & 1) + 1))
        return sorted(out, key=lambda b: b.body)

    # -- small blocks -----------------------------------------------------------------------

    def page_blocks(self, page: int) -> list[PoolBlock]:
        """The blocks of one page whose headers chain from the page start; the walk stops
        at the first header that does not fit (a page of big-pool data, or corruption)."""
        try:
            data = self.r.read(page, PAGE)
        except MemoryAccessError:
            return []
        out: list[PoolBlock] = []
        at, previous = 0, 0
        while at < PAGE:
            units = self.header_field(data, at, "BlockSize")
            if (units == 0 or self.header_field(data, at, "PreviousSize") != previous
                    or at + units * BLOCK_UNIT > PAGE):
                break
            out.append(PoolBlock(page + at, page + at + self.header_size, units * BLOCK_UNIT,
                                 self.header_field(data, at, "PoolTag"),
                                 self.header_field(data, at, "PoolType")))
            previous = units
            at += units * BLOCK_UNIT
        return out

    def _present_pages(self, start: int, end: int) -> Iterator[int]:
        cr3 = self.s.target.registers(self.s.processor)["cr3"]
        for lo, hi in mapped_runs(self.s.target.read_physical, cr3, start, end):
            yield from range(lo & ~(PAGE - 1), hi, PAGE)

    def small_blocks(self, start: int, end: int, skip: set[int]) -> Iterator[PoolBlock]:
        for page in self._present_pages(start, end):
            if page not in skip:
                yield from self.page_blocks(page)

    # -- special pool (Driver Verifier) ---------------------------------------------------

    def special_block(self, page: int, header: bytes) -> PoolBlock:
        """A special-pool page from its header (at the page start): the block ends where
        the page ends; `size` is what lies from the block to the page end."""
        units = self.header_field(header, 0, "BlockSize")
        size = max(units - 1, 0) * BLOCK_UNIT  # the header's unit is not the block's
        return PoolBlock(page, page + PAGE - size, size,
                         self.header_field(header, 0, "PoolTag"),
                         self.header_field(header, 0, "PoolType"))

    def special_blocks(self, start: int, end: int) -> Iterator[PoolBlock]:
        """The special-pool pages in use in [start, end)."""
        for page in self._present_pages(start, end):
            try:
                header = self.r.read(page, self.header_size)
            except MemoryAccessError:
                continue
            block = self.special_block(page, header)
            if block.pool_type and block.size:
                yield block


def tag_matches(tag: int, pattern: str) -> bool:
    """kd's tag patterns: `?` matches any one character (the protected-pool bit of the
    last byte too, as `Irp?` does), `*` the rest of the tag; other characters match
    themselves, the protected-pool bit aside."""
    raw = (tag & 0xFFFFFFFF).to_bytes(4, "little")
    for i, p in enumerate(pattern[:4]):
        if p == "*":
            return True
        if p != "?" and raw[i] & (0x7F if i == 3 else 0xFF) != ord(p):
            return False
    return True


def big_pages(blocks: list[PoolBlock]) -> set[int]:
    """Every page a big-pool block covers (their contents are no header chains)."""
    return {b.body + i * PAGE for b in blocks for i in range(max(1, b.size // PAGE))}
