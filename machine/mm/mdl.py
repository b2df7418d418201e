"""Memory descriptor lists, the memory manager's side: an `_MDL` header followed by its
array of page frame numbers, one per page the described buffer spans.

MmProbeAndLockPages fills the array from the page tables of the current address space;
MmMapLockedPagesSpecifyCache maps the same frames a second time at a system address
(taken from the system PTE region, where kernel stacks come from too), so writing
through that address writes the caller's buffer.  There is no PFN database: a locked
page is only counted in its process's EPROCESS.NumberOfLockedPages.
"""

from __future__ import annotations

from machine.ke.native import Call, routine
from machine.mm.paging import ADDR_MASK, CANONICAL_KERNEL, PageFault
from machine.mm.physical import PAGE_SHIFT, PAGE_SIZE
from machine.types.view import Struct

# MdlFlags (wdm.h)
MDL_MAPPED_TO_SYSTEM_VA, MDL_PAGES_LOCKED, MDL_SOURCE_IS_NONPAGED_POOL = 0x1, 0x2, 0x4
MDL_ALLOCATED_FIXED_SIZE, MDL_PARTIAL, MDL_PARTIAL_HAS_BEEN_MAPPED = 0x8, 0x10, 0x20
MDL_WRITE_OPERATION = 0x80
# _LOCK_OPERATION, KPROCESSOR_MODE
IO_READ_ACCESS = 0
KERNEL_MODE, USER_MODE = 0, 1
MM_USER_PROBE_ADDRESS = 0x7FFFFFFF0000  # ProbeForRead/Write: user buffers end below this
STATUS_ACCESS_VIOLATION = 0xC0000005
PROCESS_HAS_LOCKED_PAGES = 0x76  # parameter 1 = 1: unlocking pages that are not locked


def mdl_header_size(m) -> int:
    return m.catalog.get("_MDL").size


def spanned_pages(va: int, length: int) -> int:
    """ADDRESS_AND_SIZE_TO_SPAN_PAGES"""
    return ((va & (PAGE_SIZE - 1)) + length + PAGE_SIZE - 1) >> PAGE_SHIFT


def pfn_array(m, mdl: int) -> int:
    """MmGetMdlPfnArray: the frame numbers follow the header."""
    return mdl + mdl_header_size(m)


def mdl_pages(m, mdl: int) -> list[int]:
    d = Struct(m.kspace, "_MDL", mdl)
    count = spanned_pages(d.get("ByteOffset"), d.get("ByteCount"))
    base = pfn_array(m, mdl)
    return [m.kspace.read_u64(base + 8 * i) for i in range(count)]


def initialize_mdl(m, mdl: int, va: int, length: int) -> None:
    """MmInitializeMdl"""
    d = Struct(m.kspace, "_MDL", mdl)
    d.set("Next", 0)
    d.set("Size", mdl_header_size(m) + 8 * spanned_pages(va, length))
    d.set("MdlFlags", 0)
    d.set("StartVa", va & ~(PAGE_SIZE - 1))
    d.set("ByteOffset", va & (PAGE_SIZE - 1))
    d.set("ByteCount", length)


def _locked_pages_counter(m, process: int) -> Struct:
    return Struct(m.kspace, "_EPROCESS", process)


def probe_and_lock(m, proc, mdl: int, mode: int, operation: int) -> int:
    """MmProbeAndLockPages' work: every page of the buffer must be present (a trimmed
    paged-pool page is brought back) and, for a write, writable; user-mode callers may
    only name user addresses.  Returns STATUS_ACCESS_VIOLATION (what Windows raises)
    or 0 with the PFN array filled and the pages locked."""
    space = proc.cpu.mem
    d = Struct(m.kspace, "_MDL", mdl)
    start, offset, count = d.get("StartVa"), d.get("ByteOffset"), d.get("ByteCount")
    user = start < CANONICAL_KERNEL
    if mode == USER_MODE and (not user or start + offset + count > MM_USER_PROBE_ADDRESS):
        return STATUS_ACCESS_VIOLATION
    write = operation != IO_READ_ACCESS
    pfns = []
    for i in range(spanned_pages(offset, count)):
        page = start + i * PAGE_SIZE
        try:
            pa = space.translate(page, write=write, user=user)
        except PageFault as fault:
            if fault.present or not m.pool.page_in(page):
                return STATUS_ACCESS_VIOLATION
            pa = space.translate(page, write=write, user=user)
        pfns.append(pa >> PAGE_SHIFT)
    base = pfn_array(m, mdl)
    for i, pfn in enumerate(pfns):
        m.kspace.write_u64(base + 8 * i, pfn)
    flags = d.get("MdlFlags") | MDL_PAGES_LOCKED
    if write:
        flags |= MDL_WRITE_OPERATION
    d.set("MdlFlags", flags)
    process = 0
    if user:
        process = proc.current.process.eprocess
        ep = _locked_pages_counter(m, process)
        ep.set("NumberOfLockedPages", ep.get("NumberOfLockedPages") + len(pfns))
    d.set("Process", process)
    return 0


def map_locked_pages(m, mdl: int) -> int:
    """Map the MDL's frames at a fresh system address; returns the buffer's address
    there.  A frame number with no frame behind it stays unmapped (touching it faults)."""
    d = Struct(m.kspace, "_MDL", mdl)
    pfns = mdl_pages(m, mdl)
    base = m.stacks.take(len(pfns) * PAGE_SIZE)
    for i, pfn in enumerate(pfns):
        if pfn in m.phys.frames:
            m.kspace.map_page(base + i * PAGE_SIZE, pfn)
    va = base + d.get("ByteOffset")
    d.set("MappedSystemVa", va)
    d.set("MdlFlags", d.get("MdlFlags") | MDL_MAPPED_TO_SYSTEM_VA)
    return va


def unmap_locked_pages(m, va: int, mdl: int) -> None:
    d = Struct(m.kspace, "_MDL", mdl)
    base = va & ~(PAGE_SIZE - 1)
    for i in range(spanned_pages(d.get("ByteOffset"), d.get("ByteCount"))):
        m.kspace.set_pte(base + i * PAGE_SIZE, 0)
    d.set("MdlFlags", d.get("MdlFlags") & ~(MDL_MAPPED_TO_SYSTEM_VA
                                             | MDL_PARTIAL_HAS_BEEN_MAPPED))


def unlock_pages(m, mdl: int) -> tuple[int, tuple[int, int, int, int]] | None:
    """MmUnlockPages' work; the bug check it raises for an MDL whose pages are not
    locked, or None.  A system-address mapping of the pages goes away with the lock."""
    d = Struct(m.kspace, "_MDL", mdl)
    flags = d.get("MdlFlags")
    process = d.get("Process")
    if not flags & MDL_PAGES_LOCKED:
        locked = _locked_pages_counter(m, process).get("NumberOfLockedPages") if process else 0
        return PROCESS_HAS_LOCKED_PAGES, (1, mdl, locked, 0)
    if flags & MDL_MAPPED_TO_SYSTEM_VA and not flags & MDL_SOURCE_IS_NONPAGED_POOL:
        unmap_locked_pages(m, d.get("MappedSystemVa"), mdl)
    if process:
        ep = _locked_pages_counter(m, process)
        pages = spanned_pages(d.get("ByteOffset"), d.get("ByteCount"))
        ep.set("NumberOfLockedPages", max(0, ep.get("NumberOfLockedPages") - pages))
    d.set("MdlFlags", d.get("MdlFlags") & ~MDL_PAGES_LOCKED)
    return None


def build_for_nonpaged_pool(m, mdl: int) -> None:
    """MmBuildMdlForNonPagedPool: the frames straight from the kernel's page tables (the
    buffer is resident by definition, so nothing is probed or locked)."""
    d = Struct(m.kspace, "_MDL", mdl)
    start, offset = d.get("StartVa"), d.get("ByteOffset")
    base = pfn_array(m, mdl)
    for i in range(spanned_pages(offset, d.get("ByteCount"))):
        pte = m.kspace.get_pte(start + i * PAGE_SIZE)
        m.kspace.write_u64(base + 8 * i, (pte & ADDR_MASK) >> PAGE_SHIFT)
    d.set("Process", 0)
    d.set("MappedSystemVa", start + offset)
    d.set("MdlFlags", d.get("MdlFlags") | MDL_SOURCE_IS_NONPAGED_POOL)


def unhandled_status(m, proc, status: int, address: int) -> tuple[int, ...]:
    """The bug check for an exception a routine raises in its caller (ExRaiseStatus) that
    no handler takes: kernel code has no handlers, so the machine stops as
    KiDispatchException would for an exception at `address`."""
    thread = proc.current
    if proc.irql >= 2:
        return (0x1E, status, address, 0, 0)  # KMODE_EXCEPTION_NOT_HANDLED
    if any(f.spec.name == "KiSystemCall64" for f in thread.native):
        return (0x3B, status, address, 0, 0)  # SYSTEM_SERVICE_EXCEPTION
    if Struct(m.kspace, "_KTHREAD", thread.ethread).get("SystemThread"):
        return (0x7E, status, address, 0, 0)  # SYSTEM_THREAD_EXCEPTION_NOT_HANDLED
    return (0x1E, status, address, 0, 0)


@routine("MmProbeAndLockPages", frame=0x98, size=0x400)
def MmProbeAndLockPages(m, proc, a):
    """(MemoryDescriptorList, AccessMode, Operation)"""
    status = probe_and_lock(m, proc, a[0], a[1] & 0xFF, a[2] & 0xFFFFFFFF)
    if status:
        yield Call(m.sym("KeBugCheckEx"), unhandled_status(m, proc, status, a.caller),
                   ret=0x3A1)
    return 0


@routine("MmUnlockPages", frame=0x68, size=0x300)
def MmUnlockPages(m, proc, a):
    violation = unlock_pages(m, a[0])
    if violation is not None:
        code, params = violation
        yield Call(m.sym("KeBugCheckEx"), (code, *params), ret=0x2B3)
    return 0


@routine("MmBuildMdlForNonPagedPool", frame=0x38, size=0x180)
def MmBuildMdlForNonPagedPool(m, proc, a):
    build_for_nonpaged_pool(m, a[0])
    return 0


@routine("MmMapLockedPagesSpecifyCache", frame=0x88, size=0x400)
def MmMapLockedPagesSpecifyCache(m, proc, a):
    """(MemoryDescriptorList, AccessMode, CacheType, RequestedAddress, BugCheckOnFailure,
    Priority) -> the buffer's address in the new mapping.  Only kernel-mode (system
    address) mappings are modelled; a user-mode mapping fails (NULL)."""
    if a[1] & 0xFF != KERNEL_MODE:
        return 0
    return map_locked_pages(m, a[0])


@routine("MmMapLockedPages", frame=0x38, size=0x80)
def MmMapLockedPages(m, proc, a):
    """(MemoryDescriptorList, AccessMode): MmCached, no requested address."""
    va = yield Call(m.sym("MmMapLockedPagesSpecifyCache"), (a[0], a[1], 1, 0, 1, 0x10),
                    ret=0x4C)
    return va


@routine("MmUnmapLockedPages", frame=0x48, size=0x180)
def MmUnmapLockedPages(m, proc, a):
    """(BaseAddress, MemoryDescriptorList)"""
    if a[0] >= CANONICAL_KERNEL:
        unmap_locked_pages(m, a[0], a[1])
    return 0
