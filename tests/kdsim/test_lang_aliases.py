"""Aliases: as/aS/ad/al, their expansion rules (when, where, ${ } forms) and the
fixed-name aliases $u0-$u9, on the crashed default machine."""

from __future__ import annotations

from machine.types.view import Struct
from tests.conftest import run


def test_as_takes_the_rest_of_the_line_and_al_lists(session) -> None:
    assert run(session, "as Short nt!KeBugCheckEx; with semicolon") == []
    assert run(session, "aS Quoted \"a; b\"") == []
    assert run(session, "aS Plain word; .echo next") == ["next"]
    assert session.aliases == {"Short": "nt!KeBugCheckEx; with semicolon",
                               "Quoted": "a; b", "Plain": "word"}
    assert run(session, "al") == [
        "  Alias            Value  ",
        " -------          ------- ",
        " Plain            word ",
        " Quoted           a; b ",
        " Short            nt!KeBugCheckEx; with semicolon ",
    ]


def test_whole_word_expansion_and_case(session) -> None:
    run(session, "aS Sym nt!KeBugCheckEx")
    want = session.symbol("nt!KeBugCheckEx")
    assert run(session, "? Sym") == run(session, "? nt!KeBugCheckEx")
    assert f"{want & 0xFFFFFFFF:08x}" in run(session, "? Sym")[0]
    assert run(session, ".echo Sym xSym Sym; .echo sym \"Sym\"") == [
        "nt!KeBugCheckEx xSym nt!KeBugCheckEx", 'sym "nt!KeBugCheckEx"']


def test_braced_forms(session) -> None:
    run(session, "aS Name value")
    assert run(session, ".echo ${Name}! ${/d:Name} ${/d:None} [${/f:None}] ${/n:Name} "
                        "${/n:None} ${/v:Name} ${None}") == [
        "value! 1 0 [] Name ${/n:None} ${/v:Name} ${None}"]


def test_new_alias_is_seen_by_later_lines_and_blocks_not_the_same_line(session) -> None:
    assert run(session, "aS /x Six 5+1; .echo Six; .block { .echo Six }") == ["Six", "0x6"]
    assert run(session, ".echo Six") == ["0x6"]


def test_lines_starting_with_alias_commands_are_not_expanded(session) -> None:
    run(session, "aS One 1")
    run(session, "as Two One")  # the line starts with `as`: One stays as typed
    assert session.aliases["Two"] == "One"
    run(session, ";as Three One")  # after a semicolon it is expanded
    assert session.aliases["Three"] == "1"


def test_value_switches_read_the_target(session, app) -> None:
    process = session.current_process()
    ep = Struct(app.machine.kspace, "_EPROCESS", process)
    image = app.target.read_virtual(ep.addr("ImageFileName"), 15).split(b"\0")[0]
    run(session, "as /x Proc @$proc")
    run(session, f"as /ma Image {ep.addr('ImageFileName'):x}")
    assert session.aliases["Proc"] == f"0x{process:x}"
    assert session.aliases["Image"] == image.decode()
    # a UNICODE_STRING: the first loaded module's base name
    us = session.symbol("nt!PsLoadedModuleList")
    entry = session.reader.u64(us)
    base_name = session.reader.field_addr("_KLDR_DATA_TABLE_ENTRY", entry, "BaseDllName")
    run(session, f"as /msu Mod {base_name:x}")
    assert session.aliases["Mod"] == session.reader.unicode_string(base_name)
    run(session, f"as /mu Wide {session.reader.field('_UNICODE_STRING', base_name, 'Buffer'):x}")
    assert session.aliases["Wide"] == session.aliases["Mod"]
    run(session, "as /c Out .echo one; .echo two")
    assert session.aliases["Out"] == "one\ntwo"


def test_bad_memory_for_a_string_alias(session) -> None:
    assert run(session, "as /ma Bad 0") == ["Memory access error at '0'"]
    assert "Bad" not in session.aliases


def test_ad_deletes_one_or_all(session) -> None:
    run(session, "aS A 1; aS B 2; aS C 3")
    assert run(session, "ad B") == []
    assert sorted(session.aliases) == ["A", "C"]
    assert run(session, "ad B") == ["No alias named 'B'"]
    assert run(session, "ad /q B") == []
    assert run(session, "ad ${/v:A}") == []
    assert run(session, "ad *") == [] and session.aliases == {}
    assert run(session, "al") == ["No aliases"]


def test_fixed_name_aliases(session) -> None:
    run(session, "r $.u2=2")
    run(session, "r $.u1=1+$u2")  # expanded when set: later changes to $u2 do not matter
    run(session, "r $.u2=6")
    assert run(session, "? $u1") == ["Evaluate expression: 3 = 00000000`00000003"]
    run(session, "r $.u0=.echo a; .echo b")  # the rest of the line, semicolons included
    assert run(session, "$u0") == ["a", "b"]
    assert run(session, ".echo x$u2") == ["x6"]  # anywhere, even next to other text
