"""What the debugger may know of a target: memory, registers, symbols and types.

Commands never look at the simulator's objects.  Everything they print is read through
this interface, exactly as kd reads a live machine or a dump; the live simulated machine
and a dump-file reader both implement it (in `kdsim/`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class MemoryAccessError(Exception):
    """A virtual or physical address that cannot be read (not mapped, paged out, no frame)."""

    def __init__(self, address: int) -> None:
        super().__init__(f"memory access error at {address:#x}")
        self.address = address


# Unwind operations, in the spirit of x64 UNWIND_CODEs: each applies once execution in
# the function has passed `offset` bytes (the end of the prologue instruction).
UWOP_PUSH = "push"  # arg: register name
UWOP_ALLOC = "alloc"  # arg: byte count
UWOP_MACHFRAME = "machframe"  # arg: 1 if an error code was pushed (trap frames)


@dataclass(frozen=True, slots=True)
class UnwindOp:
    offset: int
    op: str
    arg: int | str = 0


@dataclass(frozen=True, slots=True)
class FunctionSymbol:
    """A function in a symbol file: its range and how to unwind out of it."""

    name: str
    rva: int
    size: int
    unwind: tuple[UnwindOp, ...] = ()


@dataclass(frozen=True, slots=True)
class DataSymbol:
    name: str
    rva: int
    size: int = 8
    type: str = ""  # a type name the debugger may use (`nt!_LIST_ENTRY`), if known


@dataclass(frozen=True)
class SymbolFile:
    """What a PDB gives kd for one image: public functions and data by RVA."""

    module: str  # debugger module name: "nt", "hal", "myfault"
    image: str  # file name: "ntkrnlmp.exe", "myfault.sys"
    pdb: str  # symbol file name shown by lm: "ntkrnlmp.pdb"
    functions: tuple[FunctionSymbol, ...] = ()
    data: tuple[DataSymbol, ...] = ()
    private: bool = False
    _sorted: list[tuple[int, int, str]] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        rows = [(f.rva, f.size, f.name) for f in self.functions]
        rows += [(d.rva, d.size, d.name) for d in self.data]
        rows.sort()
        self._sorted.extend(rows)

    def lookup(self, name: str) -> int | None:
        low = name.lower()
        for f in self.functions:
            if f.name.lower() == low:
                return f.rva
        for d in self.data:
            if d.name.lower() == low:
                return d.rva
        return None

    def function_at(self, rva: int) -> FunctionSymbol | None:
        for f in self.functions:
            if f.rva <= rva < f.rva + f.size:
                return f
        return None

    def nearest(self, rva: int) -> tuple[str, int] | None:
        """The symbol at or before rva (name, displacement), as `ln` finds it."""
        best = None
        for start, _size, name in self._sorted:
            if start > rva:
                break
            best = (name, rva - start)
        return best


class TypeProvider(Protocol):
    """Type layouts (see machine.types.catalog.TypeCatalog for the shape of the data)."""

    base_types: dict[str, tuple[int, bool]]  # dt base type name -> (size, signed)

    def get(self, name: str): ...  # -> TypeDef | None
    def names(self) -> list[str]: ...
    def sizeof(self, type_str: str) -> int: ...
    def resolve(self, type_name: str, path: str): ...  # -> (offset, Field)


class Target(Protocol):
    """A debuggee, live or dumped."""

    # -- machine ---------------------------------------------------------------------
    @property
    def processor_count(self) -> int: ...

    @property
    def is_live(self) -> bool: ...

    def kernel_base(self) -> int:
        """nt's load address (what the debugger data block / dump header gives kd)."""
        ...

    # -- memory ------------------------------------------------------------------------
    def read_virtual(self, address: int, size: int, dtb: int | None = None) -> bytes:
        """Bytes at a virtual address, translated through the page tables at `dtb`
        (default: the current processor's CR3).  Raises MemoryAccessError naming the
        first unreadable address."""
        ...

    def read_physical(self, address: int, size: int) -> bytes: ...

    # -- registers ---------------------------------------------------------------------
    def registers(self, processor: int) -> dict[str, int]:
        """Lower-case register names -> values: rax..r15, rip, rsp, rbp, efl, cs, ss,
        ds, es, fs, gs, cr0, cr2, cr3, cr4, cr8."""
        ...

    # -- symbols and types -----------------------------------------------------------
    def symbol_file(self, image: str) -> SymbolFile | None:
        """The symbols for a loaded image, by its file name (as kd finds a PDB)."""
        ...

    @property
    def types(self) -> TypeProvider: ...

    # -- run control (live targets only; see RunControl below) -----------------------
    @property
    def stop_processor(self) -> int:
        """The processor the target last stopped on (a bug check, a breakpoint, the end
        of a step, a break-in): kd's current processor after the stop."""
        ...

    # -- memory edits and model-specific registers (e*, rdmsr) --------------------------
    # Additive: a target that cannot do these (a dump) raises TargetNotLive.
    def write_virtual(self, address: int, data: bytes, dtb: int | None = None) -> None:
        """Write bytes at a virtual address, as the debugger writes: through the page
        tables but ignoring page protection.  Raises MemoryAccessError naming the first
        address that is not mapped (nothing is written then), TargetNotLive on a dump."""
        ...

    def read_msr(self, processor: int, msr: int) -> int:
        """A model-specific register of one processor.  Raises KeyError for an MSR the
        processor does not have, TargetNotLive on a target without MSRs."""
        ...

    # -- register edits (r reg=value, g =StartAddress) ---------------------------------
    def write_register(self, processor: int, name: str, value: int) -> None:
        """Set one 64-bit register of a stopped processor (lower-case name: rax..r15, rip,
        efl).  Raises KeyError for a register the target cannot set, TargetNotLive on a
        dump."""
        ...


class TargetNotLive(Exception):
    """The operation needs a live target (editing memory, reading MSRs)."""


# -- run control ----------------------------------------------------------------------------
# A live target runs when the debugger lets it go (kd's g, t, p, gu) and stops again on an
# event.  The debugger owns the breakpoints (numbers, state, conditions); for each run it
# hands the target the ones to arm, as kd writes its int 3 bytes and debug registers when
# the target resumes and takes them out again when it stops.  A dump target has none of
# this (`is_live` is False) and does not implement these methods.

# Why a run ended (StopEvent.reason).
STOP_BREAKPOINT = "breakpoint"  # an armed code breakpoint (int 3) was reached
STOP_DATA = "data"  # an armed data breakpoint (debug register) triggered
STOP_STEP = "step"  # the requested step (t, p, gu) is complete
STOP_BREAK = "break"  # break-in requested (Ctrl+C)
STOP_BUGCHECK = "bugcheck"  # the target bug-checked (or had already)
STOP_BUDGET = "budget"  # the run's step budget ran out with no event


@dataclass(frozen=True)
class DataWatch:
    """A data breakpoint to arm: kd's `ba <access><size> <address>`.  `access` is "e"
    (execute), "w" (write) or "r" (read or write)."""

    address: int
    size: int
    access: str


@dataclass(frozen=True)
class ArmedBreakpoints:
    """What the target arms for one run: code breakpoint addresses and data watches."""

    code: frozenset[int] = frozenset()
    data: tuple[DataWatch, ...] = ()


@dataclass(frozen=True)
class StopEvent:
    """How a run ended.  `processor` is the one the target stopped on; for breakpoints
    `address` is the breakpoint's address (for data breakpoints `watch` is the watch that
    triggered); `steps` is how long the run took, in the target's steps."""

    reason: str
    processor: int
    address: int = 0
    watch: DataWatch | None = None
    steps: int = 0


class RunControl(Protocol):
    """The run-control half of a live Target (`is_live` True).  Each call arms `armed`,
    runs at most `max_steps` target steps (None: the target's own limit), stops every
    processor, disarms the code breakpoints (so memory reads show the original bytes while
    stopped) and reports the stop."""

    def go(self, armed: ArmedBreakpoints, max_steps: int | None = None) -> StopEvent:
        """kd's `g`: run until an event."""
        ...

    def step_into(self, processor: int, armed: ArmedBreakpoints,
                  max_steps: int | None = None) -> StopEvent:
        """kd's `t`: the processor executes one instruction (into calls)."""
        ...

    def step_over(self, processor: int, armed: ArmedBreakpoints,
                  max_steps: int | None = None) -> StopEvent:
        """kd's `p`: one instruction; a call or rep instruction runs until the same
        thread is back after it."""
        ...

    def step_out(self, processor: int, armed: ArmedBreakpoints,
                 max_steps: int | None = None) -> StopEvent:
        """kd's `gu`: run until the current function returns to its caller."""
        ...

    def break_in(self) -> None:
        """Ctrl+C: a run under way (or the next one) stops before its next step.  Safe to
        call from a signal handler."""
        ...

    def select_processor(self, processor: int) -> None:
        """kd's `~Ns`: the processor whose CR3 translates reads given no `dtb`."""
        ...


class ProcessContext(Protocol):
    """Additive, for `.process`/`.thread /p` (a target without it keeps reading through
    the current processor's page tables).  Also `stop_count`, an int property counting
    the target's stops (runs, steps, break-ins), by which the debugger knows that an
    implicit thread or process chosen before has expired, as kd resets it on execution."""

    @property
    def stop_count(self) -> int: ...

    def set_implicit_dtb(self, dtb: int | None, at_next_stop: bool = False) -> None:
        """kd's implicit process: reads given no `dtb` translate through the page tables
        at `dtb` (None: the current processor's again) until the next stop or processor
        switch.  `at_next_stop` (kd's `.process /i`) makes the switch when the target
        next stops instead of now."""
        ...


class DumpSource(Protocol):
    """Additive, for `.dump`: what a dump holds beyond reads (a target without
    `physical_pages` cannot be dumped; the other two may be missing)."""

    def physical_pages(self) -> list[int]:
        """The page frame numbers of the target's physical memory, ascending."""
        ...

    def msrs(self, processor: int) -> dict[int, int]:
        """Every model-specific register of one processor, by number."""
        ...

    def description(self) -> dict | None:
        """What the target runs (a kdsim scenario: name, title, seed), or None."""
        ...
