"""Bounds on what one command may print, so that a huge range (`dq 0 L?10000000`) or a
deep recursion (`dt nt!_EPROCESS -r7`) cannot exhaust the session's memory.  kd would
print on until interrupted; kdsim stops and says so."""

from __future__ import annotations

MAX_OUTPUT_LINES = 100_000


def stopped_notice(lines: int = MAX_OUTPUT_LINES) -> str:
    return f"kdsim: output stopped after {lines} lines (narrow the range or depth)"


class OutputLimit(Exception):
    """Raised by a renderer that has produced MAX_OUTPUT_LINES lines."""
