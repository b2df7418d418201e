"""The memory manager's counters, published in nt's data as kd's !vm reads them.

The simulated machine has 2 GiB of RAM: frames 0x100 up to 0x80000 (the first 0x100
frames are firmware's, as PhysicalMemory hands out frames from 0x100).  Nothing in the
machine ever gives a frame back, and every kind of kernel memory grows only by taking
frames (pool pages, stacks, page tables, user pages), so the counters are brought up to
date each time a frame is taken:

- nt!MmNumberOfPhysicalPages: the RAM frames (constant).
- nt!MmAvailablePages: RAM frames not yet handed out.
- nt!MmAllocatedNonPagedPool, nt!MmPagedPoolCommit: pages the nonpaged and paged pool
  hold (mapped for blocks, big allocations and the pool's own tables; freed pool pages
  stay with the pool for reuse).
- nt!MmMaximumNonPagedPoolInBytes, nt!MmSizeOfPagedPoolInBytes: the pool ranges' sizes.

Each process's EPROCESS.CommitCharge and NumberOfPrivatePages count the private pages of
its user address space (PEB, TEBs, process parameters, user stacks, I/O buffers): the
pages mapped user-accessible in its page tables.  The System and Idle processes have no
user space and stay at zero.
"""

from __future__ import annotations

from machine.mm.paging import ADDR_MASK, PTE_PRESENT, PTE_USER
from machine.mm.physical import PAGE_SHIFT, PAGE_SIZE
from machine.types.view import Struct

FIRST_RAM_PFN = 0x100
RAM_END_PFN = 0x80000  # 2 GiB
PHYSICAL_PAGES = RAM_END_PFN - FIRST_RAM_PFN

# nt's data symbols the counters live in: (name, size, type for the debugger)
MM_DATA = (
    ("MmNumberOfPhysicalPages", 8, ""),
    ("MmAvailablePages", 8, ""),
    ("MmAllocatedNonPagedPool", 8, ""),
    ("MmPagedPoolCommit", 8, ""),
    ("MmMaximumNonPagedPoolInBytes", 8, ""),
    ("MmSizeOfPagedPoolInBytes", 8, ""),
)


class MemoryCounters:
    """The counters of one machine.  A new process is taken in at the first frame taken
    after it is listed (its first thread's kernel stack at the latest): its user pages
    so far are counted from its page tables, later ones as they are mapped."""

    def __init__(self, m) -> None:
        self.m = m
        self.frames_taken = sum(1 for pfn in m.phys.frames
                                if FIRST_RAM_PFN <= pfn < RAM_END_PFN)
        self.available = m.sym("nt!MmAvailablePages")
        self.nonpaged = m.sym("nt!MmAllocatedNonPagedPool")
        self.paged = m.sym("nt!MmPagedPoolCommit")
        self.tracked: set[int] = set()  # EPROCESS addresses whose user pages are counted

    def frame_taken(self) -> None:
        self.frames_taken += 1
        self.publish()
        if len(self.tracked) < len(self.m.processes):
            self.track_new_processes()

    def publish(self) -> None:
        mem = self.m.kspace
        mem.write_u64(self.available, max(PHYSICAL_PAGES - self.frames_taken, 0))
        mem.write_u64(self.nonpaged, pool_pages(self.m.pool, paged=False))
        mem.write_u64(self.paged, pool_pages(self.m.pool, paged=True))

    # -- per-process private pages ---------------------------------------------------

    def track_new_processes(self) -> None:
        for rec in self.m.processes:
            if rec.eprocess in self.tracked:
                continue
            self.tracked.add(rec.eprocess)
            if rec.space is self.m.kspace:
                continue  # kernel-only: no user address space
            self._charge(rec.eprocess, count_user_pages(rec.space))
            self._count_new_user_pages(rec)

    def _charge(self, eprocess: int, pages: int) -> None:
        e = Struct(self.m.kspace, "_EPROCESS", eprocess)
        for name in ("CommitCharge", "NumberOfPrivatePages"):
            e.set(name, e.get(name) + pages)
        if e.get("CommitCharge") > e.get("CommitChargePeak"):
            e.set("CommitChargePeak", e.get("CommitCharge"))

    def _count_new_user_pages(self, rec) -> None:
        """From now on, each user page mapped where none was charges the process."""
        rec.space.on_new_user_page = lambda: self._charge(rec.eprocess, 1)


def pool_pages(pool, paged: bool) -> int:
    """Pages a pool's range has handed out (its allocator never takes them back)."""
    region = pool.regions[1 if paged else 0].alloc
    return (region.next - region.base) // PAGE_SIZE


def count_user_pages(space) -> int:
    """Present user-accessible leaf entries in the user half of an address space."""
    phys = space.phys

    def entries(table_pfn: int, first: int, last: int):
        raw = phys.frame(table_pfn)
        for i in range(first, last):
            e = int.from_bytes(raw[8 * i:8 * i + 8], "little")
            if e & PTE_PRESENT and e & PTE_USER:
                yield (e & ADDR_MASK) >> PAGE_SHIFT

    count = 0
    for pdpt in entries(space.pml4_pfn, 0, 256):
        for pd in entries(pdpt, 0, 512):
            for pt in entries(pd, 0, 512):
                count += sum(1 for _ in entries(pt, 0, 512))
    return count


def install_counters(m, pool_range_size: int) -> MemoryCounters:
    """Publish the counters and keep them current: called once nt's data is mapped."""
    counters = MemoryCounters(m)
    mem = m.kspace
    mem.write_u64(m.sym("nt!MmNumberOfPhysicalPages"), PHYSICAL_PAGES)
    mem.write_u64(m.sym("nt!MmMaximumNonPagedPoolInBytes"), pool_range_size)
    mem.write_u64(m.sym("nt!MmSizeOfPagedPoolInBytes"), pool_range_size)
    m.phys.on_frame_taken = counters.frame_taken
    counters.publish()
    return counters
