"""`db`, `dw`, `dd`, `dc`, `dq`, `dp`, `dps`, `dqs`, `dds`, `da`, `du`: kd's memory dumps.

Every line: backticked address, two spaces, data.  Rows start at the given address (kd
does not align them) and step by 16 bytes; the last row is short when the count ends
mid-row.  `db` separates bytes 8 and 9 with `-` and ends with 16 ASCII characters
(non-printables `.`); `dc` does the same after four dwords.  Unreadable cells print `??`,
`????`, `????????`, `????????`????????` and `?` in the ASCII column.  `dps` (`dds`) adds the
symbol of each pointer (dword).  `da` / `du` print at most 32 characters a line, stopping at the
terminating NUL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from commands.fmt import addr
from commands.target import MemoryAccessError

Reader = Callable[[int, int], bytes]

MASK64 = 0xFFFFFFFFFFFFFFFF
PAGE = 0x1000
ROW_BYTES = 16
STRING_LINE_CHARS = 32
STRING_DEFAULT_CHARS = 0x100  # `da` / `du` without a count (stops earlier at a NUL)

# kind -> (unit size, default count)
_NUMERIC = {
    "db": (1, 128),
    "dw": (2, 64),
    "dd": (4, 32),
    "dc": (4, 32),
    "dq": (8, 16),
    "dps": (8, 16),
    "dds": (4, 32),
}
_ALIASES = {"dp": "dq", "dqs": "dps"}
KINDS = tuple(_NUMERIC) + tuple(_ALIASES) + ("da", "du")


class Symbolizer(Protocol):
    def name_for(self, address: int) -> str | None:
        """`nt!KeBugCheckEx+0x10`, `nt!KeBugCheckEx` at offset 0, `myfault+0x12d0` for a
        module without symbols; None outside any module."""
        ...


def read_cells(read: Reader, address: int, size: int) -> list[int | None]:
    """The bytes of a range, None where memory cannot be read.  Readability is taken to
    change only at 4 KB page boundaries, as on the target."""
    out: list[int | None] = []
    pos = address
    end = address + size
    while pos < end:
        want = end - pos
        try:
            data = bytes(read(pos & MASK64, want))
        except MemoryAccessError as e:
            bad = e.address
            if not pos <= bad < end:
                bad = pos
            if bad > pos:
                try:
                    good = bytes(read(pos & MASK64, bad - pos))
                except MemoryAccessError:
                    good = b""
                out.extend(good)
                out.extend([None] * (bad - pos - len(good)))
            stop = min(end, (bad // PAGE + 1) * PAGE)
            out.extend([None] * (stop - bad))
            pos = stop
            continue
        out.extend(data[:want])
        out.extend([None] * (want - len(data[:want])))
        pos = end
    return out


def _unit(cells: list[int | None]) -> int | None:
    if any(c is None for c in cells):
        return None
    return int.from_bytes(bytes(cells), "little")  # type: ignore[arg-type]


def _ascii(cells: list[int | None]) -> str:
    return "".join("?" if c is None else (chr(c) if 0x20 <= c < 0x7F else ".") for c in cells)


def _hex_unit(value: int | None, size: int) -> str:
    if size == 8:
        if value is None:
            return "????????`????????"
        return addr(value)
    if value is None:
        return "?" * (size * 2)
    return f"{value:0{size * 2}x}"


def _db_row(cells: list[int | None]) -> str:
    parts = []
    for i, c in enumerate(cells):
        sep = "" if i == 0 else ("-" if i == 8 else " ")
        parts.append(sep + ("??" if c is None else f"{c:02x}"))
    hex_area = "".join(parts)
    return f"{hex_area:<{ROW_BYTES * 3 - 1}}  {_ascii(cells)}"


def _numeric(read: Reader, symbolizer: Symbolizer | None, kind: str, address: int,
             count: int) -> tuple[list[str], int]:
    size, _ = _NUMERIC[kind]
    total = count * size
    cells = read_cells(read, address, total)
    lines = []
    if kind in ("dps", "dds"):
        for i in range(count):
            value = _unit(cells[i * size:(i + 1) * size])
            line = f"{addr(address + i * size)}  {_hex_unit(value, size)}"
            name = symbolizer.name_for(value) if (value is not None and symbolizer) else None
            if name:
                line += f" {name}"
            lines.append(line)
        return lines, (address + total) & MASK64
    per_row = ROW_BYTES // size
    for row_start in range(0, total, ROW_BYTES):
        row = cells[row_start:row_start + ROW_BYTES]
        where = addr(address + row_start)
        if kind == "db":
            lines.append(f"{where}  {_db_row(row)}")
            continue
        units = [_hex_unit(_unit(row[i:i + size]), size) for i in range(0, len(row), size)]
        text = " ".join(units)
        if kind == "dc":
            width = per_row * (size * 2 + 1) - 1
            text = f"{text:<{width}}  {_ascii(row)}"
        lines.append(f"{where}  {text}")
    return lines, (address + total) & MASK64


def read_string(read: Reader, address: int, char_size: int,
                limit: int) -> tuple[list[int | None], bool]:
    """Characters from `address` up to the NUL (excluded) or `limit`; an unreadable
    character ends the string as None.  Returns (codes, ended_at_nul)."""
    codes: list[int | None] = []
    cells = read_cells(read, address, limit * char_size)
    for i in range(limit):
        unit = _unit(cells[i * char_size:(i + 1) * char_size])
        if unit is None:
            codes.append(None)
            return codes, False
        if unit == 0:
            return codes, True
        codes.append(unit)
    return codes, False


def read_ascii(read: Reader, address: int, limit: int = STRING_DEFAULT_CHARS) -> str | None:
    """A NUL-terminated ANSI string (non-printables `.`), None if unreadable at once."""
    codes, _ = read_string(read, address, 1, limit)
    if codes and codes[0] is None:
        return None
    return "".join(_char(c, False) for c in codes if c is not None)


def read_unicode(read: Reader, address: int, limit: int = STRING_DEFAULT_CHARS) -> str | None:
    """A NUL-terminated UTF-16 string (non-printables `.`), None if unreadable at once."""
    codes, _ = read_string(read, address, 2, limit)
    if codes and codes[0] is None:
        return None
    return "".join(_char(c) for c in codes if c is not None)


def _char(code: int | None, wide: bool = True) -> str:
    if code is None:
        return "?"
    if code < 0x20 or code == 0x7F or (not wide and code > 0x7F):
        return "."
    if code >= 0xD800 and code < 0xE000:
        return "."
    return chr(code)


def _string(read: Reader, kind: str, address: int, count: int | None) -> tuple[list[str], int]:
    char_size = 1 if kind == "da" else 2
    limit = STRING_DEFAULT_CHARS if count is None else count
    codes, ended = read_string(read, address, char_size, limit)
    if codes and codes[-1] is None:
        # Unreadable: one line of `?` in place of the characters kd could not read.
        done = len(codes) - 1
        fill = min(STRING_LINE_CHARS - done % STRING_LINE_CHARS, limit - done)
        codes = codes[:-1] + [None] * fill
    lines = []
    if not codes:
        lines.append(f'{addr(address)}  ""')
    for start in range(0, len(codes), STRING_LINE_CHARS):
        chunk = codes[start:start + STRING_LINE_CHARS]
        text = "".join(_char(c, char_size == 2) for c in chunk)
        lines.append(f'{addr(address + start * char_size)}  "{text}"')
    consumed = len(codes) + (1 if ended else 0)
    return lines, (address + consumed * char_size) & MASK64


def dump(read: Reader, symbolizer: Symbolizer | None, kind: str, address: int,
         count: int | None = None) -> tuple[list[str], int]:
    """kd's `<kind> address [L count]` (count in the command's units: bytes, words,
    dwords, qwords or characters).  Returns the lines and the address where the next
    dump of the same kind continues (what Enter repeats)."""
    kind = kind.lower()
    kind = _ALIASES.get(kind, kind)
    address &= MASK64
    if kind in ("da", "du"):
        return _string(read, kind, address, count)
    if kind not in _NUMERIC:
        raise ValueError(f"unknown dump kind {kind!r}")
    if count is None:
        count = _NUMERIC[kind][1]
    if count <= 0:
        return [], address
    return _numeric(read, symbolizer, kind, address, count)


def read_units(read: Reader, address: int, count: int, size: int) -> list[int | None]:
    """`count` little-endian units of `size` bytes, None where unreadable: the values a
    dump shows, for its structured result."""
    cells = read_cells(read, address & MASK64, count * size)
    return [_unit(cells[i * size:(i + 1) * size]) for i in range(count)]
