"""Breakpoint command strings are command programs: kd's conditional breakpoints
(`.if (...) {} .else {gc}`, `j (...) '...' ; 'gc'`) stop only when their condition
holds; and a Ctrl+C stops a command program that would not end."""

from __future__ import annotations

import pytest

from tests.conftest import run
from tests.kdsim.test_go_forms import jmp_back, live


@pytest.mark.parametrize("program", [
    '.if (@rcx == 3) {.echo three} .else {gc}',
    "j (@rcx == 3) '.echo three' ; 'gc'",
    r'r $t0 = @rcx; .if (@$t0 != 3) { .printf \"skip %d\\n\", @$t0; gc }; .echo three',
])
def test_conditional_breakpoint_stops_when_its_condition_holds(program):
    m, s = live()
    run(s, f'bp gf!Leaf "{program}"')
    out = run(s, "g")
    assert out.count("Breakpoint 0 hit") == 3
    assert "three" in out
    assert s.registers()["rcx"] == 3
    assert s.registers()["rip"] == m.sym("gf!Leaf")
    # the skipped hits printed what their program printed, in order
    skips = [line for line in out if line.startswith("skip")]
    assert skips in ([], ["skip 1", "skip 2"])


def test_a_go_inside_a_loop_of_a_command_string_ends_the_string():
    m, s = live()
    run(s, 'bp gf!Leaf ".for (r $t1 = 0; @$t1 < 5; r $t1 = @$t1 + 1) { .if (@$t1 == 1) '
           '{ gc }; .printf \\"pass %d\\\\n\\", @$t1 }"')
    run(s, f"bp {jmp_back(m):#x}")  # reached after Leaf returns
    out = run(s, "g")
    # one pass printed, then the go at $t1 == 1 ended the program and resumed the target
    assert [line for line in out if line.startswith("pass")] == ["pass 0"]
    assert out[0] == "Breakpoint 0 hit" and "Breakpoint 1 hit" in out
    assert s.register("$t1") == 1
    assert s.registers()["rip"] == jmp_back(m)


def test_ctrl_c_stops_a_command_program(session):
    calls = {"n": 0}
    real = session.execute_one

    def execute_one(text: str):
        calls["n"] += 1
        if calls["n"] == 50:
            session.break_in()  # what the REPL's SIGINT handler calls
        return real(text)

    session.execute_one = execute_one
    out = session.execute(".while (1) { r $t2 = @$t2 + 1 }")
    assert calls["n"] == 50
    assert out[-1].data == {"error": "interrupted"}
    # the flag does not outlive the program: the next line runs
    assert [line for res in session.execute("? 1") for line in res.lines][0].startswith(
        "Evaluate expression: 1")
