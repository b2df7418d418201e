"""Where things live in the kernel's virtual address space.

Bases are canonical kernel addresses in the ranges Windows 10 x64 uses for each kind of
memory; a seeded slide moves them the way KASLR does, so two seeds give two layouts and
one seed always gives the same one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from machine.mm.physical import PAGE_SIZE


@dataclass(frozen=True)
class KernelLayout:
    nt_base: int
    driver_base: int
    nonpaged_pool: int
    paged_pool: int
    kernel_stacks: int
    pcr_area: int
    special_pool: int = 0
    system_ptes: int = 0  # mappings made at run time: device memory (MmMapIoSpace)
    user_shared_data: int = 0xFFFFF78000000000
    ntdll_base: int = 0x00007FFCAA4A0000

    @classmethod
    def for_seed(cls, seed: int) -> KernelLayout:
        rng = random.Random(f"kaslr:{seed}")
        slide = rng.randrange(0x40) * 0x200000
        return cls(
            nt_base=0xFFFFF8054D000000 + slide,
            driver_base=0xFFFFF80573600000 + rng.randrange(0x40) * 0x10000,
            nonpaged_pool=0xFFFFC983E0000000 + rng.randrange(0x100) * 0x100000,
            paged_pool=0xFFFF8001AC000000 + rng.randrange(0x100) * 0x100000,
            kernel_stacks=0xFFFFC60B80000000 + rng.randrange(0x100) * 0x100000,
            pcr_area=0xFFFFB000AD000000 + rng.randrange(0x10) * 0x100000,
            special_pool=0xFFFFD00000000000 + rng.randrange(0x100) * 0x100000,
            system_ptes=0xFFFFE38000000000 + rng.randrange(0x100) * 0x100000,
        )


class RegionAllocator:
    """Hands out page-aligned virtual ranges from one region, lowest first."""

    def __init__(self, base: int) -> None:
        self.base = base
        self.next = base

    def take(self, size: int, guard_pages: int = 0) -> int:
        self.next += guard_pages * PAGE_SIZE
        va = self.next
        self.next += (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        return va
