"""Executive pool: tagged blocks whose whole state is in simulated memory.

Small blocks (requests up to POOL_BUDDY_MAX bytes) tile pool pages.  Each has a
`_POOL_HEADER` in the 0x10 bytes before it: PreviousSize and BlockSize in 0x10-byte units
(so every header can be reached from the page start, and checked from both sides),
PoolType 0 for a free block and the pool type + 1 for one in use, and the PoolTag.

Free blocks are kept the classic NT way, one list per block size and pool type:
ListHeads[BlockSize - 1], 256 LIST_ENTRY heads per pool in nt's data
(nt!ExpNonPagedPoolListHeads, nt!ExpPagedPoolListHeads; 19045's own pool is the segment
heap, whose symbols have no `_POOL_DESCRIPTOR` to hold them).  A free block's LIST_ENTRY is
the first 16 bytes of its body.  A free block of one unit has no room for one: it is on no
list and is taken back when a neighbour is freed.

Allocation takes the first block of the smallest non-empty list that fits, splitting it
at the front (the rest gets its own header and goes on its list), else lays out a fresh
page the same way.  Freeing checks the block's headers, merges it with free neighbours in
its page and puts the result first on its list; a page that becomes wholly free goes back
to the pool's free pages.  Bigger requests get whole pages and an entry in the big-page
table (bigpool.py).  Every allocation and free is counted per tag (pooltrack.py).  The
checks and the bug checks they raise are in poolcheck.py.

Kernel code frees its blocks with `free` (or ExFreePoolWithTag), never by writing a
header: a block marked free that is on no list would corrupt the lists when merged.

Which pages belong to which pool, which hold small blocks and which are free is the
allocator's page bookkeeping, kept here as the memory manager keeps it outside the pool.
Paged-pool pages can be trimmed from the working set and are faulted back in when touched.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from machine.ex.bigpool import FREE, BigPageTable
from machine.ex.poolcheck import (
    ALREADY_FREED,
    BLOCK_SIZE_TOO_LARGE,
    BLOCK_SIZE_ZERO,
    FREED_HEADER_MODIFIED,
    INVALID_ADDRESS,
    LIST_ENTRY_SIZE,
    NEIGHBOURS_DISAGREE,
    NEXT_PREVIOUS_SIZE_WRONG,
    NO_TRACKING_ENTRY,
    PREVIOUS_SIZE_TOO_LARGE,
    SYSTEM_RANGE_START,
    USER_ADDRESS,
    WRONG_TAG,
    PoolCorruption,
    bad_caller,
    bad_header,
    check_entry,
    check_head,
)
from machine.ex.poolmemory import PoolMemory
from machine.ex.pooltrack import PROTECTED_POOL, TRACK_TABLE_ENTRIES, TrackTable
from machine.ex.verifier import VERIFIER_DATA
from machine.mm.layout import RegionAllocator
from machine.mm.physical import PAGE_SIZE
from machine.rtl.lists import initialize_list_head, insert_head_list, remove_entry_list
from machine.types.view import Struct, sizeof

NONPAGED_POOL = 0
PAGED_POOL = 1
NONPAGED_POOL_NX = 0x200
POOL_HEADER_SIZE = 0x10
BLOCK_UNIT = 0x10
PAGE_UNITS = PAGE_SIZE // BLOCK_UNIT
POOL_BUDDY_MAX = PAGE_SIZE - 2 * BLOCK_UNIT  # the largest request a page's blocks serve
POOL_LISTS = PAGE_UNITS  # ListHeads[BlockSize - 1]
LIST_HEADS_SIZE = POOL_LISTS * LIST_ENTRY_SIZE
MAX_REQUEST = 0x1000000  # beyond what the simulated machine has: the pool returns NULL
# What each of the nonpaged and paged pools may grow to: past it ExAllocatePoolWithTag
# returns NULL, so a driver that allocates without end meets a failed allocation (and
# the simulator's own memory stays bounded).
POOL_MAXIMUM = 0x8000000

# nt's data symbols the pool keeps its state in: (name, size, type for the debugger)
POOL_DATA = (
    ("ExpNonPagedPoolListHeads", LIST_HEADS_SIZE, ""),
    ("ExpPagedPoolListHeads", LIST_HEADS_SIZE, ""),
    ("PoolTrackTable", 8, ""),
    ("PoolTrackTableSize", 8, ""),
    ("PoolBigPageTable", 8, ""),
    ("PoolBigPageTableSize", 8, ""),
    # Driver Verifier's special pool range (Windows keeps the same two nt variables).
    ("MmSpecialPoolStart", 8, ""),
    ("MmSpecialPoolEnd", 8, ""),
) + VERIFIER_DATA  # Driver Verifier's options, drivers and counters (verifier.py)
SPECIAL_POOL_SIZE = 0x40000000  # the virtual range reserved for special pool


def tag_value(tag: str) -> int:
    """'Proc' -> the ULONG PoolTag as stored (first character in the low byte)."""
    return int.from_bytes(tag.encode("latin-1").ljust(4, b" ")[:4], "little")


def _tag(tag: int | str) -> int:
    return tag_value(tag) if isinstance(tag, str) else tag & 0xFFFFFFFF


def in_use_type(pool_type: int) -> int:
    """The header's PoolType for a block in use (0 means free)."""
    return (pool_type & 1) + 1


@dataclass
class PoolRegion:
    pool: int  # NONPAGED_POOL or PAGED_POOL
    alloc: RegionAllocator
    heads: int = 0  # its ListHeads in nt's data
    pages: list[int] = field(default_factory=list)  # every page mapped for it, in order
    owned: set[int] = field(default_factory=set)
    small: set[int] = field(default_factory=set)  # pages tiled with small blocks
    free_pages: list[int] = field(default_factory=list)  # sorted; reused lowest first

    @property
    def pageable(self) -> bool:
        return self.pool == PAGED_POOL

    def head(self, units: int) -> int:
        return self.heads + (units - 1) * LIST_ENTRY_SIZE


class Pool:
    def __init__(self, space, nonpaged_base: int, paged_base: int,
                 special_base: int = 0) -> None:
        self.space = space
        self.mem = PoolMemory(space, self.page_in)
        self.regions = {
            NONPAGED_POOL: PoolRegion(NONPAGED_POOL, RegionAllocator(nonpaged_base)),
            PAGED_POOL: PoolRegion(PAGED_POOL, RegionAllocator(paged_base)),
        }
        self.special = RegionAllocator(special_base)
        self.pagefile: dict[int, bytes] = {}  # page-file offset -> page contents
        self.next_pagefile_offset = 0x1000
        self.tracker: TrackTable | None = None  # set by init_pool
        self.big: BigPageTable | None = None
        # Kernel code calling the pool directly bug checks through this (see init_pool).
        self.on_corruption: Callable[[PoolCorruption], None] | None = None

    def _region(self, pool_type: int) -> PoolRegion:
        return self.regions[PAGED_POOL if pool_type & 1 else NONPAGED_POOL]

    def _owner(self, va: int) -> PoolRegion | None:
        page = va & ~(PAGE_SIZE - 1)
        return next((r for r in self.regions.values() if page in r.owned), None)

    def take_nonpaged_pages(self, size: int) -> int:
        """Pages for the pool's own tables, outside any block."""
        va = self.regions[NONPAGED_POOL].alloc.take(size)
        self.space.map_new(va, size)
        return va

    # -- for kernel code: a zeroed block; corruption met on the way bug checks ------------

    def allocate(self, pool_type: int, size: int, tag: int | str, zero: bool = True) -> int:
        try:
            return self.allocate_block(pool_type, size, tag, zero)
        except PoolCorruption as bad:
            self._corrupted(bad)
            raise

    def free(self, address: int, tag: int | str = 0) -> None:
        try:
            self.free_block(address, tag)
        except PoolCorruption as bad:
            self._corrupted(bad)
            raise

    def _corrupted(self, bad: PoolCorruption) -> None:
        if self.on_corruption is not None:
            self.on_corruption(bad)

    # -- the allocator proper: raises PoolCorruption for the nt routine to bug check ----

    def allocate_block(self, pool_type: int, size: int, tag: int | str, zero: bool) -> int:
        """ExAllocatePoolWithTag: a block of at least `size` bytes, or 0."""
        tag = _tag(tag)
        if size > MAX_REQUEST:
            return 0
        region = self._region(pool_type)
        if size > POOL_BUDDY_MAX:
            return self._allocate_big(region, pool_type, size, tag, zero)
        units = (size + POOL_HEADER_SIZE + BLOCK_UNIT - 1) // BLOCK_UNIT
        header = self._take_free(region, units, tag)
        if header is None:
            header = self._carve(region, units, tag)
        if header is None:  # the pool is at its maximum
            return 0
        block = header + POOL_HEADER_SIZE
        taken = Struct(self.mem, "_POOL_HEADER", header).get("BlockSize")
        if zero:
            self.mem.write(block, bytes(taken * BLOCK_UNIT - POOL_HEADER_SIZE))
        self._track().charge(tag, region.pageable, taken * BLOCK_UNIT)
        return block

    def _set_header(self, at: int, previous: int, units: int, pool_type: int,
                    tag: int) -> None:
        # One write of the whole header (19045 layout: the four one-byte bitfields
        # PreviousSize, PoolIndex, BlockSize, PoolType, then PoolTag, ProcessBilled).
        self.mem.write(at, struct.pack("<BBBBIQ", previous, 0, units, pool_type,
                                       tag & 0xFFFFFFFF, 0))

    def _take_free(self, region: PoolRegion, units: int, tag: int) -> int | None:
        """The header of a block taken off a free list (split to `units` if it is larger)."""
        # The list heads are read in one go: most of them are empty.
        first = region.head(units)
        heads = self.mem.read(first, (POOL_LISTS - units) * LIST_ENTRY_SIZE)
        for i, (entry, _) in enumerate(struct.iter_unpack("<QQ", heads)):
            head = first + i * LIST_ENTRY_SIZE
            if entry == head:
                continue
            have = units + i
            check_entry(self.mem, entry)
            header = entry - POOL_HEADER_SIZE
            h = Struct(self.mem, "_POOL_HEADER", header)
            if h.get("PoolType") != 0 or h.get("BlockSize") != have:
                raise bad_header(FREED_HEADER_MODIFIED, header, h.get("Ulong1"), have)
            rest = have - units
            if rest >= 2:
                check_head(self.mem, region.head(rest))
            remove_entry_list(self.mem, entry)
            old_tag = h.get("PoolTag")
            self._set_header(header, h.get("PreviousSize"), units if rest else have,
                             in_use_type(region.pool), tag)
            if rest:
                self._lay_free(region, header + units * BLOCK_UNIT, units, rest, old_tag)
            return header
        return None

    def _lay_free(self, region: PoolRegion, at: int, previous: int, units: int,
                  tag: int) -> None:
        """A free block's header, the next block told its size, and the block listed."""
        self._set_header(at, previous, units, 0, tag)
        following = at + units * BLOCK_UNIT
        if following & (PAGE_SIZE - 1):
            Struct(self.mem, "_POOL_HEADER", following).set("PreviousSize", units)
        if units >= 2:  # first on its list: a freed block is the next one handed out
            insert_head_list(self.mem, region.head(units), at + POOL_HEADER_SIZE)

    def _carve(self, region: PoolRegion, units: int, tag: int) -> int | None:
        """A fresh page: the block at its start, the rest of the page one free block."""
        rest = PAGE_UNITS - units
        if rest >= 2:
            check_head(self.mem, region.head(rest))
        page = self._take_pages(region, 1)
        if page is None:
            return None
        region.small.add(page)
        self._set_header(page, 0, units, in_use_type(region.pool), tag)
        self._lay_free(region, page + units * BLOCK_UNIT, units, rest, 0)
        return page

    def _take_pages(self, region: PoolRegion, count: int) -> int | None:
        """`count` contiguous pages: the lowest free run that fits, else fresh ones (None
        past the pool's maximum)."""
        free = region.free_pages
        for i in range(len(free) - count + 1):
            if free[i + count - 1] == free[i] + (count - 1) * PAGE_SIZE:
                va = free[i]
                del free[i:i + count]
                return va
        if region.alloc.next + count * PAGE_SIZE - region.alloc.base > POOL_MAXIMUM:
            return None
        va = region.alloc.take(count * PAGE_SIZE)
        self.space.map_new(va, count * PAGE_SIZE)
        pages = range(va, va + count * PAGE_SIZE, PAGE_SIZE)
        region.pages.extend(pages)
        region.owned.update(pages)
        return va

    def _release_pages(self, region: PoolRegion, va: int, count: int) -> None:
        for page in range(va, va + count * PAGE_SIZE, PAGE_SIZE):
            bisect.insort(region.free_pages, page)

    def _allocate_big(self, region: PoolRegion, pool_type: int, size: int, tag: int,
                      zero: bool) -> int:
        count = (size + PAGE_SIZE - 1) // PAGE_SIZE
        va = self._take_pages(region, count)
        if va is None:  # the pool is at its maximum
            return 0
        self._big().insert(va, tag, size, pool_type)  # the bytes asked for, as nt records
        if zero:
            self.mem.write(va, bytes(count * PAGE_SIZE))
        self._track().charge(tag, region.pageable, count * PAGE_SIZE)
        return va

    def free_block(self, address: int, tag: int | str) -> None:
        """ExFreePoolWithTag(address, tag); tag 0 frees whatever the block's tag is."""
        tag = _tag(tag)
        if self.is_special(address):
            self._free_special(address, tag)
            return
        region = self._owner(address)
        if region is None:
            if address < SYSTEM_RANGE_START:
                raise bad_caller(USER_ADDRESS, address, SYSTEM_RANGE_START, 0)
            raise bad_caller(INVALID_ADDRESS, address)
        if not address & (PAGE_SIZE - 1):
            self._free_big(region, address, tag)
        elif address & (BLOCK_UNIT - 1):
            raise bad_caller(INVALID_ADDRESS, address)
        elif address & ~(PAGE_SIZE - 1) not in region.small:
            header = Struct(self.mem, "_POOL_HEADER", address - POOL_HEADER_SIZE)
            if header.get("PoolType") == 0:  # its page went back when it was freed
                raise bad_caller(ALREADY_FREED, 0, header.get("Ulong1"), address)
            raise bad_caller(INVALID_ADDRESS, address)
        else:
            self._free_small(region, address, tag)

    def _check_owner(self, address: int, header: Struct, tag: int) -> None:
        if header.get("PoolType") == 0:
            raise bad_caller(ALREADY_FREED, 0, header.get("Ulong1"), address)
        own = header.get("PoolTag") & ~PROTECTED_POOL
        if tag and own != tag & ~PROTECTED_POOL:
            raise bad_caller(WRONG_TAG, address, own, tag)

    def _free_small(self, region: PoolRegion, address: int, tag: int) -> None:
        header = address - POOL_HEADER_SIZE
        page = header & ~(PAGE_SIZE - 1)
        end = page + PAGE_SIZE
        h = Struct(self.mem, "_POOL_HEADER", header)
        self._check_owner(address, h, tag)
        units, previous = h.get("BlockSize"), h.get("PreviousSize")
        if units == 0:
            raise bad_header(BLOCK_SIZE_ZERO, 0, 0, header)
        following = header + units * BLOCK_UNIT
        if following > end:
            raise bad_header(BLOCK_SIZE_TOO_LARGE, header, 0, header)
        # Both neighbours must agree about where this block starts and ends.
        start, total = header, units
        prev = None
        if previous:
            if header - previous * BLOCK_UNIT < page:
                raise bad_header(PREVIOUS_SIZE_TOO_LARGE, header, 0, header)
            prev = Struct(self.mem, "_POOL_HEADER", header - previous * BLOCK_UNIT)
            if prev.get("BlockSize") != previous:
                raise bad_header(NEIGHBOURS_DISAGREE, prev.address, 0, header)
        nxt = None
        if following < end:
            nxt = Struct(self.mem, "_POOL_HEADER", following)
            if nxt.get("PreviousSize") != units:
                raise bad_header(NEXT_PREVIOUS_SIZE_WRONG, header, following, h.get("Ulong1"))
        # Free neighbours merge with it; their links are checked before they are undone.
        merge_next = nxt is not None and nxt.get("PoolType") == 0
        if merge_next:
            assert nxt is not None
            self._check_free_neighbour(nxt, end)
            total += nxt.get("BlockSize")
        merge_prev = prev is not None and prev.get("PoolType") == 0
        if merge_prev:
            assert prev is not None
            if previous >= 2:
                check_entry(self.mem, prev.address + POOL_HEADER_SIZE)
            start, total = prev.address, total + previous
        if 2 <= total < PAGE_UNITS:
            check_head(self.mem, region.head(total))
        # Checked: now change memory.
        own = h.get("PoolTag")
        if merge_next and nxt is not None and nxt.get("BlockSize") >= 2:
            remove_entry_list(self.mem, nxt.address + POOL_HEADER_SIZE)
        if merge_prev and previous >= 2:
            remove_entry_list(self.mem, start + POOL_HEADER_SIZE)
        h.set("PoolType", 0)  # a second free of this address finds it free
        if total == PAGE_UNITS:
            region.small.discard(page)
            self._release_pages(region, page, 1)
        else:
            s = Struct(self.mem, "_POOL_HEADER", start)
            self._lay_free(region, start, s.get("PreviousSize"), total, s.get("PoolTag"))
        self._track().credit(own, region.pageable, units * BLOCK_UNIT)

    def _check_free_neighbour(self, nxt: Struct, end: int) -> None:
        """The free block after the one being freed must still look as the pool left it."""
        units = nxt.get("BlockSize")
        after = nxt.address + units * BLOCK_UNIT
        if units == 0 or after > end or (after < end and Struct(
                self.mem, "_POOL_HEADER", after).get("PreviousSize") != units):
            raise bad_header(FREED_HEADER_MODIFIED, nxt.address, nxt.get("Ulong1"), 0)
        if units >= 2:
            check_entry(self.mem, nxt.address + POOL_HEADER_SIZE)

    def _free_big(self, region: PoolRegion, address: int, tag: int) -> None:
        big = self._big()
        e = big.find(address)
        if e is None:
            if big.find(address | FREE) is not None:
                raise bad_caller(ALREADY_FREED, 0, 0, address)
            raise bad_header(NO_TRACKING_ENTRY, address)
        key = e.get("Key")
        if tag and key & ~PROTECTED_POOL != tag & ~PROTECTED_POOL:
            raise bad_caller(WRONG_TAG, address, key & ~PROTECTED_POOL, tag)
        pages = (e.get("NumberOfBytes") + PAGE_SIZE - 1) // PAGE_SIZE
        e.set("Va", address | FREE)
        self._release_pages(region, address, pages)
        self._track().credit(key, region.pageable, pages * PAGE_SIZE)

    def _track(self) -> TrackTable:
        assert self.tracker is not None, "init_pool has not run"
        return self.tracker

    def _big(self) -> BigPageTable:
        assert self.big is not None, "init_pool has not run"
        return self.big

    # -- Driver Verifier's special pool -------------------------------------------------

    def allocate_special(self, pool_type: int, size: int, tag: int | str) -> int:
        """The block ends where its page ends, and the page after it is never mapped, so
        the first byte past the block faults.  The page starts with the block's header."""
        used = self.special.next - self.special.base
        if size > POOL_BUDDY_MAX or used + 3 * PAGE_SIZE > SPECIAL_POOL_SIZE:
            # (as Windows does when special pool is used up: the block is ordinary pool)
            return self.allocate_block(pool_type, size, tag, zero=False)
        tag = _tag(tag)
        page = self.special.take(PAGE_SIZE, guard_pages=1)
        self.special.take(PAGE_SIZE)  # the guard page after the data page
        self.space.map_new(page, PAGE_SIZE)
        size = max(size, 1)
        block = page + PAGE_SIZE - ((size + BLOCK_UNIT - 1) & ~(BLOCK_UNIT - 1))
        units = (size + POOL_HEADER_SIZE + BLOCK_UNIT - 1) // BLOCK_UNIT
        self._set_header(page, 0, units, in_use_type(pool_type), tag)
        self._track().charge(tag, bool(pool_type & 1), units * BLOCK_UNIT)
        return block

    def _free_special(self, address: int, tag: int) -> None:
        page = address & ~(PAGE_SIZE - 1)
        if self.mem.peek_u64(page) is None:  # a guard page
            raise bad_caller(INVALID_ADDRESS, address)
        h = Struct(self.mem, "_POOL_HEADER", page)
        self._check_owner(address, h, tag)
        paged = h.get("PoolType") == in_use_type(PAGED_POOL)
        h.set("PoolType", 0)
        self._track().credit(h.get("PoolTag"), paged, h.get("BlockSize") * BLOCK_UNIT)

    def is_special(self, va: int) -> bool:
        """Inside the special pool's range (data pages and their guard pages)."""
        return self.special.base <= va < self.special.next + PAGE_SIZE

    # -- paging ---------------------------------------------------------------------------

    def trim(self, va: int) -> None:
        """Take a paged-pool page out of the working set (MmTrimAllWorkingSets): its
        contents go to the page file and its PTE becomes a page-file PTE."""
        page = va & ~(PAGE_SIZE - 1)
        if page not in self.regions[PAGED_POOL].owned:
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

    def is_paged(self, va: int) -> bool:
        return (va & ~(PAGE_SIZE - 1)) in self.regions[PAGED_POOL].owned

    # -- for walks of the pool (the debugger's view needs only memory) -------------------

    def small_pages(self, pool: int) -> list[int]:
        return sorted(self.regions[pool].small)

    def list_heads(self, pool: int) -> int:
        return self.regions[pool].heads


def init_pool(m) -> None:
    """Phase 0 of pool setup, before the first allocation: the free-list heads, the tag
    counters and the big-page table, published through nt's data."""
    pool: Pool = m.pool
    for region, symbol in ((pool.regions[NONPAGED_POOL], "nt!ExpNonPagedPoolListHeads"),
                           (pool.regions[PAGED_POOL], "nt!ExpPagedPoolListHeads")):
        region.heads = m.sym(symbol)
        for units in range(1, POOL_LISTS + 1):
            initialize_list_head(pool.mem, region.head(units))
    pool.tracker = TrackTable(pool.mem, m.sym("nt!PoolTrackTable"),
                              m.sym("nt!PoolTrackTableSize"))
    pool.tracker.place(pool.take_nonpaged_pages(
        TRACK_TABLE_ENTRIES * sizeof("_POOL_TRACKER_TABLE")), TRACK_TABLE_ENTRIES)
    pool.big = BigPageTable(pool.mem, m.sym("nt!PoolBigPageTable"),
                            m.sym("nt!PoolBigPageTableSize"), pool.take_nonpaged_pages)
    pool.big.create()
    pool.mem.write_u64(m.sym("nt!MmSpecialPoolStart"), pool.special.base)
    pool.mem.write_u64(m.sym("nt!MmSpecialPoolEnd"), pool.special.base + SPECIAL_POOL_SIZE)
    m.verifier.init(m)

    def bug_check(bad: PoolCorruption) -> None:
        from machine.ex.routines import bug_check_running

        bug_check_running(m, bad)

    pool.on_corruption = bug_check
