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
