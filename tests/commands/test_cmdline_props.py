"""Property tests for command-line splitting and argument parsing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from commands.cmdline import parse_range, split_commands, split_name
from commands.errors import KdError, KdUnknownCommand
from commands.target import MemoryAccessError

KNOWN = {"k", "kb", "kn", "db", "dd", "dq", "dqs", "dps", "u", "ub", "r", "lm", "g"}
LINE_ALPHABET = st.sampled_from(list(';"\\$* \tabrkdq?!.@L1') + ["$$", "\n", "é"])


class Ctx:
    def register(self, name: str) -> int | None:
        return {"rsp": 0x1000}.get(name)

    def symbol(self, name: str) -> int | None:
        return None

    def read_memory(self, address: int, size: int) -> bytes:
        raise MemoryAccessError(address)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(LINE_ALPHABET, max_size=30).map("".join)))
def test_split_commands_never_raises(line: str) -> None:
    commands = split_commands(line)
    for command in commands:
        assert command == command.strip() and command
        assert not command.startswith("$$") and not command.startswith("*")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["r", "k 5", "dq rsp L2", '.echo "a;b"', "? 1+2"]), max_size=6))
def test_split_commands_round_trips_plain_commands(commands: list[str]) -> None:
    assert split_commands("; ".join(commands)) == commands
    assert split_commands(";".join(commands) + "; $$ trailing note") == commands


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=30))
def test_split_name_only_raises_unknown_command(text: str) -> None:
    try:
        command = split_name(text, KNOWN)
    except KdUnknownCommand as e:
        assert str(e).startswith("^ Syntax error in '")
        return
    assert command.name
    assert text.strip().startswith(command.name)
    assert command.args == command.args.lstrip()


RANGE_ALPHABET = st.sampled_from(
    list("0123456789abfLl?-+*() @`") + ["rsp", "poi", "0x", "0n", " L", "L?", "L-", "foo"]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(RANGE_ALPHABET, max_size=16).map("".join), st.sampled_from([1, 2, 4, 8]))
def test_parse_range_only_raises_kd_errors(args: str, unit: int) -> None:
    try:
        start, count, rest = parse_range(args, Ctx(), None, unit)
    except KdError as e:
        assert str(e)
        return
    assert 0 <= start < 1 << 64
    assert count is None or count >= 0
    assert args.endswith(rest)
