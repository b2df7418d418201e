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


def replay(m, action: tuple) -> None:
    kind, *args = action
    if kind == "run":
        m.run(*args)
    elif kind == "step":
        m.step_instruction(*args)
    elif kind == "p":
        m.step_over(*args)
    elif kind == "gu":
        m.step_out(*args)
    elif kind == "ba+":
        m.set_data_breakpoint(*args)
    elif kind == "ba-":
        m.clear_data_breakpoint(*args)
    elif kind == "bp+":
        m.set_breakpoint(*args)
    elif kind == "bp-":
        m.clear_breakpoint(*args)
    elif kind == "break":
        m.request_break()
    else:
        raise ValueError(f"unknown journal action {kind!r}")


def memory_digest(m) -> str:
    """A hash of every physical frame, in frame order."""
    h = hashlib.sha256()
    for pfn in sorted(m.phys.frames):
        h.update(pfn.to_bytes(8, "little"))
        h.update(m.phys.frames[pfn])
    return h.hexdigest()
