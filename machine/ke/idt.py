"""The interrupt descriptor table: one per processor, 256 `_KIDTENTRY64` gates in memory.

Every exception and interrupt is dispatched by reading the gate for its vector from the
processor's IDT (KPCR.IdtBase), so an entry a driver overwrites really takes effect.
Vectors with no handler of their own in the machine get one of two generic routines
under their real names: an exception stops the machine with
UNEXPECTED_KERNEL_MODE_TRAP (0x7F, P1 = the vector); an interrupt is dismissed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from machine.ke.native import REGISTRY, TrapReturn, routine
from machine.types.view import Struct

IDT_ENTRIES = 256
IDT_ENTRY_SIZE = 0x10
INTERRUPT_GATE = 0xE
KERNEL_CS = 0x10
# Vectors that push an error code (x64 architecture).
ERROR_CODE_VECTORS = frozenset({0x08, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E, 0x11, 0x15})
USER_CALLABLE = frozenset({0x03, 0x04, 0x29, 0x2C, 0x2D})  # DPL 3 gates
UNEXPECTED_KERNEL_MODE_TRAP = 0x7F


@dataclass(frozen=True)
class Gate:
    vector: int
    handler: str
    irql: int | None


@cache
def idt_table() -> tuple[Gate, ...]:
    text = (resources.files("machine.ke") / "data" / "idt-x64.tsv").read_text()
    gates = []
    for line in text.splitlines()[1:]:
        vector, handler, irql = line.split("\t")
        gates.append(Gate(int(vector, 16), handler, None if irql == "-" else int(irql)))
    return tuple(gates)


def _unexpected_exception(vector: int):
    def handler(m, proc, frame):
        from machine.ke.bugcheck import crash

        crash(m, proc, UNEXPECTED_KERNEL_MODE_TRAP, (vector, 0, 0, 0))
        yield  # pragma: no cover - crash() does not return

    return handler


def _dismiss_interrupt(m, proc, frame):
    yield TrapReturn(frame.extra["tf"])


def declare_generic_handlers() -> None:
    """Give every gate in the table a routine, under its real name."""
    for gate in idt_table():
        if gate.handler in REGISTRY:
            continue
        if gate.vector < 0x20:
            routine(gate.handler, trap=True, size=0x100,
                    error_code=gate.vector in ERROR_CODE_VECTORS)(
                _unexpected_exception(gate.vector))
        else:
            routine(gate.handler, trap=True, size=0x80)(_dismiss_interrupt)


def write_gate(space, idt: int, vector: int, handler: int, dpl: int = 0) -> None:
    g = Struct(space, "_KIDTENTRY64", idt + vector * IDT_ENTRY_SIZE)
    g.set("OffsetLow", handler & 0xFFFF)
    g.set("OffsetMiddle", (handler >> 16) & 0xFFFF)
    g.set("OffsetHigh", handler >> 32)
    g.set("Selector", KERNEL_CS)
    g.set("Type", INTERRUPT_GATE)
    g.set("Dpl", dpl)
    g.set("Present", 1)


def read_gate(space, idt: int, vector: int) -> int | None:
    """The handler address of a present gate, or None."""
    g = Struct(space, "_KIDTENTRY64", idt + vector * IDT_ENTRY_SIZE)
    if not g.get("Present"):
        return None
    return g.get("OffsetLow") | g.get("OffsetMiddle") << 16 | g.get("OffsetHigh") << 32


def build_idt(m, proc) -> int:
    """Allocate and fill a processor's IDT; KPCR.IdtBase points at it."""
    idt = m.pool.allocate(0, IDT_ENTRIES * IDT_ENTRY_SIZE, "KIdt")
    for gate in idt_table():
        write_gate(m.kspace, idt, gate.vector, m.sym(f"nt!{gate.handler}"),
                   3 if gate.vector in USER_CALLABLE else 0)
    Struct(m.kspace, "_KPCR", proc.pcr).set("IdtBase", idt)
    proc.idt = idt
    return idt
