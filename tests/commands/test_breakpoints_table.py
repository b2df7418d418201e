"""The debugger's breakpoint table: numbering, what a run arms, and which breakpoint a stop
belongs to."""

from __future__ import annotations

from commands.bptable import CODE, DATA, UNRESOLVED, Breakpoint, BreakpointTable
from commands.target import DataWatch


def table(*bps: Breakpoint) -> BreakpointTable:
    t = BreakpointTable()
    for bp in bps:
        t.add(bp)
    return t


def test_new_breakpoints_take_the_lowest_free_number():
    t = table(Breakpoint(0, CODE, "a", 0x10), Breakpoint(2, CODE, "b", 0x20))
    assert t.next_id() == 1
    t.add(Breakpoint(1, CODE, "c", 0x30))
    assert t.next_id() == 3
    t.remove(0)
    assert t.next_id() == 0
    assert [b.id for b in t] == [1, 2]


def test_a_run_arms_enabled_resolved_breakpoints_and_at_most_four_watches():
    t = table(Breakpoint(0, CODE, "a", 0x10), Breakpoint(1, CODE, "b", 0x20, enabled=False),
              Breakpoint(2, UNRESOLVED, "x!y", None),
              *(Breakpoint(3 + i, DATA, "d", 0x100 + 8 * i, access="w", size=8)
                for i in range(5)))
    armed = t.armed(frozenset({0x99}))
    assert armed.code == frozenset({0x10, 0x99})
    assert armed.data == tuple(DataWatch(0x100 + 8 * i, 8, "w") for i in range(4))


def test_unresolved_breakpoints_resolve_when_their_expression_does():
    t = table(Breakpoint(0, UNRESOLVED, "x!y", None))
    t.resolve(lambda e: None)
    assert t.items[0].address is None
    t.resolve(lambda e: 0x1234 if e == "x!y" else None)
    assert t.items[0].address == 0x1234 and t.armed().code == frozenset({0x1234})


def test_a_stop_belongs_to_the_enabled_breakpoint_at_its_address_or_watch():
    w = DataWatch(0x200, 4, "r")
    t = table(Breakpoint(0, CODE, "a", 0x10, enabled=False), Breakpoint(1, CODE, "b", 0x10),
              Breakpoint(2, DATA, "d", 0x200, access="r", size=4))
    assert t.hit_by(0x10, None).id == 1
    assert t.hit_by(0x200, w).id == 2
    assert t.hit_by(0x200, None) is None
    assert t.hit_by(0x30, None) is None
