"""Executive pool: tagged allocations with a `_POOL_HEADER` before each small block.

A first cut of the allocator: blocks are carved from fresh pages in address order and
never reused; big allocations (a page or more) get whole pages.  Paged-pool pages can be
trimmed from the working set (made non-resident) and faulted back in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from machine.mm.layout import RegionAllocator
from machine.mm.physical import PAGE_SIZE
from machine.types.view import Struct

NONPAGED_POOL = 0
PAGED_POOL = 1
NONPAGED_POOL_NX = 0x200
POOL_HEADER_SIZE = 0x10
BLOCK_UNIT = 0x10


def tag_value(tag: str) -> int:
    """'Proc' -> the ULONG PoolTag as stored (first character in the low byte)."""
    return int.from_bytes(tag.encode("ascii").ljust(4, b" ")[:4], "little")


@dataclass
class PoolRegion:
    pageable: bool
    alloc: RegionAllocator
    page: int = 0  # current page being carved
    used: int = PAGE_SIZE  # bytes used in the current page
    prev_units: int = 0
    pages: list[int] = field(default_factory=list)
    carved: dict[int, int] = field(default_factory=dict)  # small-block page -> bytes laid out


class Pool:
    def __init__(self, space, nonpaged_base: int, paged_base: int,
                 special_base: int = 0) -> None:
        self.space = space
        self.regions = {
            NONPAGED_POOL: PoolRegion(False, RegionAllocator(nonpaged_base)),
            PAGED_POOL: PoolRegion(True, RegionAllocator(paged_base)),
        }
        self.big: dict[int, tuple[int, int, str]] = {}  # va -> (size, pool type, tag)
        self.big_freed: set[int] = set()
        self.allocations: list[int] = []  # every block handed out, in order (for audits)
        self.special = RegionAllocator(special_base)
        self.special_pages: dict[int, tuple[int, str]] = {}  # data page -> (size, tag)
        self.pagefile: dict[int, bytes] = {}  # page-file offset -> page contents
        self.next_pagefile_offset = 0x1000

    def _region(self, pool_type: int) -> PoolRegion:
        return self.regions[PAGED_POOL if pool_type & 1 else NONPAGED_POOL]

    def allocate(self, pool_type: int, size: int, tag: str) -> int:
        """ExAllocatePoolWithTag: the address of a zeroed block of at least `size` bytes."""
        region = self._region(pool_type)
        if size + POOL_HEADER_SIZE > PAGE_SIZE:
            va = region.alloc.take(size)
            self.space.map_new(va, size)
            region.pages.extend(range(va, va + size, PAGE_SIZE))
            self.big[va] = (size, pool_type, tag)
            self.allocations.append(va)
            return va
        units = (size + POOL_HEADER_SIZE + BLOCK_UNIT - 1) // BLOCK_UNIT
        if region.used + units * BLOCK_UNIT > PAGE_SIZE:
            region.page = region.alloc.take(PAGE_SIZE)
            self.space.map_new(region.page, PAGE_SIZE)
            region.pages.append(region.page)
            region.used = 0
            region.prev_units = 0
        header = region.page + region.used
        region.carved[region.page] = region.used + units * BLOCK_UNIT
        if region.pageable:
            self.page_in(header)  # the allocator touches the page: it faults back in
        h = Struct(self.space, "_POOL_HEADER", header)
        h.set("PreviousSize", region.prev_units)
        h.set("BlockSize", units)
        h.set("PoolType", (pool_type & 1) + 1)  # non-zero: in use
        h.set("PoolTag", tag_value(tag))
        region.used += units * BLOCK_UNIT
        region.prev_units = units
        self.allocations.append(header + POOL_HEADER_SIZE)
        return header + POOL_HEADER_SIZE

    def allocate_special(self, pool_type: int, size: int, tag: str) -> int:
        """Driver Verifier's special pool: the block ends where its page ends, and the
        page after it is never mapped, so the first byte past the block faults."""
        page = self.special.take(PAGE_SIZE, guard_pages=1)
        self.special.take(PAGE_SIZE)  # the guard page after the data page
        self.space.map_new(page, PAGE_SIZE)
        size = max(size, 1)
        block = page + PAGE_SIZE - ((size + BLOCK_UNIT - 1) & ~(BLOCK_UNIT - 1))
        header = Struct(self.space, "_POOL_HEADER", page)
        header.set("BlockSize", (size + POOL_HEADER_SIZE + BLOCK_UNIT - 1) // BLOCK_UNIT)
        header.set("PoolType", (pool_type & 1) + 1)
        header.set("PoolTag", tag_value(tag))
        self.special_pages[page] = (size, tag)
        self.allocations.append(block)
        return block

    def is_special(self, va: int) -> bool:
        """Inside the special pool's range (data pages and their guard pages)."""
        return self.special.base <= va < self.special.next + PAGE_SIZE

    def trim(self, va: int) -> None:
        """Take a paged-pool page out of the working set (MmTrimAllWorkingSets): its
        contents go to the page file and its PTE becomes a page-file PTE."""
        page = va & ~(PAGE_SIZE - 1)
        if page not in self.regions[PAGED_POOL].pages:
            raise ValueError(f"{va:#x} is not paged pool")
        offset = self.next_pagefile_offset
        self.next_pagefile_offset += 1
        self.pagefile[offset] = self.space.read(page, PAGE_SIZE)
        self.space.page_out(page, offset)

    def page_in(self, va: int) -> bool:
        """Bring a trimmed page back from the page file; False if va is not one."""
        from machine.mm.paging import PAGEFILE_HIGH_SHIFT, PTE_PRESENT

        page = va & ~(PAGE_SIZE - 1)
        pte = self.space.get_pte(page)
        if pte & PTE_PRESENT or not pte:
            return False
        data = self.pagefile.pop(pte >> PAGEFILE_HIGH_SHIFT, None)
        if data is None:
            return False
        self.space.map_page(page, self.space.phys.alloc_frame())
        self.space.write(page, data)
        return True

    def carved_until(self, header: int) -> bool:
        """Whether a block header has been laid down at this address (a later block in
        a page that is still being carved has not)."""
        page = header & ~(PAGE_SIZE - 1)
        for region in self.regions.values():
            if page in region.carved:
                return (header & (PAGE_SIZE - 1)) < region.carved[page]
        return False

    def is_paged(self, va: int) -> bool:
        return (va & ~(PAGE_SIZE - 1)) in self.regions[PAGED_POOL].pages
