"""Memory display: db, dw, dd, dq, dp, dc, da, du, dps, dqs."""

from __future__ import annotations

from commands.cmdline import parse_range
from commands.limits import MAX_OUTPUT_LINES, stopped_notice
from commands.memdump import dump
from commands.registry import Result, command

KINDS = ("db", "dw", "dd", "dq", "dp", "dc", "da", "du", "dps", "dqs")
PER_LINE = {"db": 16, "dw": 8, "dd": 4, "dq": 2, "dp": 2, "dc": 4, "da": 32, "du": 32,
            "dps": 1, "dqs": 1}
UNIT = {"db": 1, "dw": 2, "dd": 4, "dq": 8, "dp": 8, "dc": 4, "da": 1, "du": 2, "dps": 8,
        "dqs": 8}


def _dump(kind: str):
    def handler(s, args: str) -> Result:
        if args.strip():
            start, count, _rest = parse_range(args, s, None, UNIT[kind], s.radix)
        else:
            start, count = s.next_dump.get(kind, s.register("rip") or 0), None
        limit = MAX_OUTPUT_LINES * PER_LINE[kind]
        clipped = count is not None and count > limit
        lines, nxt = dump(lambda a, n: s.target.read_virtual(a, n), s.symbols, kind, start,
                          limit if clipped else count)
        if clipped:
            lines.append(stopped_notice(len(lines)))
        s.next_dump[kind] = nxt
        return Result(lines, {"kind": kind, "address": start, "next": nxt})

    return handler


for _kind in KINDS:
    command(_kind, syntax=f"{_kind} [address] [L count | end]",
            help="Display memory" + {"db": " as bytes and ASCII", "dw": " as words",
                                     "dd": " as double words", "dq": " as quad words",
                                     "dp": " as pointers", "dc": " as double words and ASCII",
                                     "da": " as an ASCII string", "du": " as a Unicode string",
                                     "dps": " as pointers with symbols",
                                     "dqs": " as quad words with symbols"}[_kind] + ".")(
        _dump(_kind))
