"""Mapping device memory into system space (MmMapIoSpace / MmUnmapIoSpace): the device's
physical pages get PTEs in the system PTE range, so a driver reaches its registers with
ordinary loads and stores, and a debugger sees them through the page tables."""

from __future__ import annotations

from machine.ke.native import routine
from machine.mm.physical import PAGE_SHIFT, PAGE_SIZE


@routine("MmMapIoSpace", frame=0x38, size=0x120)
def MmMapIoSpace(m, proc, a):
    """(PhysicalAddress, NumberOfBytes, CacheType) -> the system address, or NULL when no
    device memory or RAM is at that physical address."""
    pa, size = a[0], a[1] & 0xFFFFFFFF
    if size == 0:
        return 0
    first = pa >> PAGE_SHIFT
    last = (pa + size - 1) >> PAGE_SHIFT
    if any(pfn not in m.phys.frames for pfn in range(first, last + 1)):
        return 0
    base = m.system_ptes.take((last - first + 1) * PAGE_SIZE, guard_pages=1)
    for i, pfn in enumerate(range(first, last + 1)):
        m.kspace.map_page(base + i * PAGE_SIZE, pfn)
    return base + (pa & (PAGE_SIZE - 1))


@routine("MmUnmapIoSpace", frame=0x28, size=0x80)
def MmUnmapIoSpace(m, proc, a):
    """(BaseAddress, NumberOfBytes): the PTEs go; the device memory stays."""
    va, size = a[0], a[1] & 0xFFFFFFFF
    for page in range(va & ~(PAGE_SIZE - 1), va + size, PAGE_SIZE):
        m.kspace.set_pte(page, 0)
    return 0
