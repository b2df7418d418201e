"""`.sympath`, `.sympath+` and `.reload` on the default crashed machine."""

from __future__ import annotations

from commands.symbols import SymbolEngine
from tests.conftest import run


def test_sympath_is_a_stored_session_setting(session):
    assert run(session, ".sympath") == ["Symbol search path is: <empty>",
                                        "Expanded Symbol search path is: <empty>"]
    assert run(session, ".sympath srv*") == [
        "Symbol search path is: srv*",
        "Expanded Symbol search path is: cache*;srv*https://msdl.microsoft.com/download/symbols"]
    out = run(session, ".sympath+ c:\\MySymbols")
    assert out[0] == "Symbol search path is: srv*;c:\\MySymbols"
    assert out[1].endswith("/symbols;c:\\mysymbols")
    assert run(session, ".sympath") == out
    assert run(session, ".sympath D:\\Other")[0] == "Symbol search path is: D:\\Other"


def test_reload_reads_the_module_list_again(session):
    old = session.symbols
    out = run(session, ".reload")
    mods = SymbolEngine(session.target).modules()
    assert out == ["Loading Kernel Symbols", "." * len(mods), "Loading User Symbols",
                   "Loading unloaded module list"]
    assert session.symbols is not old
    assert [m.name for m in session.symbols.modules()] == [m.name for m in mods]
    assert run(session, ".reload /f") == out
    assert run(session, ".reload /user") == ["Loading User Symbols"]
    assert run(session, ".reload /unl") == ["Loading unloaded module list"]


def test_reload_one_module_and_errors(session):
    for m in session.symbols.modules():
        assert run(session, f".reload {m.name}") == []
        assert run(session, f".reload /f {m.image}") == []
    assert run(session, ".reload nosuch.sys") == ["Unable to find module 'nosuch.sys'"]
    assert run(session, ".reload /q") == ["Syntax error at '/q'"]
