"""Breakpoints with an explicit number (`bp5 addr`, `bu7 sym`, `ba3 w8 addr`, `bp[expr]`),
and kd's redefinition rules: an id in use is replaced (`breakpoint N exists,
redefining`), a breakpoint at the same place is replaced (`breakpoint N redefined`, the
lower number kept).  Run on a live probe machine; addresses come from its symbols."""

from __future__ import annotations

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from tests.conftest import run
from tests.machine.probe import boot_probe, start_system_thread

ROUTINES = {
    "Looper": """
    xor     ebx, ebx
l_loop:
    inc     rbx
    mov     qword ptr [Counter], rbx
    call    Leaf
    jmp     l_loop
""",
    "Leaf": """
    mov     qword ptr [Other], rcx
    ret
""",
}
GLOBALS = {"Counter": 8, "Other": 8}


def live(*threads: str) -> tuple[object, Session]:
    m = boot_probe("bi", ROUTINES, GLOBALS)
    for i, routine in enumerate(threads):
        start_system_thread(m, 0x4000 + 4 * i, m.sym(f"bi!{routine}"))
    target = LiveTarget(m)
    s = Session(target, processor=target.stop_processor)
    s.run_budget = 200_000
    return m, s


def a(x: int) -> str:
    return f"{x >> 32:08x}`{x & 0xFFFFFFFF:08x}"


def ids(s: Session) -> dict[int, int | None]:
    return {b.id: b.address for b in s.breakpoints}


@pytest.mark.parametrize("line, ident, symbol", [
    ("bp5 bi!Looper", 5, "bi!Looper"),
    ("bu7 bi!Leaf", 7, "bi!Leaf"),
    ("bp12 bi!Leaf+4", 12, "bi!Leaf+4"),
    ("bp[0x10] bi!Looper", 0x10, "bi!Looper"),
    ("BP3 bi!Leaf", 3, "bi!Leaf"),
])
def test_an_id_glued_to_the_name_numbers_the_breakpoint(line, ident, symbol):
    m, s = live()
    assert run(s, line) == []
    assert ids(s) == {ident: m.sym(symbol.split("+")[0]) + (4 if "+" in symbol else 0)}
    row = run(s, "bl")
    assert row == [f"{ident:>6} e Disable Clear  {a(s.breakpoints.items[ident].address)}"
                   f"     0001 (0001) {symbol.replace('+4', '+0x4')}"]


def test_ba_with_an_id_and_the_next_free_number_after_it():
    m, s = live()
    assert run(s, "ba3 w8 bi!Counter") == []
    assert run(s, "bp bi!Looper") == []
    assert ids(s) == {3: m.sym("bi!Counter"), 0: m.sym("bi!Looper")}
    assert run(s, "bl 3") == [f"     3 e Disable Clear  {a(m.sym('bi!Counter'))} w 8 "
                              "0001 (0001) bi!Counter"]


def test_a_blank_before_the_number_makes_it_an_address():
    _, s = live()
    assert run(s, "bp 5") == []
    assert ids(s) == {0: 5}


def test_an_id_in_use_is_redefined():
    m, s = live()
    run(s, "bp2 bi!Looper")
    assert run(s, 'bp2 bi!Leaf 3 "r rbx"') == ["breakpoint 2 exists, redefining"]
    bp = s.breakpoints.items[2]
    assert ids(s) == {2: m.sym("bi!Leaf")} and bp.passes == 3 and bp.command == "r rbx"
    # a data breakpoint may take the number of a code one
    assert run(s, "ba2 r4 bi!Other") == ["breakpoint 2 exists, redefining"]
    assert s.breakpoints.items[2].kind == "ba" and len(s.breakpoints) == 1


def test_the_same_address_twice_keeps_the_lower_number():
    m, s = live()
    looper = m.sym("bi!Looper")
    run(s, "bp4 bi!Looper")
    # a new number below the old one: the new breakpoint keeps its own (0)
    assert run(s, "bp bi!Looper") == ["breakpoint 4 redefined"]
    assert ids(s) == {0: looper}
    # an explicit higher number: it takes the lower one of the breakpoint it replaces
    assert run(s, "bp9 bi!Looper 2") == ["breakpoint 0 redefined"]
    assert ids(s) == {0: looper} and s.breakpoints.items[0].passes == 2
    # a bu that resolves to the same address replaces it too
    assert run(s, "bu bi!Looper") == ["breakpoint 0 redefined"]
    assert s.breakpoints.items[0].kind == "bu"


def test_both_messages_when_the_id_and_the_address_are_in_use():
    m, s = live()
    run(s, "bp bi!Looper")
    run(s, "bp1 bi!Leaf")
    assert run(s, "bp1 bi!Looper") == ["breakpoint 1 exists, redefining",
                                       "breakpoint 0 redefined"]
    assert ids(s) == {0: m.sym("bi!Looper")}


def test_data_breakpoints_match_by_address_and_code_ones_do_not_match_them():
    m, s = live()
    counter = m.sym("bi!Counter")
    run(s, "ba w8 bi!Counter")
    assert run(s, "ba1 r4 bi!Counter") == ["breakpoint 0 redefined"]
    assert ids(s) == {0: counter} and s.breakpoints.items[0].access == "r"
    assert run(s, "bp bi!Counter") == []  # a code breakpoint is another kind
    assert len(s.breakpoints) == 2


def test_different_conditions_are_different_breakpoints():
    m, s = live()
    run(s, "bp bi!Looper")
    assert run(s, "bp /t 1234 bi!Looper") == []
    assert len(s.breakpoints) == 2


def test_a_numbered_breakpoint_stops_with_its_number():
    m, s = live("Looper")
    run(s, "bp7 bi!Leaf")
    out = run(s, "g")
    assert out[0] == "Breakpoint 7 hit"
    assert m.processors[s.processor].cpu.rip == m.sym("bi!Leaf")


def test_bp_without_an_address_is_at_the_current_instruction():
    m, s = live("Looper")
    run(s, "bp bi!Leaf")
    run(s, "g")
    rip = m.processors[s.processor].cpu.rip
    assert run(s, "bp3") == ["breakpoint 0 redefined"]
    assert ids(s) == {0: rip}


@pytest.mark.parametrize("line, column", [("bp5x bi!Looper", 3), ("ba2w8 bi!Counter", 3),
                                          ("bp0x10 bi!Looper", 3)])
def test_a_number_not_followed_by_a_blank_is_a_syntax_error(line, column):
    _, s = live()
    assert run(s, line) == [" " * (len(s.prompt) + column) + f"^ Syntax error in '{line}'"]
    assert len(s.breakpoints) == 0


def test_bm_redefines_breakpoints_already_on_a_matching_function():
    m, s = live()
    run(s, "bp3 bi!Leaf")
    out = run(s, "bm bi!L*")
    assert "breakpoint 3 redefined" in out
    assert sorted(ids(s).values()) == sorted([m.sym("bi!Leaf"), m.sym("bi!Looper")])
