"""`s`: search virtual memory for bytes, words, dwords, qwords or a string.

`s [-b|-w|-d|-q] range pattern ...` and `s -a|-u range "text"`.  Only present pages
are searched: the page tables are walked (physically, from CR3) to skip what is not
mapped, so `s -a 0 L?ffffffffffffffff "MZ"` stays quick.  Each hit prints one line in
the matching display format (`db`, `dw`, `dd`, `dq`; `db` for strings) starting at the hit.
"""

from __future__ import annotations

from commands.cmdline import parse_range, quoted, take_values
from commands.errors import KdRangeError, KdSyntaxError
from commands.limits import MAX_OUTPUT_LINES, stopped_notice
from commands.memdump import dump
from commands.pagetable import mapped_runs
from commands.registry import Result, command
from commands.target import MemoryAccessError

UNITS = {"b": 1, "w": 2, "d": 4, "q": 8}
SHOW = {"b": "db", "w": "dw", "d": "dd", "q": "dq", "a": "db", "u": "db"}
ROW = 16
CHUNK = 0x10000  # bytes read at once inside a run of present pages


def _pattern(s, args: str, rest: str, kind: str) -> bytes:
    if kind in ("a", "u"):
        text, _ = quoted(args, rest)
        return text.encode("latin-1" if kind == "a" else "utf-16-le", errors="replace")
    size = UNITS[kind]
    values = take_values(args, rest, s, s.radix, size)
    if not values:
        raise KdSyntaxError("", len(args))
    return b"".join(unit.to_bytes(size, "little") for unit, _ in values)


def find(s, start: int, end: int, pattern: bytes) -> list[int]:
    """Addresses in [start, end) where pattern starts (it must lie wholly inside)."""
    dtb = s.registers().get("cr3", 0)
    hits: list[int] = []
    for lo, hi in mapped_runs(s.target.read_physical, dtb, start, end):
        pos = lo
        while pos < hi and len(hits) < MAX_OUTPUT_LINES:
            n = min(CHUNK, hi - pos)
            want = min(n + len(pattern) - 1, hi - pos)
            try:
                data = s.target.read_virtual(pos, want)
            except MemoryAccessError:
                pos += n
                continue
            at = data.find(pattern)
            while at != -1 and at < n:
                hits.append(pos + at)
                at = data.find(pattern, at + 1)
            pos += n
    return hits


@command("s", syntax="s [-b|-w|-d|-q] range pattern  |  s -a|-u range \"text\"",
         help="Search memory for a pattern of bytes, words, dwords, qwords or a string.")
def s_cmd(s, args: str) -> Result:
    text = args.lstrip()
    kind = "b"
    if text.startswith("-"):
        flag = text[1:2].lower()
        if flag not in SHOW or (len(text) > 2 and not text[2].isspace()):
            raise KdSyntaxError(text.split()[0], len(args) - len(text))
        kind = flag
        text = text[2:]
    offset = len(args) - len(text)
    unit = UNITS.get(kind, 1)
    start, count, rest = parse_range(text, s, None, unit, s.radix)
    if count is None:
        raise KdRangeError(args, offset)
    pattern = _pattern(s, args, rest, kind)
    end = min(start + count * unit, 1 << 64)
    hits = find(s, start, end, pattern)
    lines: list[str] = []
    show = SHOW[kind]
    per_row = ROW // UNITS.get(kind, 1) if show != "db" else ROW
    for hit in hits:
        rows, _ = dump(s.target.read_virtual, None, show, hit, per_row)
        lines.append(rows[0])
    if len(hits) >= MAX_OUTPUT_LINES:
        lines.append(stopped_notice(len(lines)))
    return Result(lines, {"kind": kind, "start": start, "end": end,
                          "pattern": pattern.hex(), "hits": hits})
