"""The kd lexers: command lines token by token, real debugger output from the crashed
default machine, the registry as the source of command names, and Pygments' invariant
(every character comes back) on any text."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from pygments.lexers import load_lexer_from_file
from pygments.token import (
    Comment,
    Error,
    Generic,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Whitespace,
)

from commands import registry
from commands.session import Session
from kdsim.kdlexer import KdLexer, KdOutputLexer
from tests.conftest import run

LEXER_FILE = Path(__file__).resolve().parents[2] / "kdsim" / "kdlexer.py"


def tokens(text: str, lexer=None) -> list[tuple[object, str]]:
    """(token type, text) pairs, blanks left out."""
    lexer = lexer or KdLexer()
    return [(t, v) for _, t, v in lexer.get_tokens_unprocessed(text) if t is not Whitespace]


def output_tokens(lines: list[str]) -> list[tuple[object, str]]:
    return tokens("\n".join(lines) + "\n", KdOutputLexer())


def of_type(pairs, token_type) -> list[str]:
    return [v for t, v in pairs if t in token_type]


# ------------------------------------------------------------------------ command lines


def test_dt_with_type_address_and_option():
    assert tokens("dt nt!_EPROCESS ffffe001`23456780 -r1") == [
        (Keyword, "dt"),
        (Name.Namespace, "nt"),
        (Punctuation, "!"),
        (Name.Class, "_EPROCESS"),
        (Number.Hex, "ffffe001`23456780"),
        (Name.Attribute, "-r1"),
    ]


def test_bp_with_symbol_offset_and_command_string():
    assert tokens('bp myfault!MyfaultHighIrqlFault+0x1a ".echo hit; g"') == [
        (Keyword, "bp"),
        (Name.Namespace, "myfault"),
        (Punctuation, "!"),
        (Name.Function, "MyfaultHighIrqlFault"),
        (Operator, "+"),
        (Number.Hex, "0x1a"),
        (String.Double, '".echo hit; g"'),
    ]


def test_extension_command():
    assert tokens("!process 0 7") == [
        (Name.Function.Magic, "!process"),
        (Number.Hex, "0"),
        (Number.Hex, "7"),
    ]


def test_if_else_blocks():
    assert tokens(".if (@rax == 0) { k } .else { r }") == [
        (Keyword.Reserved, ".if"),
        (Punctuation, "("),
        (Name.Variable, "@rax"),
        (Operator, "=="),
        (Number.Hex, "0"),
        (Punctuation, ")"),
        (Punctuation, "{"),
        (Keyword, "k"),
        (Punctuation, "}"),
        (Keyword.Reserved, ".else"),
        (Punctuation, "{"),
        (Keyword, "r"),
        (Punctuation, "}"),
    ]


def test_pseudo_register_assignment():
    assert tokens("r @$t0 = poi(@rsp+8)") == [
        (Keyword, "r"),
        (Name.Variable, "@$t0"),
        (Operator, "="),
        (Operator.Word, "poi"),
        (Punctuation, "("),
        (Name.Variable, "@rsp"),
        (Operator, "+"),
        (Number.Hex, "8"),
        (Punctuation, ")"),
    ]


def test_script_file_command():
    assert tokens(r"$$< c:\scripts\a.txt") == [(Keyword, "$$<"),
                                               (String.Other, r"c:\scripts\a.txt")]


def test_range_length():
    assert tokens("db @rsp L20") == [
        (Keyword, "db"),
        (Name.Variable, "@rsp"),
        (Name.Attribute, "L"),
        (Number.Hex, "20"),
    ]


def test_unknown_command_is_an_error_token():
    assert tokens("foo 1") == [(Error, "foo"), (Number.Hex, "1")]
    assert tokens("!nosuchext") == [(Error, "!nosuchext")]
    assert tokens(".nosuchmeta") == [(Error, ".nosuchmeta")]
    assert tokens("k; help") == [(Keyword, "k"), (Punctuation, ";"), (Error, "help")]


def test_letter_command_is_the_longest_registered_prefix():
    # As kd reads them: `kb5` is `kb 5`, `dq@rsp` is `dq @rsp`, `lmvm nt` is `lm vm nt`.
    assert tokens("kb5")[:2] == [(Keyword, "kb"), (Number.Hex, "5")]
    assert tokens("dq@rsp") == [(Keyword, "dq"), (Name.Variable, "@rsp")]
    assert tokens("lmvm nt")[0] == (Keyword, "lm")
    assert tokens("KB")[0] == (Keyword, "KB")


def test_numbers_in_every_radix_and_registers():
    pairs = tokens("? 0x1f + 0n10 + 0y101 + 1a2b + rax + $proc + @$thread + rip")
    assert of_type(pairs, Number) == ["0x1f", "0n10", "0y101", "1a2b"]
    assert of_type(pairs, Name.Variable) == ["rax", "$proc", "@$thread", "rip"]


def test_meta_command_type_name_and_options():
    pairs = tokens(".frame /r 2; dt _KTHREAD; lm /f")
    assert pairs[0] == (Name.Builtin, ".frame")
    assert (Name.Attribute, "/r") in pairs and (Name.Attribute, "/f") in pairs
    assert (Name.Class, "_KTHREAD") in pairs


def test_comments():
    assert tokens("r; $$ a note; k") == [
        (Keyword, "r"),
        (Punctuation, ";"),
        (Comment.Single, "$$ a note"),
        (Punctuation, ";"),
        (Keyword, "k"),
    ]
    assert tokens("* the rest; k") == [(Comment.Single, "* the rest; k")]
    # `*` is a comment only where a command starts.
    assert of_type(tokens("? 2 * 3"), Comment) == []


def test_foreach_block_commands_are_commands():
    pairs = tokens(".foreach (place { lm }) { .echo place }")
    assert pairs[0] == (Keyword.Reserved, ".foreach")
    assert (Keyword, "lm") in pairs
    assert (Name.Builtin, ".echo") in pairs


def test_every_registered_name_lexes_as_a_command():
    registry.load_all()
    assert len(registry.COMMANDS) > 100
    for name in registry.COMMANDS:
        token, text = tokens(name)[0]
        assert text == name
        if name.startswith("!"):
            assert token is Name.Function.Magic, name
        elif name.startswith("."):
            assert token is Name.Builtin, name
        else:
            assert token is Keyword, name


def test_a_newly_registered_command_is_highlighted(monkeypatch):
    registry.load_all()
    assert tokens("zzfrob 1")[0] == (Error, "zzfrob")
    spec = registry.CommandSpec(("zzfrob",), "zzfrob", "test", lambda s, a: None, "test")
    monkeypatch.setitem(registry.COMMANDS, "zzfrob", spec)
    assert tokens("zzfrob 1")[0] == (Keyword, "zzfrob")


def test_loads_from_file_as_pygments_does():
    lexer = load_lexer_from_file(str(LEXER_FILE), "KdLexer")
    assert tokens("!process 0 7", lexer)[0] == (Name.Function.Magic, "!process")
    out = load_lexer_from_file(str(LEXER_FILE), "KdOutputLexer")
    assert tokens("0: kd> k\n", out)[0] == (Generic.Prompt, "0: kd> ")


def test_pygments_metadata():
    assert KdLexer.name == "kd" and KdLexer.aliases == ["kd", "windbg"]
    assert KdOutputLexer.name == "kd-output" and KdOutputLexer.aliases == ["kd-output",
                                                                          "kdout"]


# ----------------------------------------------------------------------- kd's output


def test_output_analyze(session: Session):
    lines = ["0: kd> !analyze -v"] + run(session, "!analyze -v")
    pairs = output_tokens(lines)
    assert pairs[0] == (Generic.Prompt, "0: kd> ")
    assert pairs[1] == (Name.Function.Magic, "!analyze")
    assert "DRIVER_IRQL_NOT_LESS_OR_EQUAL" in of_type(pairs, Name.Exception)
    assert {"BUGCHECK_CODE", "Arg1", "FAILURE_BUCKET_ID"} <= set(of_type(pairs, Name.Label))
    assert any("Bugcheck Analysis" in v for v in of_type(pairs, Generic.Heading))
    assert "fffff805`738e115a" in of_type(pairs, Number)
    assert "MyfaultHighIrqlFault" in of_type(pairs, Name.Function)
    assert "myfault" in of_type(pairs, Name.Namespace)


def test_output_stack(session: Session):
    lines = run(session, "k")
    pairs = output_tokens(lines)
    assert of_type(pairs, Name.Function)[:3] == ["KeBugCheckEx", "KiBugCheckDispatch",
                                                "KiPageFault"]
    numbers = of_type(pairs, Number)
    for line in lines[1:]:  # each frame's Child-SP and RetAddr are addresses
        child_sp, ret_addr = line.split()[1:3]
        assert "`" in child_sp and child_sp in numbers and ret_addr in numbers


def test_output_modules(session: Session):
    lines = run(session, "lm")
    pairs = output_tokens(lines)
    starts = [line.split()[0] for line in lines[1:]]
    assert len(starts) == 3 and set(starts) <= set(of_type(pairs, Number))


def test_output_dt_fields(session: Session):
    pairs = output_tokens(run(session, "dt nt!_KTHREAD"))
    fields = of_type(pairs, Name.Attribute)
    assert fields[:3] == ["Header", "SListFaultAddress", "QuantumTarget"]
    assert "+0x018" in of_type(pairs, Number)
    assert "_DISPATCHER_HEADER" in of_type(pairs, Name.Class)
    assert "Ptr64" in of_type(pairs, Keyword.Type)


def test_output_errors(session: Session):
    for command in ("foo", "dq nosuch!x"):
        lines = run(session, command)
        pairs = output_tokens(lines)
        assert of_type(pairs, Generic.Error) == lines, command
    pairs = output_tokens(["Memory access error at 'poi(0)'"])
    assert of_type(pairs, Generic.Error) == ["Memory access error at 'poi(0)'"]


def test_output_bugcheck_line_and_registers():
    pairs = output_tokens(["BugCheck D1, {ffff8001b0110000, 2, 0, fffff805738e115a}",
                           "rax=0000000000000000 rbx=ffff8001b0110000"])
    assert pairs[:2] == [(Generic.Subheading, "BugCheck"), (Number.Hex, "D1")]
    assert of_type(pairs, Name.Variable) == ["rax", "rbx"]
    assert "fffff805738e115a" in of_type(pairs, Number)


# ------------------------------------------------------------------ never lose a thing

KD_ALPHABET = " ;{}()\"'$*!.@`0123456789abcdefxLlnyt/-\n\t?<>=+poirkdbq_~#:\\,[]z\r"


def round_trip(lexer, text: str) -> None:
    pos = 0
    for index, _token, value in lexer.get_tokens_unprocessed(text):
        assert index == pos
        pos += len(value)
    assert pos == len(text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet=KD_ALPHABET)))
def test_command_lexer_gives_back_its_input(text: str):
    round_trip(KdLexer(), text)
    # get_tokens as pygmentize uses it: only Pygments' own normalising (a leading byte
    # order mark dropped, line ends made `\n`) changes the text.
    text += "\n"
    expected = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    assert "".join(v for _, v in KdLexer(stripnl=False).get_tokens(text)) == expected


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet=KD_ALPHABET)))
def test_output_lexer_gives_back_its_input(text: str):
    round_trip(KdOutputLexer(), text)
    round_trip(KdOutputLexer(), "0: kd> " + text)
