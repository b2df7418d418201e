"""`.symfix`, `.prefer_dml`, `!sym`, `.kframes`, `.detach`, `.chain` and `.load` on the
default crashed machine: session settings, kd's texts, and what the settings change."""

from __future__ import annotations

import io

import pytest

from commands import registry
from commands.stackwalk import MAX_FRAMES
from kdsim.output import Output
from tests.conftest import run

SERVER = "srv*https://msdl.microsoft.com/download/symbols"


# -- .symfix --------------------------------------------------------------------------------

def test_symfix_sets_the_symbol_store_path_silently(session):
    assert run(session, ".symfix") == []
    assert run(session, ".sympath") == ["Symbol search path is: srv*",
                                        f"Expanded Symbol search path is: cache*;{SERVER}"]


def test_symfix_with_a_cache_names_it_in_the_expanded_path(session):
    assert run(session, ".symfix c:\\MyCache") == []
    assert run(session, ".sympath") == [
        "Symbol search path is: srv*",
        f"Expanded Symbol search path is: cache*c:\\mycache;{SERVER}"]


def test_symfix_plus_appends_to_the_path_once(session):
    run(session, ".sympath c:\\SomeSymbols")
    assert run(session, ".symfix+ c:\\MyCache") == []
    expected = ["Symbol search path is: c:\\SomeSymbols;srv*",
                f"Expanded Symbol search path is: c:\\somesymbols;cache*c:\\mycache;{SERVER}"]
    assert run(session, ".sympath") == expected
    run(session, ".symfix+ c:\\MyCache")  # the store is in the path already
    assert run(session, ".sympath") == expected
    # without `+` the path is replaced
    run(session, ".symfix")
    assert run(session, ".sympath")[0] == "Symbol search path is: srv*"


# -- .prefer_dml ------------------------------------------------------------------------------

def test_prefer_dml_is_a_session_setting(session):
    assert run(session, ".prefer_dml") == ["DML versions of commands off by default"]
    assert run(session, ".prefer_dml 1") == ["DML versions of commands on by default"]
    assert run(session, ".prefer_dml") == ["DML versions of commands on by default"]
    before = run(session, "k")
    assert run(session, ".prefer_dml 0") == ["DML versions of commands off by default"]
    assert run(session, "k") == before  # kdsim prints the same text either way
    assert run(session, ".prefer_dml 1 2") == ["Syntax error at '2'"]
    assert run(session, ".prefer_dml zz") == ["Couldn't resolve error at 'zz'"]


# -- !sym ---------------------------------------------------------------------------------------

def test_sym_switches_noisy_loading_and_prompts(session):
    usage = "!sym <noisy/quiet - prompts/prompts off> - "
    assert run(session, "!sym") == [usage + "quiet mode - symbol prompts on"]
    assert run(session, "!sym noisy") == ["noisy mode - symbol prompts on"]
    assert run(session, "!sym prompts off") == ["noisy mode - symbol prompts off"]
    assert run(session, "!sym") == [usage + "noisy mode - symbol prompts off"]
    assert run(session, "!sym quiet") == ["quiet mode - symbol prompts off"]
    assert run(session, "!sym prompts") == ["quiet mode - symbol prompts on"]
    assert run(session, "!sym bogus") == [usage + "quiet mode - symbol prompts on"]


# -- .kframes ---------------------------------------------------------------------------------

def test_kframes_shows_the_default_depth(session):
    assert run(session, ".kframes") == [f"Default stack trace depth is 0n{MAX_FRAMES} frames"]


@pytest.mark.parametrize("typed,depth", [("2", 2), ("0x3", 3), ("0n10", 10), ("a", 10)])
def test_kframes_limits_k_without_a_count(session, typed, depth):
    full = run(session, "k")[1:]
    assert len(full) > 3
    assert run(session, f".kframes {typed}") == [f"Default stack trace depth is 0n{depth} frames"]
    assert run(session, ".kframes") == [f"Default stack trace depth is 0n{depth} frames"]
    out = run(session, "k")
    assert out[1:] == full[:depth]
    # every k variant and the `= StackPtr` form follow it; an explicit count overrides it
    assert len(run(session, "kb")) == 1 + min(depth, len(full))
    rsp = session.registers()["rsp"]
    assert len(run(session, f"k = {rsp:x}")) == 1 + min(depth, len(full))
    assert run(session, f"k 0n{len(full)}")[1:] == full
    # kd dumps that many words
    words = run(session, "kd")
    assert len(words) == depth
    assert words[0].startswith(f"{rsp >> 32:08x}`{rsp & 0xFFFFFFFF:08x}  ")


def test_kframes_rejects_bad_counts(session):
    assert run(session, ".kframes 0") == ["Syntax error at '0'"]
    assert run(session, ".kframes 2 3") == ["Syntax error at '3'"]
    assert run(session, ".kframes") == [f"Default stack trace depth is 0n{MAX_FRAMES} frames"]


# -- .detach ------------------------------------------------------------------------------------

@pytest.mark.parametrize("line", [".detach", ".detach /h", ".detach /n"])
def test_detach_ends_the_session_like_q(session, line):
    results = session.execute(f"{line}; r rax")
    assert [r.data for r in results] == ["quit"]  # nothing after it runs
    assert results[0].lines == []
    assert Output(io.StringIO()).results("0: kd> ", results) is True


def test_detach_with_an_unknown_option_is_a_syntax_error(session):
    assert run(session, ".detach /x") == ["Syntax error at '/x'"]


# -- .chain and .load ----------------------------------------------------------------------------

def test_chain_lists_every_built_in_extension_command_once(session):
    out = run(session, ".chain")
    assert out[0] == "Extension DLL chain:"
    families, listed = out[1::2], out[2::2]
    assert all(f.startswith("    ") and f.endswith(": built in") for f in families)
    names = [n for row in listed for n in row.strip()[1:-1].split(", ")]
    bang = {n for spec in registry.ORDER for n in spec.names if n.startswith("!")}
    assert sorted(names) == sorted(bang)
    for family, row in zip(families, listed, strict=True):
        fam = family.strip().split(":")[0]
        for n in row.strip()[1:-1].split(", "):
            assert registry.COMMANDS[n.lower()].family == fam


@pytest.mark.parametrize("name", ["kdexts", "kext", "ext.dll", "process", "C:\\dbg\\kdexts.dll"])
def test_load_of_a_built_in_extension_is_silent(session, name):
    assert run(session, f".load {name}") == []


@pytest.mark.parametrize("name", ["wdfkd", "c:\\x\\sos.dll"])
def test_load_of_any_other_dll_fails_as_loadlibrary_does(session, name):
    assert run(session, f".load {name}") == [
        f"The call to LoadLibrary({name}) failed, Win32 error 0n2",
        '    "The system cannot find the file specified."',
        "Please check your debugger configuration and/or network access."]
