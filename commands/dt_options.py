"""`dt`'s command line: display options, search options and the words after them.

kd lets options and words come in any order (`dt nt!_IRP -r1 addr`, `dt -a2 _KDPC addr`,
`dt _EPROCESS -l ActiveProcessLinks.Flink -yoi Uni addr`).  Letters combine in one word
(`-yoi`, `-ca10`, `-r2`); `-a` and `-r` take digits attached, `-l` and `-s` take the next
word.  `-y` and `-n` apply to the next name (a prefix match, and "a name even if it looks
like a number"), `-a` to the next field.  Which word is the type, the address or a field
is decided later, when the type is known (see commands/dt_command.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from commands.errors import KdError

# Letters that need nothing after them.
_FLAGS = set("bcdehiopvtyn")
# kd stops recursing after nine levels however deep `-r` asks.
MAX_DEPTH = 9


@dataclass
class DtOptions:
    recurse: int = 0  # -r[N]: levels of sub-fields shown below each field
    block: bool = False  # -b: embedded structures and arrays expanded, to any depth
    compact: bool = False  # -c: all fields of a structure on one line
    verbose: bool = False  # -v: sizes and element counts of types
    no_indent: bool = False  # -i
    no_offsets: bool = False  # -o
    physical: bool = False  # -p: the address is physical
    size: int | None = None  # -s size: only types of this size are listed
    list_field: str | None = None  # -l Field.Path


@dataclass
class Word:
    """A word of the command line that is not an option."""

    text: str
    prefix: bool = False  # -y: the beginning of a name
    name: bool = False  # -n: a name, even if it is all hex digits
    array: int | None = None  # -a[N] right before it (0: all elements)


@dataclass
class DtLine:
    options: DtOptions = field(default_factory=DtOptions)
    words: list[Word] = field(default_factory=list)


def _digits(text: str, i: int) -> tuple[str, int]:
    j = i
    while j < len(text) and text[j].isdigit():
        j += 1
    return text[i:j], j


def parse_dt_line(args: str) -> DtLine:
    """Split `dt`'s arguments into options and words (raises KdError as kd reports)."""
    line = DtLine()
    opts = line.options
    tokens = args.split()
    pending = Word("")  # flags waiting for the next word
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        i += 1
        if not tok.startswith("-") or len(tok) == 1 or tok[1].isdigit():
            line.words.append(Word(tok, pending.prefix, pending.name, pending.array))
            pending = Word("")
            continue
        pos = 1
        while pos < len(tok):
            letter = tok[pos]
            pos += 1
            if letter == "r":
                digits, pos = _digits(tok, pos)
                # kd's depth runs from 1 to 9; `-r` alone goes as deep as that.
                opts.recurse = min(int(digits, 10), MAX_DEPTH) if digits else MAX_DEPTH
            elif letter == "a":
                digits, pos = _digits(tok, pos)
                pending.array = int(digits, 10) if digits else 0
            elif letter in ("l", "s"):
                value = tok[pos:]
                pos = len(tok)
                if not value:
                    if i >= len(tokens):
                        raise KdError(f"Syntax error at '-{letter}'")
                    value = tokens[i]
                    i += 1
                if letter == "l":
                    opts.list_field = value
                else:
                    try:
                        opts.size = int(value, 0) if value.lower().startswith("0x") \
                            else int(value, 16)
                    except ValueError:
                        raise KdError(f"Syntax error at '{value}'") from None
            elif letter in _FLAGS:
                if letter == "b":
                    opts.block = True
                elif letter == "c":
                    opts.compact = True
                elif letter in "vd":
                    opts.verbose = True
                elif letter == "i":
                    opts.no_indent = True
                elif letter == "o":
                    opts.no_offsets = True
                elif letter == "p":
                    opts.physical = True
                elif letter == "y":
                    pending.prefix = True
                elif letter == "n":
                    pending.name = True
                # -e, -t, -h: kdsim's type names never collide with instances, and
                # enumeration is what a name ending in `*` asks for anyway.
            else:
                raise KdError(f"Syntax error at '{tok[pos - 1:]}'")
    return line
