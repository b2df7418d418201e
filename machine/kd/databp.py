"""Data breakpoints (kd `ba`): the four debug-register slots every processor shares.

kd sets a `ba` breakpoint on every processor; here each processor's DR0-DR3/DR7 are loaded
with the same slots (and mirrored into KPRCB.ProcessorState.SpecialRegisters, where a
debugger reads a processor's debug registers).  Accesses by x64 instructions are checked by
the CPU itself (machine.cpu.core).  Writes made by the kernel's Python routines go through
physical memory: while a write slot is armed, the machine's physical memory reports writes
that overlap the slot's physical bytes, and the hit is raised once the routine's step is
over, so the routine's frame stays intact and resumable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from machine.cpu.debugregs import (
    DR6_B_MASK,
    LEN_FIELD,
    RW_EXECUTE,
    RW_READWRITE,
    RW_WRITE,
    SLOTS,
    encode_dr7,
)
from machine.kd.breakpoints import BreakpointHit
from machine.mm.paging import PageFault
from machine.mm.physical import PhysicalMemory

# kd's access letters (`ba e1`, `ba w4`, `ba r8`) and the names used here.
KINDS = {"e": "execute", "execute": "execute", "w": "write", "write": "write",
         "r": "readwrite", "rw": "readwrite", "readwrite": "readwrite"}
RW_OF_KIND = {"execute": RW_EXECUTE, "write": RW_WRITE, "readwrite": RW_READWRITE}


class DataBreakpointError(ValueError):
    """A `ba` request the processors' debug registers cannot hold."""


@dataclass(frozen=True)
class DataBreakpoint:
    slot: int  # DRn
    address: int
    size: int
    kind: str  # "execute" | "write" | "readwrite"


class DataBreakpointHit(BreakpointHit):
    """A processor stopped on a data breakpoint.  `address` is the breakpoint's address;
    `accessed`/`access_size`/`access` what the access was ("execute", "read", "write");
    `rip` where the processor stopped; `routine` the kernel routine that made the access
    when it was not an x64 instruction (the stop is then after that routine's step)."""

    def __init__(self, processor: int, bp: DataBreakpoint, accessed: int, access_size: int,
                 access: str, rip: int, routine: str | None = None) -> None:
        super().__init__(processor, bp.address)
        self.breakpoint = bp
        self.slot = bp.slot
        self.kind = bp.kind
        self.accessed = accessed
        self.access_size = access_size
        self.access = access
        self.rip = rip
        self.routine = routine
        by = f" by {routine}" if routine else ""
        self.args = (f"data breakpoint {bp.slot} ({bp.kind} {bp.size} at {bp.address:#x}) "
                     f"hit on processor {processor}: {access} of {access_size} at "
                     f"{accessed:#x}{by}, rip {rip:#x}",)


def validate(address: int, size: int, kind: str) -> tuple[int, int, str]:
    """The canonical (address, size, kind) of a request, or DataBreakpointError."""
    name = KINDS.get(kind.lower())
    if name is None:
        raise DataBreakpointError(f"unknown access kind {kind!r} (e, w or r)")
    if size not in LEN_FIELD:
        raise DataBreakpointError(f"size {size} is not 1, 2, 4 or 8")
    if name == "execute" and size != 1:
        raise DataBreakpointError("execute breakpoints must have size 1")
    if address & (size - 1):
        raise DataBreakpointError(
            f"address {address:#x} is not aligned to the breakpoint size {size}")
    return address & 0xFFFFFFFFFFFFFFFF, size, name


@dataclass
class DataBreakpoints:
    slots: list[DataBreakpoint | None] = field(default_factory=lambda: [None] * SLOTS)
    # (first physical byte, end, slot) of write/read-write slots, for kernel routines' writes
    phys_ranges: list[tuple[int, int, int]] = field(default_factory=list)
    stepping: object | None = None  # the Processor whose step is under way
    native_hits: list[tuple[int, int, int, str]] = field(default_factory=list)

    @property
    def armed(self) -> bool:
        return any(s is not None for s in self.slots)

    def find(self, address: int, size: int, kind: str) -> DataBreakpoint | None:
        return next((s for s in self.slots if s is not None
                     and (s.address, s.size, s.kind) == (address, size, kind)), None)

    def add(self, address: int, size: int, kind: str) -> DataBreakpoint:
        free = next((i for i, s in enumerate(self.slots) if s is None), None)
        if free is None:
            raise DataBreakpointError(f"all {SLOTS} debug registers are in use")
        bp = DataBreakpoint(free, address, size, kind)
        self.slots[free] = bp
        return bp

    def remove(self, slot: int) -> DataBreakpoint:
        if not 0 <= slot < SLOTS or self.slots[slot] is None:
            raise DataBreakpointError(f"no data breakpoint in slot {slot}")
        bp = self.slots[slot]
        self.slots[slot] = None
        assert bp is not None
        return bp

    def registers(self) -> tuple[list[int], int]:
        """DR0-DR3 and DR7 for these slots."""
        addresses = [s.address if s is not None else 0 for s in self.slots]
        dr7 = encode_dr7([(RW_OF_KIND[s.kind], s.size) if s is not None else None
                          for s in self.slots])
        return addresses, dr7

    def execute_slot(self, rip: int) -> DataBreakpoint | None:
        return next((s for s in self.slots if s is not None and s.kind == "execute"
                     and s.address == rip), None)

    # -- writes by kernel routines ---------------------------------------------------------

    def map_physical(self, kspace) -> None:
        """Where the write slots' bytes are in physical memory (kernel addresses mapped
        now; others are left to the CPU's own checks)."""
        self.phys_ranges = []
        for s in self.slots:
            if s is None or s.kind == "execute":
                continue
            try:
                pa = kspace.translate(s.address)
            except PageFault:
                continue
            self.phys_ranges.append((pa, pa + s.size, s.slot))

    def observe(self, phys: PhysicalMemory) -> None:
        """Route phys's writes through the check while a write slot is mapped."""
        if self.phys_ranges:
            base_write = PhysicalMemory.write

            def write(pa: int, data: bytes, phys=phys) -> None:
                base_write(phys, pa, data)
                proc = self.stepping
                if proc is not None and not proc.cpu.in_instruction:  # type: ignore[attr-defined]
                    self._note_write(pa, len(data))

            phys.write = write  # type: ignore[method-assign]
        else:
            phys.__dict__.pop("write", None)

    def _note_write(self, pa: int, n: int) -> None:
        for lo, hi, slot in self.phys_ranges:
            if pa < hi and lo < pa + n:
                bp = self.slots[slot]
                assert bp is not None
                self.native_hits.append((slot, bp.address + (pa - lo), n, "write"))

    def take_native_hits(self, proc) -> list[tuple[int, int, int, str]]:
        """The step's accesses made outside x64 instructions: physical writes noted above
        and the CPU's pushes/pops on the routine's behalf; sets their DR6 bits."""
        hits = self.native_hits + list(proc.cpu.take_data_hits())
        self.native_hits = []
        for slot, *_ in hits:
            proc.cpu.dr[6] |= 1 << slot
        return hits

    def hit(self, proc, hits, rip: int, routine: str | None = None) -> DataBreakpointHit:
        """The stop for the first of `hits` ((slot, address, size, access) tuples)."""
        slot, accessed, n, access = hits[0]
        bp = self.slots[slot]
        assert bp is not None
        return DataBreakpointHit(proc.number, bp, accessed, n, access, rip, routine)


def clear_status(cpu) -> None:
    """What the debugger does before resuming a processor: clear DR6's B0-B3."""
    cpu.dr[6] &= ~DR6_B_MASK
