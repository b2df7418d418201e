"""The debugger's breakpoint table: numbers, enabled state, pass counts, command strings and
/p /t conditions, as kd keeps them.  The target only ever sees the addresses and watches to
arm for one run (commands/target.py: ArmedBreakpoints)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from commands.target import ArmedBreakpoints, DataWatch

CODE = "bp"  # an address breakpoint (bp, bm)
UNRESOLVED = "bu"  # kept as an expression, resolved at each run (bu, deferred bp)
DATA = "ba"  # a processor (debug-register) breakpoint
DATA_SLOTS = 4  # DR0-DR3


@dataclass
class Breakpoint:
    id: int
    kind: str  # CODE | UNRESOLVED | DATA
    expression: str  # as typed (what a `bu` tracks)
    address: int | None  # None: not resolved (yet)
    enabled: bool = True
    passes: int = 1  # the pass count it was given
    remaining: int = 1  # passes left before it breaks (stays 1 once reached)
    command: str | None = None  # the command string, without its quotes
    one_shot: bool = False  # /1: deleted when hit
    process: int | None = None  # /p: only in this EPROCESS
    thread: int | None = None  # /t: only in this ETHREAD
    access: str = ""  # DATA: "e" | "w" | "r"
    size: int = 0  # DATA: 1, 2, 4 or 8

    @property
    def watch(self) -> DataWatch | None:
        if self.kind != DATA or self.address is None:
            return None
        return DataWatch(self.address, self.size, self.access)


class BreakpointTable:
    def __init__(self) -> None:
        self.items: dict[int, Breakpoint] = {}

    def __iter__(self):
        return iter(sorted(self.items.values(), key=lambda b: b.id))

    def __len__(self) -> int:
        return len(self.items)

    def next_id(self) -> int:
        """kd gives a new breakpoint the lowest unused number."""
        n = 0
        while n in self.items:
            n += 1
        return n

    def add(self, bp: Breakpoint) -> Breakpoint:
        self.items[bp.id] = bp
        return bp

    def remove(self, ident: int) -> None:
        self.items.pop(ident, None)

    def hit_by(self, address: int, watch: DataWatch | None) -> Breakpoint | None:
        """The enabled breakpoint a stop at `address` (or on `watch`) belongs to."""
        for b in self:
            if not b.enabled:
                continue
            if watch is not None and b.watch == watch:
                return b
            if watch is None and b.kind != DATA and b.address == address:
                return b
        return None

    def resolve(self, lookup: Callable[[str], int | None]) -> None:
        """Unresolved breakpoints whose expression resolves now get their address."""
        for b in self:
            if b.kind == UNRESOLVED:
                address = lookup(b.expression)
                if address is not None:
                    b.address = address

    def armed(self, extra_code: frozenset[int] = frozenset()) -> ArmedBreakpoints:
        code = {b.address for b in self
                if b.enabled and b.kind != DATA and b.address is not None}
        data: list[DataWatch] = []
        for b in self:
            w = b.watch
            if b.enabled and w is not None and w not in data and len(data) < DATA_SLOTS:
                data.append(w)  # the processors have four debug registers
        return ArmedBreakpoints(frozenset(code) | extra_code, tuple(data))  # type: ignore[arg-type]
