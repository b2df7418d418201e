"""x64 4-level page tables read the way the debugger reads them: physical reads from
the directory table base (CR3) down to the PTE.  `!pte`, `!vtop` and `s` use it; the
target has no PTE self-map, so the walk never goes through virtual addresses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from commands.target import MemoryAccessError

PhysRead = Callable[[int, int], bytes]

MASK64 = 0xFFFFFFFFFFFFFFFF
PAGE = 0x1000
PFN_MASK = 0x000FFFFFFFFFF000
VALID = 0x1
LARGE = 0x80
LEVELS = ("PXE", "PPE", "PDE", "PTE")  # kd's names: PML4E, PDPTE, PDE, PTE
SHIFTS = (39, 30, 21, 12)
SPAN = {39: 1 << 39, 30: 1 << 30, 21: 1 << 21, 12: 1 << 12}


@dataclass(frozen=True)
class Entry:
    level: str  # PXE / PPE / PDE / PTE
    address: int  # physical address of the entry
    value: int | None  # None: the table's frame could not be read

    @property
    def valid(self) -> bool:
        return self.value is not None and bool(self.value & VALID)

    @property
    def large(self) -> bool:
        return self.valid and self.level in ("PPE", "PDE") and bool(self.value & LARGE)

    @property
    def pfn(self) -> int:
        return ((self.value or 0) & PFN_MASK) >> 12


@dataclass(frozen=True)
class Walk:
    va: int
    dtb: int
    entries: tuple[Entry, ...]  # from the PXE down to the last entry read
    physical: int | None  # the translation, None when some entry is not valid

    @property
    def last(self) -> Entry:
        return self.entries[-1]


def canonical(va: int) -> bool:
    va &= MASK64
    return va < 0x0000800000000000 or va >= 0xFFFF800000000000


def _u64(read: PhysRead, pa: int) -> int | None:
    try:
        return int.from_bytes(read(pa, 8), "little")
    except MemoryAccessError:
        return None


def walk(read: PhysRead, dtb: int, va: int) -> Walk:
    """Translate va through the tables at dtb, keeping every entry read on the way."""
    va &= MASK64
    table = dtb & PFN_MASK
    entries: list[Entry] = []
    for level, shift in zip(LEVELS, SHIFTS, strict=True):
        pa = table + ((va >> shift) & 0x1FF) * 8
        entry = Entry(level, pa, _u64(read, pa))
        entries.append(entry)
        if not entry.valid:
            return Walk(va, dtb, tuple(entries), None)
        if entry.large:
            offset = va & (SPAN[shift] - 1)
            base = (entry.value or 0) & PFN_MASK & ~(SPAN[shift] - 1)
            return Walk(va, dtb, tuple(entries), base | offset)
        table = (entry.value or 0) & PFN_MASK
    return Walk(va, dtb, tuple(entries), table | (va & (PAGE - 1)))


def _sign_extend(va: int) -> int:
    return va | 0xFFFF000000000000 if va & (1 << 47) else va


def mapped_runs(read: PhysRead, dtb: int, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Runs [a, b) of present pages inside [start, end), lowest first, found by walking
    the tables (absent tables skip their whole span at once)."""
    run_start: int | None = None
    run_end = 0
    for page, size in _present(read, dtb & PFN_MASK, 0, 0, start & MASK64, end):
        lo, hi = max(page, start), min(page + size, end)
        if lo >= hi:
            continue
        if run_start is not None and lo == run_end:
            run_end = hi
            continue
        if run_start is not None:
            yield run_start, run_end
        run_start, run_end = lo, hi
    if run_start is not None:
        yield run_start, run_end


def _present(read: PhysRead, table: int, depth: int, prefix: int, start: int,
             end: int) -> Iterator[tuple[int, int]]:
    shift = SHIFTS[depth]
    span = SPAN[shift]
    try:
        raw = read(table, PAGE)
    except MemoryAccessError:
        return
    for index in range(512):
        base = _sign_extend(prefix | (index << shift))
        if base + span <= start:
            continue
        if base >= end:
            return
        value = int.from_bytes(raw[index * 8:index * 8 + 8], "little")
        if not value & VALID:
            continue
        if depth == 3 or (depth in (1, 2) and value & LARGE):
            yield base, span
            continue
        yield from _present(read, value & PFN_MASK, depth + 1, prefix | (index << shift),
                            start, end)
