"""x64 4-level paging over physical memory.

Page tables are real 8-byte entries in physical frames; every virtual access walks them
(PML4 -> PDPT -> PD -> PT), with a small translation cache that is dropped whenever any
paging entry changes.  A non-present PTE may hold a software value (a page-file PTE for
paged-out pageable memory), as on Windows.
"""

from __future__ import annotations

from collections.abc import Callable

from machine.mm.physical import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory

PTE_PRESENT = 0x1
PTE_WRITE = 0x2
PTE_USER = 0x4
PTE_ACCESSED = 0x20
PTE_DIRTY = 0x40
PTE_LARGE = 0x80
PTE_GLOBAL = 0x100
PTE_NX = 1 << 63
ADDR_MASK = 0x000FFFFFFFFFF000

# _MMPTE_SOFTWARE: Protection in bits 5..9 (4 = MM_READWRITE), PageFileHigh in bits 32..63.
MM_READWRITE = 4
SOFTWARE_PROTECTION_SHIFT = 5
PAGEFILE_HIGH_SHIFT = 32

CANONICAL_KERNEL = 0xFFFF800000000000
MASK64 = 0xFFFFFFFFFFFFFFFF


def canonical(va: int) -> bool:
    va &= MASK64
    return va < 0x0000800000000000 or va >= CANONICAL_KERNEL


class PageFault(Exception):
    """A failed translation: what the CPU turns into #PF (CR2 = va)."""

    def __init__(self, va: int, write: bool = False, execute: bool = False,
                 present: bool = False, user: bool = False, pte: int = 0) -> None:
        super().__init__(f"page fault at {va:#018x}")
        self.va = va & MASK64
        self.write = write
        self.execute = execute
        self.present = present  # True: a protection violation on a present page
        self.user = user
        self.pte = pte  # the non-present leaf entry (0 = nothing mapped there)

    @property
    def error_code(self) -> int:
        """The #PF error code the CPU pushes (P, W/R, U/S, I/D bits)."""
        return (int(self.present) | (int(self.write) << 1) | (int(self.user) << 2)
                | (int(self.execute) << 4))


def table_indexes(va: int) -> tuple[int, int, int, int]:
    return ((va >> 39) & 0x1FF, (va >> 30) & 0x1FF, (va >> 21) & 0x1FF, (va >> 12) & 0x1FF)


class IntAccess:
    """Little-endian integer reads and writes of virtual memory, in terms of a byte
    `read` and `write` (an address space, or a view of one that handles faults)."""

    def read(self, va: int, size: int) -> bytes:
        raise NotImplementedError

    def write(self, va: int, data: bytes) -> None:
        raise NotImplementedError

    def read_int(self, va: int, size: int, signed: bool = False) -> int:
        return int.from_bytes(self.read(va, size), "little", signed=signed)

    def write_int(self, va: int, size: int, value: int) -> None:
        self.write(va, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))

    def read_u64(self, va: int) -> int:
        return self.read_int(va, 8)

    def write_u64(self, va: int, value: int) -> None:
        self.write_int(va, 8, value)


KERNEL_PML4_FIRST = 256  # PML4 index of the first kernel-half entry


class AddressSpace(IntAccess):
    """One DirectoryTableBase.  Kernel-half PML4 entries are shared between spaces: a
    kernel top-level entry made in any of them, at any time, is written to all of them,
    so kernel memory mapped after a process was created is mapped in that process too
    (as on Windows, where every process sees the same system address space)."""

    def __init__(self, phys: PhysicalMemory, pml4_pfn: int | None = None) -> None:
        self.phys = phys
        self.pml4_pfn = phys.alloc_frame() if pml4_pfn is None else pml4_pfn
        self._tlb: dict[int, tuple[int, int]] = {}
        self._tlb_gen = phys.pt_generation
        # Called for each user page mapped where none was (the process's commit charge).
        self.on_new_user_page: Callable[[], None] | None = None
        # Every space sharing this one's kernel half (one list object, shared by all of
        # them), in the order they joined.
        self.kernel_sharers: list[AddressSpace] = [self]

    @property
    def cr3(self) -> int:
        return self.pml4_pfn << PAGE_SHIFT

    def share_kernel_half(self, other: AddressSpace) -> None:
        """Copy the kernel-half PML4 entries (256..511) of another space, and keep
        receiving the ones any sharing space creates from now on."""
        src = self.phys.frame(other.pml4_pfn)
        self.phys.frame(self.pml4_pfn)[0x800:0x1000] = src[0x800:0x1000]
        self.phys.pt_generation += 1
        self.kernel_sharers = other.kernel_sharers
        self.kernel_sharers.append(self)

    # -- building the tables ---------------------------------------------------------

    def _entry_pa(self, va: int, create: bool) -> int | None:
        """Physical address of the PTE for va, creating intermediate tables if asked."""
        table = self.pml4_pfn
        idx = table_indexes(va)
        for level in range(3):
            pa = (table << PAGE_SHIFT) + idx[level] * 8
            e = self.phys.read_u64(pa)
            if not e & PTE_PRESENT:
                if not create:
                    return None
                new = self.phys.alloc_frame()
                flags = PTE_PRESENT | PTE_WRITE | PTE_ACCESSED | PTE_DIRTY
                if va < CANONICAL_KERNEL:
                    flags |= PTE_USER
                e = (new << PAGE_SHIFT) | flags
                if level == 0 and idx[0] >= KERNEL_PML4_FIRST:
                    # A new kernel top-level entry: into every space's PML4 at once.
                    for space in self.kernel_sharers:
                        self.phys.write_u64((space.pml4_pfn << PAGE_SHIFT) + idx[0] * 8, e)
                else:
                    self.phys.write_u64(pa, e)
            table = (e & ADDR_MASK) >> PAGE_SHIFT
        return (table << PAGE_SHIFT) + idx[3] * 8

    def set_pte(self, va: int, value: int) -> None:
        pa = self._entry_pa(va, create=True)
        assert pa is not None
        self.phys.write_u64(pa, value)
        self.phys.pt_generation += 1

    def get_pte(self, va: int) -> int:
        pa = self._entry_pa(va, create=False)
        return 0 if pa is None else self.phys.read_u64(pa)

    def map_page(self, va: int, pfn: int, *, writable: bool = True, user: bool = False,
                 executable: bool = False) -> None:
        flags = PTE_PRESENT | PTE_ACCESSED | PTE_DIRTY
        if writable:
            flags |= PTE_WRITE
        if user:
            flags |= PTE_USER
        else:
            flags |= PTE_GLOBAL
        if not executable:
            flags |= PTE_NX
        fresh = user and self.on_new_user_page is not None \
            and not self.get_pte(va) & PTE_PRESENT
        self.set_pte(va, (pfn << PAGE_SHIFT) | flags)
        if fresh:
            self.on_new_user_page()

    def map_new(self, va: int, size: int, **kw: bool) -> None:
        """Map fresh zeroed frames over [va, va+size)."""
        for page in range(va & ~0xFFF, va + size, PAGE_SIZE):
            self.map_page(page, self.phys.alloc_frame(), **kw)

    def page_out(self, va: int, pagefile_offset: int) -> None:
        """Make a page non-resident: a software PTE naming its page-file location."""
        self.set_pte(va, (pagefile_offset << PAGEFILE_HIGH_SHIFT)
                     | (MM_READWRITE << SOFTWARE_PROTECTION_SHIFT))

    # -- translation ---------------------------------------------------------------

    def translate(self, va: int, write: bool = False, execute: bool = False,
                  user: bool = False) -> int:
        va &= MASK64
        if self._tlb_gen != self.phys.pt_generation:
            self._tlb.clear()
            self._tlb_gen = self.phys.pt_generation
        vpn = va >> PAGE_SHIFT
        hit = self._tlb.get(vpn)
        if hit is None:
            if not canonical(va):
                raise PageFault(va, write, execute, False, user)
            pa = self._entry_pa(va, create=False)
            pte = 0 if pa is None else self.phys.read_u64(pa)
            if not pte & PTE_PRESENT:
                raise PageFault(va, write, execute, False, user, pte)
            hit = ((pte & ADDR_MASK) >> PAGE_SHIFT, pte)
            self._tlb[vpn] = hit
        pfn, pte = hit
        if (write and not pte & PTE_WRITE) or (execute and pte & PTE_NX) or \
                (user and not pte & PTE_USER):
            raise PageFault(va, write, execute, True, user)
        return (pfn << PAGE_SHIFT) | (va & 0xFFF)

    def read(self, va: int, size: int) -> bytes:
        va &= MASK64
        end_off = (va & 0xFFF) + size
        if end_off <= PAGE_SIZE:
            pa = self.translate(va)
            f = self.phys.frames[pa >> PAGE_SHIFT]
            off = pa & 0xFFF
            return bytes(f[off:off + size])
        out = bytearray()
        while size > 0:
            n = min(size, PAGE_SIZE - (va & 0xFFF))
            out += self.read(va, n)
            va = (va + n) & MASK64
            size -= n
        return bytes(out)

    def write(self, va: int, data: bytes) -> None:
        va &= MASK64
        # Translate every page first so a fault leaves memory untouched, as on x64.
        pas = []
        pos = 0
        while pos < len(data):
            n = min(len(data) - pos, PAGE_SIZE - (va & 0xFFF))
            pas.append((self.translate(va, write=True), pos, n))
            va = (va + n) & MASK64
            pos += n
        for pa, p, n in pas:
            self.phys.write(pa, data[p:p + n])

    def write_image(self, va: int, data: bytes) -> None:
        """Write ignoring page protection, as a loader fills read-only code pages."""
        pos = 0
        while pos < len(data):
            n = min(len(data) - pos, PAGE_SIZE - ((va + pos) & 0xFFF))
            self.phys.write(self.translate(va + pos), data[pos:pos + n])
            pos += n
