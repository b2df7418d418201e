"""Memory edits: eb, ew, ed, eq, ep (numbers) and ea, eu, eza, ezu (strings).

`eb address value [value ...]` writes each value as one unit after the other; `ea
address "text"` writes the characters without a terminator, `eza` with one; `eu` / `ezu`
write UTF-16.  Every write goes through the target (`write_virtual`); a target that
cannot be written (a dump) or an address that is not mapped gives kd's caret error
`^ Memory access error in '<command>'` under the value that could not be written.
"""

from __future__ import annotations

from commands.cmdline import quoted, take_values
from commands.errors import KdCommandError, KdMissingExpressionError, KdSyntaxError
from commands.expr import MASK64, take_expression
from commands.registry import Result, command
from commands.target import MemoryAccessError, TargetNotLive

NUMERIC = {"eb": 1, "ew": 2, "ed": 4, "eq": 8, "ep": 8}
STRINGS = {"ea": ("ascii", False), "eza": ("ascii", True), "eu": ("utf-16-le", False),
           "ezu": ("utf-16-le", True)}
HELP = {"eb": "bytes", "ew": "words", "ed": "double words", "eq": "quad words",
        "ep": "pointers", "ea": "an ASCII string (no terminating NUL)",
        "eza": "a NUL-terminated ASCII string", "eu": "a Unicode string (no terminating NUL)",
        "ezu": "a NUL-terminated Unicode string"}


class KdWriteError(KdCommandError):
    """A value that could not be written: `^ Memory access error in '<command>'`."""

    kind = "Memory access"


def _write(s, args: str, at: int, address: int, data: bytes) -> None:
    try:
        s.target.write_virtual(address, data)
    except (MemoryAccessError, TargetNotLive):
        raise KdWriteError(args, at) from None


def _numeric(size: int):
    def handler(s, args: str) -> Result:
        address, rest = take_expression(args, s, s.radix)
        values = take_values(args, rest, s, s.radix, size)
        if not values:
            # kd would prompt for values interactively; a script gets nothing to write.
            raise KdMissingExpressionError("")
        written = []
        for i, (unit, at) in enumerate(values):
            where = (address + i * size) & MASK64
            _write(s, args, at, where, unit.to_bytes(size, "little"))
            written.append(unit)
        return Result([], {"address": address, "size": size, "values": written})

    return handler


def _string(encoding: str, terminate: bool):
    def handler(s, args: str) -> Result:
        address, rest = take_expression(args, s, s.radix)
        if not rest.strip():
            raise KdMissingExpressionError("")
        text, at = quoted(args, rest)
        try:
            data = text.encode(encoding)
        except UnicodeEncodeError:
            raise KdSyntaxError(rest.strip(), at) from None
        if terminate:
            data += b"\0" * (1 if encoding == "ascii" else 2)
        _write(s, args, at, address, data)
        return Result([], {"address": address, "text": text, "bytes": data.hex()})

    return handler


for _name, _size in NUMERIC.items():
    command(_name, syntax=f"{_name} address value [value ...]",
            help=f"Enter {HELP[_name]} into memory.")(_numeric(_size))

for _name, (_enc, _term) in STRINGS.items():
    command(_name, syntax=f'{_name} address "text"',
            help=f"Enter {HELP[_name]} into memory.")(_string(_enc, _term))
