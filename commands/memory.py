"""Memory display: db, dw, dd, dq, dp, dc, da, du, dS, dps, dqs, dds and `d`.

Every display shares one "next address": a display without an address (or a bare `d`,
which repeats the last display's kind) continues where the previous one ended, as kd does
when Enter repeats a dump.
"""

from __future__ import annotations

from commands.cmdline import parse_range
from commands.errors import KdExtraCharacterError
from commands.fmt import addr
from commands.limits import MAX_OUTPUT_LINES, stopped_notice
from commands.memdump import dump, read_string, read_units
from commands.registry import Result, command
from commands.target import MemoryAccessError

KINDS = ("db", "dw", "dd", "dq", "dp", "dc", "da", "du", "dps", "dqs", "dds", "dS")
PER_LINE = {"db": 16, "dw": 8, "dd": 4, "dq": 2, "dp": 2, "dc": 4, "da": 32, "du": 32,
            "dps": 1, "dqs": 1, "dds": 1, "dS": 1}
UNIT = {"db": 1, "dw": 2, "dd": 4, "dq": 8, "dp": 8, "dc": 4, "da": 1, "du": 2, "dps": 8,
        "dqs": 8, "dds": 4, "dS": 16}
DEFAULT_COUNT = {"db": 128, "dw": 64, "dd": 32, "dq": 16, "dp": 16, "dc": 32, "dps": 16,
                 "dqs": 16, "dds": 32}
HELP = {"db": " as bytes and ASCII", "dw": " as words", "dd": " as double words",
        "dq": " as quad words", "dp": " as pointers", "dc": " as double words and ASCII",
        "da": " as an ASCII string", "du": " as a Unicode string",
        "dS": " as the UNICODE_STRING structure points to it",
        "dps": " as pointers with symbols", "dqs": " as quad words with symbols",
        "dds": " as double words with symbols"}
NEXT = "d"  # session.next_dump key: where the next display starts
LAST_KIND = "d.kind"  # session.next_dump key: index in KINDS of the last display
UNICODE_STRING_SIZE = 16


def _start_and_count(s, kind: str, args: str) -> tuple[int, int | None]:
    if not args.strip():
        return s.next_dump.get(NEXT, s.register("rip") or 0), None
    start, count, rest = parse_range(args, s, None, UNIT[kind], s.radix)
    if rest.strip():
        raise KdExtraCharacterError(args, len(args) - len(rest.lstrip()))
    return start, count


def display(s, kind: str, args: str) -> Result:
    start, count = _start_and_count(s, kind, args)
    s.next_dump[LAST_KIND] = KINDS.index(kind)
    if kind == "dS":
        return _display_unicode_strings(s, start, 1 if count is None else count)
    limit = MAX_OUTPUT_LINES * PER_LINE[kind]
    clipped = count is not None and count > limit
    shown = limit if clipped else count
    read = s.target.read_virtual
    lines, nxt = dump(read, s.symbols, kind, start, shown)
    if clipped:
        lines.append(stopped_notice(len(lines)))
    s.next_dump[NEXT] = nxt
    data: dict = {"kind": kind, "address": start, "next": nxt}
    if kind in ("da", "du"):
        size = 1 if kind == "da" else 2
        codes, _ = read_string(read, start, size, (nxt - start) // size or 1)
        data["text"] = "".join("?" if c is None else chr(c) for c in codes)
    else:
        size = UNIT[kind]
        n = DEFAULT_COUNT[kind] if shown is None else shown
        data["values"] = read_units(read, start, min(n, 0x10000), size)
    return Result(lines, data)


def _display_unicode_strings(s, start: int, count: int) -> Result:
    """`dS`: each _UNICODE_STRING's buffer address and text on one line."""
    lines: list[str] = []
    rows: list[dict] = []
    count = min(count, MAX_OUTPUT_LINES)
    for i in range(count):
        us = start + i * UNICODE_STRING_SIZE
        length = s.reader.field("_UNICODE_STRING", us, "Length")
        buffer = s.reader.field("_UNICODE_STRING", us, "Buffer")
        codes, _ = read_string(s.target.read_virtual, buffer, 2, length // 2)
        if len(codes) < length // 2:  # a NUL inside Length: kd prints the full Length
            try:
                raw = s.target.read_virtual(buffer, length)
                codes = [int.from_bytes(raw[j:j + 2], "little") for j in range(0, length, 2)]
            except MemoryAccessError:
                pass
        text = "".join("?" if c is None else (chr(c) if c >= 0x20 else ".") for c in codes)
        lines.append(f'{addr(buffer)}  "{text}"')
        rows.append({"address": us, "buffer": buffer, "length": length, "text": text})
    s.next_dump[NEXT] = start + count * UNICODE_STRING_SIZE
    return Result(lines, {"kind": "dS", "address": start, "strings": rows,
                          "next": s.next_dump[NEXT]})


def _handler(kind: str):
    def handler(s, args: str) -> Result:
        return display(s, kind, args)

    return handler


for _kind in KINDS:
    command(_kind, syntax=f"{_kind} [address] [L count | L?count | end]",
            help="Display memory" + HELP[_kind] + ".")(_handler(_kind))


@command("d", syntax="d [address] [L count | end]",
         help="Display memory in the format of the last display command (db at first).")
def d_cmd(s, args: str) -> Result:
    kind = KINDS[s.next_dump.get(LAST_KIND, 0)]
    return display(s, kind, args)
