"""Exceptions raised by the interpreter."""

from __future__ import annotations

VECTOR_NAMES = {
    -1: "HLT", 0: "#DE", 1: "#DB", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM",
    8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC",
    18: "#MC", 19: "#XM",
}


class CpuException(Exception):
    """An exception (fault or trap) raised by one instruction.

    For faults (#DE, #UD, #GP, #PF, ...) no architectural state has changed and ``rip`` is
    the address of the faulting instruction.  For traps (``int3``, ``int n``) the
    instruction has completed, and ``rip`` is the address after it, which is what the
    hardware pushes.  ``cr2`` and ``write`` are meaningful for #PF only.
    """

    def __init__(self, vector: int, error_code: int | None = None, rip: int | None = None,
                 cr2: int | None = None, write: bool = False) -> None:
        self.vector = vector
        self.error_code = error_code
        self.rip = rip  # type: ignore[assignment]  # filled in by Cpu.step when None
        self.cr2 = cr2
        self.write = write
        super().__init__(vector, error_code, rip, cr2, write)

    def __str__(self) -> str:
        name = VECTOR_NAMES.get(self.vector, f"vector {self.vector:#x}")
        out = name
        if self.error_code is not None:
            out += f" error {self.error_code:#x}"
        if self.rip is not None:
            out += f" at rip {self.rip:#018x}"
        if self.cr2 is not None:
            out += f" cr2 {self.cr2:#018x}"
        return out

    __repr__ = __str__


class Halt(CpuException):
    """``hlt`` executed: vector -1, the instruction has completed (rip is after it).

    The CPU is idle until an interrupt arrives; what that means is up to the caller.
    """

    def __init__(self, rip: int | None = None) -> None:
        super().__init__(-1, None, rip)


class DebugException(CpuException):
    """#DB (vector 1) from the debug registers.

    ``hits`` holds (slot, address, size, access) with access "execute", "read" or "write".
    An instruction breakpoint is a fault (``fault`` True: nothing executed, ``rip`` is the
    instruction); data breakpoints are traps (the instruction completed, ``rip`` is the
    next one, or the same rep string instruction when iterations remain).
    """

    def __init__(self, rip: int, hits: tuple[tuple[int, int, int, str], ...],
                 fault: bool = False) -> None:
        super().__init__(1, None, rip)
        self.hits = hits
        self.fault = fault
