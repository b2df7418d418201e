"""!error: the text of an NTSTATUS or Win32 error code, from the tables in commands/data
(ntstatus.tsv: the NTSTATUS names and message templates; win32-errors.tsv: the system
error codes whose text the repository holds)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from commands.errors import KdError
from commands.registry import Result, command

NO_TEXT = "<Unable to get error code text>"
WIN32_LIMIT = 0x10000  # Win32 error codes are 16-bit; anything larger is an NTSTATUS
NEGATIVE_DECIMAL = re.compile(r"^0n-(\d+)$", re.IGNORECASE)


def _table(name: str) -> dict[int, tuple[str, str]]:
    text = (resources.files("commands") / "data" / name).read_text()
    out: dict[int, tuple[str, str]] = {}
    for line in text.splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) < 3:
            continue
        # Several names share a value (STATUS_WAIT_0 = STATUS_SUCCESS): the first one,
        # or the first that has a message, speaks for it.
        value = int(cols[0], 16)
        if value not in out or (not out[value][1] and cols[2]):
            out[value] = (cols[1], cols[2])
    return out


@cache
def ntstatus_table() -> dict[int, tuple[str, str]]:
    return _table("ntstatus.tsv")


@cache
def win32_table() -> dict[int, tuple[str, str]]:
    return _table("win32-errors.tsv")


def error_text(code: int, ntstatus: bool) -> tuple[str, str, str]:
    """(kind, name, message) for a 32-bit code; name and message empty when unknown."""
    kind = "NTSTATUS" if ntstatus else "Win32"
    table = ntstatus_table() if ntstatus else win32_table()
    name, message = table.get(code, ("", ""))
    return kind, name, message


def _value(s, text: str) -> int:
    m = NEGATIVE_DECIMAL.match(text)
    if m:
        return -int(m.group(1))
    return s.evaluate(text)


@command("!error", syntax="!error value [flags]",
         help="The text of an error code: NTSTATUS for 32-bit codes (or with flags 1), "
              "Win32 for 16-bit ones.")
def error_cmd(s, args: str) -> Result:
    words = args.split()
    if not words:
        raise KdError("Usage: !error value [flags]")
    if len(words) > 2:
        raise KdError(f"Syntax error at '{' '.join(words[2:])}'")
    code = _value(s, words[0]) & 0xFFFFFFFF
    flags = s.evaluate(words[1]) if len(words) > 1 else 0
    ntstatus = bool(flags & 1) or code >= WIN32_LIMIT
    kind, name, message = error_text(code, ntstatus)
    line = f"Error code: ({kind}) 0x{code:x} ({code}) - {message or NO_TEXT}"
    return Result([line], {"code": code, "kind": kind, "name": name, "message": message})
