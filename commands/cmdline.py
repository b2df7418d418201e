"""kd command lines: splitting a line into commands, a command into its name and
arguments, and the argument forms command handlers share (expressions, ranges).

* `split_commands("r; k; $$ note; dq rsp L2")` -> `["r", "k", "dq rsp L2"]`: commands
  are separated by `;` outside double quotes (grammar: `commands/grammar/cmdline.lark`).
* `split_name("dqs@rsp", known)` -> `CommandText("dqs", "@rsp")`: a letter command's name
  is the longest registered name the text starts with, as kd reads `kb5` or `dq@rsp`.
* `parse_range("rsp L4", ctx, None, 8)` -> `(rsp, 4, "")`: kd's address ranges.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from lark import Lark, Transformer
from lark.exceptions import LarkError

from commands.errors import KdOverflowError, KdRangeError, KdSyntaxError, KdUnknownCommand
from commands.expr import MASK64, ExprContext, take_expression
from commands.grammar import load as load_grammar

__all__ = [
    "CommandText",
    "split_commands",
    "split_name",
    "parse_range",
    "take_values",
    "quoted",
    "take_expression",
    "RANGE_LIMIT",
]

# kd refuses a range over 256 MB unless it is written `L?`: larger ones are typos.
RANGE_LIMIT = 0x10000000


# ------------------------------------------------------------------------ command lines


class _ToCommands(Transformer):
    def start(self, children):
        commands = []
        for child in children:
            if child is None:
                continue
            text = child.strip()
            if text:
                commands.append(text)
        return commands

    def comment(self, children):
        return None

    def text(self, children):
        return "".join(str(c) for c in children)


@cache
def _line_parser() -> Lark:
    return Lark(
        load_grammar("cmdline"),
        parser="lalr",
        lexer="contextual",
        transformer=_ToCommands(),
        maybe_placeholders=False,
    )


def split_commands(line: str) -> list[str]:
    """The commands of a command line, stripped, empty ones and comments dropped.

    `;` separates commands except inside double quotes (`\\"` escapes a quote there);
    a command starting with `$$` is a comment up to the next `;`, one starting with `*`
    makes the rest of the line a comment."""
    try:
        return _line_parser().parse(line)
    except LarkError:  # pragma: no cover - the grammar accepts every string
        raise KdSyntaxError(line, 0) from None


# ------------------------------------------------------------------------ command names


@dataclass(frozen=True, slots=True)
class CommandText:
    """A command split into its name, as typed (case preserved), and its arguments
    (raw, leading blanks dropped)."""

    name: str
    args: str


_EXTENSION = re.compile(r"![A-Za-z0-9_.]+")
_META = re.compile(r"\.[A-Za-z0-9_]+")


def split_name(text: str, known: Iterable[str]) -> CommandText:
    """Split one command into name and arguments, as kd reads a command.

    * `!name` is an extension command (`!analyze -v`, `!kdexts.pcr`),
    * `.name` a meta-command (`.bugcheck`, `.frame /r 2`),
    * `?` and `??` evaluate expressions (`?1+1`),
    * anything else is a registered command: the longest name in `known` that the text
      starts with, compared case-insensitively, so `dq@rsp` is `dq @rsp`, `dqs rsp` is
      `dqs`, `kb5` is `kb 5`, `lmvm nt` is `lm vm nt`.

    Extension and meta-command names are not checked against `known`.  A text that
    starts with no known name raises KdUnknownCommand (`^ Syntax error in '<text>'`)."""
    text = text.strip()
    for pattern in (_EXTENSION, _META):
        m = pattern.match(text)
        if m:
            return CommandText(m.group(), text[m.end() :].lstrip())
    if text.startswith("??"):
        return CommandText("??", text[2:].lstrip())
    if text.startswith("?"):
        return CommandText("?", text[1:].lstrip())
    low = text.lower()
    best = ""
    for name in known:
        if name and len(name) > len(best) and low.startswith(name.lower()):
            best = name
    if not best:
        raise KdUnknownCommand(text, 0)
    return CommandText(text[: len(best)], text[len(best) :].lstrip())


# ------------------------------------------------------------------------------ ranges


def parse_range(
    args: str,
    ctx: ExprContext,
    default_length: int | None,
    unit: int,
    radix: int = 16,
) -> tuple[int, int | None, str]:
    """An address range at the start of `args`: `(start, count, rest)`.

    Forms (count is in objects of `unit` bytes):

    * `addr` -> count is `default_length` (None if the command has no default);
    * `addr L count`, `addr Lcount`, `addr l4`: count objects from addr;
    * `addr L? count`: the same, without the 256 MB limit;
    * `addr L-count`: count objects ending just before addr;
    * `addr end`: from addr through end, inclusive (`1000 1007` is 8 bytes), so count
      is `(end - addr) // unit + 1`.

    `rest` is the text after the range.  Expression errors are raised as they come
    (KdResolveError, KdMissingExpressionError for nothing at all, ...); an end below the
    start or a range over 256 MB without `L?` raises KdRangeError (a caret error
    relative to `args`: relocate it onto the whole command)."""
    start, rest = take_expression(args, ctx, radix)
    if rest[:1] in ("L", "l"):
        at = len(args) - len(rest)
        after = rest[1:]
        unlimited = after.startswith("?")
        if unlimited:
            after = after[1:]
        backwards = after.lstrip().startswith("-")
        if backwards:
            after = after.lstrip()[1:]
        count, rest = take_expression(after, ctx, radix)
        if not unlimited and count * unit > RANGE_LIMIT:
            raise KdRangeError(args, at)
        if backwards:
            start = (start - count * unit) & MASK64
        return start, count, rest
    if rest:
        at = len(args) - len(rest)
        end, rest = take_expression(rest, ctx, radix)
        if end < start:
            raise KdRangeError(args, at)
        count = (end - start) // unit + 1
        if count * unit > RANGE_LIMIT:
            raise KdRangeError(args, at)
        return start, count, rest
    return start, default_length, rest


# ------------------------------------------------------------------ values and strings


def fits(value: int, size: int) -> bool:
    """A unit takes a value that fits unsigned, or a sign-extended negative one (`-1`)."""
    bits = 8 * size
    return value >> bits == 0 or (value >> (bits - 1)) == MASK64 >> (bits - 1)


def take_values(args: str, rest: str, ctx: ExprContext, radix: int,
                size: int) -> list[tuple[int, int]]:
    """The values that follow an address (`eb addr 1 2`, `s -d range 1,2`), separated by
    blanks or commas: (value as a `size`-byte unit, its column in `args`).  A value that
    does not fit the unit raises kd's overflow error at it."""
    values: list[tuple[int, int]] = []
    while True:
        rest = rest.lstrip(" \t,")
        if not rest:
            return values
        at = len(args) - len(rest)
        value, rest = take_expression(rest, ctx, radix)
        if not fits(value, size):
            raise KdOverflowError(args[at:len(args) - len(rest)].strip(), at)
        values.append((value & ((1 << (8 * size)) - 1), at))


def quoted(args: str, rest: str) -> tuple[str, int]:
    """The text inside the double quotes that `rest` holds (\\" escapes a quote), and its
    column in `args`; kd's syntax error when `rest` is no quoted string."""
    text = rest.strip()
    at = len(args) - len(rest.lstrip())
    if len(text) < 2 or not text.startswith('"') or not text.endswith('"'):
        raise KdSyntaxError(text, at)
    return text[1:-1].replace('\\"', '"'), at
