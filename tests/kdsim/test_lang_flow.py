"""Control-flow tokens over the session's command execution: .if/.elsif/.else, .for,
.while, .do, .break, .continue, .block, .foreach, j and z."""

from __future__ import annotations

import pytest

import commands.flow as flow
from commands.flow import For, Foreach, If, parse_program
from tests.conftest import run


def values(lines: list[str]) -> list[int]:
    # `Evaluate expression: N = ...`, N signed
    return [int(line.split()[2]) & (1 << 64) - 1 for line in lines]


def test_if_elsif_else(session) -> None:
    for n, want in ((0, "zero"), (1, "one"), (5, "many")):
        line = (f".if (0n{n} == 0) {{ .echo zero }} .elsif (0n{n} == 1) {{ .echo one }} "
                ".else { .echo many }")
        assert run(session, line) == [want]
    assert run(session, ".if (@$proc != 0) { .echo has } ; .echo after") == ["has", "after"]


def test_script_layout_with_separators_between_tokens(session) -> None:
    # what `$$><` makes of a multi-line script: newlines became semicolons
    program = ".if (0);{;.echo a;};.elsif (1);{;.echo b;};.else;{;.echo c;}"
    assert run(session, program) == ["b"]
    assert parse_program(program) == (If((("0", ";.echo a;"), ("1", ";.echo b;")),
                                         ";.echo c;"),)


def test_for_with_several_steps(session) -> None:
    out = run(session, ".for (r $t0=0, $t1=0; @$t0 < 4; r $t0=@$t0+1; r $t1=@$t1+2) "
                       "{ ? @$t0 + @$t1 }")
    assert values(out) == [0, 3, 6, 9]
    assert session.evaluate("@$t1") == 8
    assert parse_program(".for (r $t0=poi(rsp); @$t0; r $t0=poi(@$t0)) { r }") == (
        For("r $t0=poi(rsp)", "@$t0", ("r $t0=poi(@$t0)",), " r "),)


def test_while_do_break_continue(session) -> None:
    assert values(run(session, "r $t0=0; .while (@$t0 < 5) { r $t0=@$t0+1; "
                               ".if (@$t0 == 2) { .continue }; .if (@$t0 == 4) { .break }; "
                               "? @$t0 }")) == [1, 3]
    # .do runs its block before the first test
    assert values(run(session, "r $t0=9; .do { ? @$t0; r $t0=@$t0+1 } (@$t0 < 3)")) == [9]


def test_block_and_nested_loops(session) -> None:
    out = run(session, ".for (r $t0=0; @$t0<2; r $t0=@$t0+1) { .for (r $t1=0; @$t1<2; "
                       "r $t1=@$t1+1) { .block { ? @$t0*0n10+@$t1 } } }")
    assert values(out) == [0, 1, 10, 11]


def test_foreach_over_command_output(session, app) -> None:
    rsp = session.evaluate("rsp")
    words = [int.from_bytes(app.target.read_virtual(rsp + 8 * i, 8), "little")
             for i in range(2)]
    out = run(session, ".foreach (v { dq rsp L2 }) { ? v }")
    # dq prints the address then two values: three tokens, each evaluated
    assert values(out) == [rsp, *words]
    out = run(session, ".foreach /pS 1 /ps 1 (v { dq rsp L2 }) { ? ${v} }")
    assert values(out) == [words[0]]


def test_foreach_over_a_string_and_a_file(session, tmp_path) -> None:
    assert run(session, '.foreach /s (w "a bb  ccc") { .echo [${w}] w }') == [
        "[a] a", "[bb] bb", "[ccc] ccc"]
    f = tmp_path / "tokens.txt"
    f.write_text("10\n20 30\n", encoding="utf-8")
    assert values(run(session, f'.foreach /f (n "{f}") {{ ? n }}')) == [0x10, 0x20, 0x30]
    assert parse_program('.foreach /f (n "x y") { ? n }') == (
        Foreach("/f", "n", "x y", True, " ? n "),)


def test_j_forms(session) -> None:
    assert run(session, "j 1 '.echo a; .echo b' ; '.echo c'") == ["a", "b"]
    assert run(session, "j 0 '.echo a; .echo b' ; '.echo c'; .echo ignored") == ["c"]
    assert run(session, 'j (1 == 2) ".echo a" ; ".echo c"') == ["c"]
    assert run(session, "j (@$proc != 0) .echo a ; .echo c") == ["a"]
    assert run(session, "j 0 ; .echo c") == ["c"]
    assert run(session, "j 0 '.echo a'") == []


def test_z_repeats_the_commands_before_it(session) -> None:
    out = run(session, "r $t0=0; .block { r $t0=@$t0+1; ? @$t0; z(@$t0 < 3) }; .echo done")
    assert values(out[:-1]) == [1, 2, 3] and out[-1] == "done"
    out = run(session, "r $t5=3; .block { r $t5=@$t5-1; z(@$t5) }; ? @$t5")
    assert values(out) == [0]


def test_loops_are_bounded(session, monkeypatch) -> None:
    monkeypatch.setattr(flow, "MAX_FLOW_STEPS", 500)
    assert run(session, ".while (1) { r $t0=1 }") == [
        "kdsim: command program stopped after 500 steps"]
    assert run(session, ".echo the session goes on") == ["the session goes on"]


def test_errors_end_a_block_but_not_the_session(session) -> None:
    assert run(session, ".block { .echo one; bogus; .echo two }; .echo three")[:2] == [
        "one", " " * len(session.prompt) + "^ Syntax error in 'bogus'"]
    assert run(session, ".if (nosuchsymbol) { .echo x }") == [
        "Couldn't resolve error at 'nosuchsymbol'"]
    assert run(session, ".if (1) .echo x")[0].startswith("Syntax error at")
    assert run(session, ".echo still here") == ["still here"]


@pytest.mark.parametrize("line", [".if", ".if (1", ".for (1) { }", ".foreach (x) { }", "{ r }",
                                  ".while (1) {", "}", ".do { } ", "j", "z("])
def test_malformed_programs_give_kd_errors(session, line) -> None:
    out = run(session, line)
    assert out and all("internal" not in x for x in out)
