"""Command lines: splitting, command names, ranges."""

from __future__ import annotations

import pytest

from commands.cmdline import (
    RANGE_LIMIT,
    CommandText,
    parse_range,
    split_commands,
    split_name,
    take_expression,
)
from commands.errors import (
    KdCommandError,
    KdError,
    KdMissingExpressionError,
    KdRangeError,
    KdResolveError,
    KdUnknownCommand,
)
from commands.target import MemoryAccessError

RSP = 0xFFFFF80000001000
KNOWN = {
    "k", "kb", "kn", "kv", "db", "dd", "dq", "dqs", "dps", "dt",
    "u", "ub", "uf", "r", "lm", "q", "g", "bp",
}  # fmt: skip


class Ctx:
    def register(self, name: str) -> int | None:
        return {"rsp": RSP, "rax": 0x10, "$ptrsize": 8}.get(name)

    def symbol(self, name: str) -> int | None:
        return {"nt": 0xFFFFF80500000000, "nt!foo": 0xFFFFF80500001000}.get(name.lower())

    def read_memory(self, address: int, size: int) -> bytes:
        if address == RSP:
            return (0x2000).to_bytes(8, "little")[:size]
        raise MemoryAccessError(address)


# --------------------------------------------------------------------- split_commands


@pytest.mark.parametrize(
    ("line", "commands"),
    [
        ("r", ["r"]),
        ("  r  ", ["r"]),
        ("r; k", ["r", "k"]),
        ("r;k;;  ;dq rsp L2;", ["r", "k", "dq rsp L2"]),
        ("", []),
        (";;;", []),
        ('bp nt!foo "r; g"; k', ['bp nt!foo "r; g"', "k"]),
        ('.echo "a;b" x ; r', ['.echo "a;b" x', "r"]),
        (r'.echo "say \"hi;\" now"; r', [r'.echo "say \"hi;\" now"', "r"]),
        ('.echo "never closed; r', ['.echo "never closed; r']),
        ("$$ a comment", []),
        ("$$ a comment; r", ["r"]),
        ("r; $$ note; k", ["r", "k"]),
        ("  $$note;k", ["k"]),
        ("r $$ not a comment here; k", ["r $$ not a comment here", "k"]),
        ("* everything; is a comment", []),
        ("r; * the rest; k", ["r"]),
        ("? 2 * 3; k", ["? 2 * 3", "k"]),
        ('.echo "x" * 3', ['.echo "x" * 3']),
        ("r\n", ["r"]),
    ],
)
def test_split_commands(line: str, commands: list[str]) -> None:
    assert split_commands(line) == commands


# ------------------------------------------------------------------------- split_name


@pytest.mark.parametrize(
    ("text", "name", "args"),
    [
        ("dq@rsp", "dq", "@rsp"),
        ("dq @rsp", "dq", "@rsp"),
        ("dqs rsp", "dqs", "rsp"),
        ("dqs", "dqs", ""),
        ("dps rsp L4", "dps", "rsp L4"),
        ("kb 5", "kb", "5"),
        ("kb5", "kb", "5"),
        ("k 5", "k", "5"),
        ("k", "k", ""),
        ("knL", "kn", "L"),
        ("kbn 10", "kb", "n 10"),
        ("kvL", "kv", "L"),
        ("KB 5", "KB", "5"),
        ("lmvm nt", "lm", "vm nt"),
        ("ub rip", "ub", "rip"),
        ("uf nt!foo", "uf", "nt!foo"),
        ("u", "u", ""),
        ("r rax", "r", "rax"),
        ("  g  ", "g", ""),
        ("bp nt!foo", "bp", "nt!foo"),
        ("!analyze -v", "!analyze", "-v"),
        ("!process 0 0", "!process", "0 0"),
        ("!kdexts.pcr", "!kdexts.pcr", ""),
        ("!pte@rsp", "!pte", "@rsp"),
        (".bugcheck", ".bugcheck", ""),
        (".help", ".help", ""),
        (".trap ffff8001`00000000", ".trap", "ffff8001`00000000"),
        (".frame /r 2", ".frame", "/r 2"),
        ("? 1 + 2", "?", "1 + 2"),
        ("?1+2", "?", "1+2"),
        ("?? @rip", "??", "@rip"),
        ("??x", "??", "x"),
    ],
)
def test_split_name(text: str, name: str, args: str) -> None:
    assert split_name(text, KNOWN) == CommandText(name, args)


def test_split_name_longest_registered_prefix() -> None:
    assert split_name("dqs", {"d", "dq"}) == CommandText("dq", "s")
    assert split_name("~0s", {"~"}) == CommandText("~", "0s")


@pytest.mark.parametrize("text", ["xyz", "zz 1", "(0x88-0x70)", "!", ".", "", "1234"])
def test_unknown_command(text: str) -> None:
    with pytest.raises(KdUnknownCommand) as info:
        split_name(text, KNOWN)
    err = info.value
    assert isinstance(err, KdCommandError)
    assert str(err) == f"^ Syntax error in '{text.strip()}'"
    assert err.line("0: kd> ") == f"       ^ Syntax error in '{text.strip()}'"
    assert err.line("lkd> ") == f"     ^ Syntax error in '{text.strip()}'"


# ------------------------------------------------------------------------ parse_range


@pytest.mark.parametrize(
    ("args", "unit", "expected"),
    [
        ("rsp", 8, (RSP, None, "")),
        ("rsp L4", 8, (RSP, 4, "")),
        ("rsp l4", 8, (RSP, 4, "")),
        ("rsp L 4", 8, (RSP, 4, "")),
        ("rsp L0x10", 8, (RSP, 0x10, "")),
        ("rsp L0n10", 1, (RSP, 10, "")),
        ("rsp+8 L2", 8, (RSP + 8, 2, "")),
        ("(rsp + 8) L2", 8, (RSP + 8, 2, "")),
        ("@rsp L2*2", 8, (RSP, 4, "")),
        ("poi(rsp) L1", 4, (0x2000, 1, "")),
        ("rsp L?20000000", 1, (RSP, 0x20000000, "")),
        ("rsp L? 20000000", 1, (RSP, 0x20000000, "")),
        ("80000000 L-20", 1, (0xFFFFFFFF80000000 - 0x20, 0x20, "")),
        ("0`80000000 L-20", 1, (0x7FFFFFE0, 0x20, "")),
        ("1000 L-2", 4, (0xFF8, 2, "")),
        ("1000 1007", 1, (0x1000, 8, "")),
        ("1000 1007", 4, (0x1000, 2, "")),
        ("1000 1004", 4, (0x1000, 2, "")),
        ("1000 1003", 4, (0x1000, 1, "")),
        ("1000 1000", 8, (0x1000, 1, "")),
        ("rsp rsp+0x18", 8, (RSP, 4, "")),
        ("rsp L4 extra words", 8, (RSP, 4, "extra words")),
        ("nt!foo L2 1 2", 8, (0xFFFFF80500001000, 2, "1 2")),
    ],
)
def test_parse_range(args: str, unit: int, expected: tuple) -> None:
    assert parse_range(args, Ctx(), None, unit) == expected


def test_parse_range_default_length() -> None:
    assert parse_range("rsp", Ctx(), 0x10, 8) == (RSP, 0x10, "")
    assert parse_range("rsp L2", Ctx(), 0x10, 8) == (RSP, 2, "")


def test_parse_range_limit() -> None:
    assert parse_range(f"0 L{RANGE_LIMIT:x}", Ctx(), None, 1)[1] == RANGE_LIMIT
    with pytest.raises(KdRangeError) as info:
        parse_range(f"0 L{RANGE_LIMIT + 1:x}", Ctx(), None, 1)
    assert str(info.value) == f"^ Range error in '0 L{RANGE_LIMIT + 1:x}'"
    assert info.value.column == 2
    with pytest.raises(KdRangeError):
        parse_range(f"0 L{RANGE_LIMIT // 8 + 1:x}", Ctx(), None, 8)
    with pytest.raises(KdRangeError):
        parse_range("0 0`20000000", Ctx(), None, 1)
    whole = "dq 0 L20000000"
    with pytest.raises(KdRangeError) as info:
        parse_range(whole[3:], Ctx(), None, 8)
    relocated = info.value.relocate(whole, 3)
    assert relocated.line("0: kd> ") == " " * 12 + f"^ Range error in '{whole}'"


def test_parse_range_end_before_start() -> None:
    with pytest.raises(KdRangeError) as info:
        parse_range("2000 1000", Ctx(), None, 1)
    assert str(info.value) == "^ Range error in '2000 1000'"
    assert info.value.column == 5


def test_parse_range_expression_errors() -> None:
    with pytest.raises(KdResolveError) as info:
        parse_range("foo L2", Ctx(), None, 8)
    assert str(info.value) == "Couldn't resolve error at 'foo '"
    with pytest.raises(KdResolveError) as info:
        parse_range("rsp Lbar", Ctx(), None, 8)
    assert str(info.value) == "Couldn't resolve error at 'bar'"
    with pytest.raises(KdMissingExpressionError) as info:
        parse_range("rsp L", Ctx(), None, 8)
    assert str(info.value) == "Numeric expression missing from '<EOL>'"
    with pytest.raises(KdMissingExpressionError):
        parse_range("", Ctx(), None, 8)
    with pytest.raises(KdError):
        parse_range('rsp "x"', Ctx(), None, 8)


def test_take_expression_is_exported() -> None:
    assert take_expression("rsp+8 L2", Ctx()) == (RSP + 8, "L2")
