"""Snapshots of a whole machine.

The machine is deterministic, so its state at any stop is a function of how it was
booted and of the run-control actions applied since (runs with their budgets, steps,
steps over calls and out of functions, breakpoints and data breakpoints set and cleared,
break-ins).  A snapshot records exactly that; restoring
boots an identical machine and replays the journal.  (Kernel routines are suspended
Python generators, which cannot be copied; replay needs no copy of them.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    boot: Callable[[], object]  # builds the machine as it was right after boot
    journal: tuple[tuple, ...]
    steps: int

    def restore(self):
        m = self.boot()
        m.boot_factory = self.boot
        for action in self.journal:
            replay(m, action)
        assert m.steps == self.steps, "replay diverged"
        return m


# Each journal action and the machine method that replays it with the recorded arguments.
REPLAY: dict[str, str] = {
    "run": "run",
    "step": "step_instruction",
    "p": "step_over",
    "gu": "step_out",
    "ba+": "set_data_breakpoint",
    "ba-": "clear_data_breakpoint",
    "bp+": "set_breakpoint",
    "bp-": "clear_breakpoint",
    "break": "request_break",
    "poke": "debugger_write",
    "reg": "debugger_set_register",
}


def replay(m, action: tuple) -> None:
    kind, *args = action
    method = REPLAY.get(kind)
    if method is None:
        raise ValueError(f"unknown journal action {kind!r}")
    getattr(m, method)(*args)


def memory_digest(m) -> str:
    """A hash of every physical frame, in frame order."""
    h = hashlib.sha256()
    for pfn in sorted(m.phys.frames):
        h.update(pfn.to_bytes(8, "little"))
        h.update(m.phys.frames[pfn])
    return h.hexdigest()
