"""`~N command` runs one command in processor N's context; `<command> /?` prints the
command's syntax and help from the registry."""

from __future__ import annotations

from commands import registry
from tests.conftest import run


def test_prefix_runs_the_command_on_that_processor_and_comes_back(session) -> None:
    here = session.processor
    for n in range(session.target.processor_count):
        prefixed = run(session, f"~{n}k")
        assert session.processor == here
        switched = run(session, f"~{n}s; k")
        run(session, f"~{here}s")
        assert prefixed == switched
        rip = session.target.registers(n)["rip"]
        assert run(session, f"~{n} r rip") == [f"rip={rip:016x}"]
        assert run(session, f"~{n}r @$prcb") == [
            f"$prcb={session.prcb(n):016x}"]
    assert session.processor == here


def test_prefix_keeps_a_context_set_with_trap(session) -> None:
    other = (session.processor + 1) % session.target.processor_count
    rsp = session.registers()["rsp"]
    session.scope = type("Scope", (), {})()  # any context object
    saved = session.scope
    run(session, f"~{other}r rsp")
    assert session.scope is saved
    session.scope = None
    assert session.registers()["rsp"] == rsp


def test_prefix_errors(session) -> None:
    n = session.target.processor_count
    assert run(session, f"~{n}k") == [f"{' ' * 8}^ Syntax error in '~{n}k'"]
    assert run(session, "~")[0].endswith("^ Syntax error in '~'")
    assert run(session, "~x")[0].endswith("^ Syntax error in '~x'")


def test_slash_question_mark_shows_the_registry_help(session) -> None:
    for name in ("!process", "dt", "bp", "!pool", ".printf", "k", "lm"):
        spec = registry.COMMANDS[name.lower()]
        for form in ("/?", "-?"):
            out = run(session, f"{name} {form}")
            assert out[0] == f"Usage: {spec.syntax}"
            assert out[1] == f"  {spec.help}"
    # `?` itself evaluates: `? /?` is no help request.
    assert not run(session, "? /?")[0].startswith("Usage")
