"""The REPL's bottom toolbar: the scenario, the simulated time, the machine's state and
each processor's IRQL.

The debugger's part is read as kd would read it: the time from SharedUserData's
InterruptTime, the bug check from nt!KiBugCheckData, the IRQLs from the processors' CR8.
While the machine runs (kdsim/progress.py) the same line is built from the machine's own
counters, since the debugger does not read a running target.
"""

from __future__ import annotations

from dataclasses import dataclass

from commands.analyze import read_bugcheck
from commands.dpcs_timers import shared_time
from commands.errors import KdError
from commands.target import MemoryAccessError
from commands.vertarget import uptime

CRASHED, BROKEN_IN, RUNNING = "crashed", "broken in", "running"


@dataclass(frozen=True)
class Status:
    scenario: str
    uptime: str | None  # "0 days 00:15:06.437", None when the clock cannot be read
    state: str  # crashed / broken in / running
    bugcheck: int | None
    irqls: tuple[int, ...]

    def text(self) -> str:
        state = self.state
        if self.bugcheck is not None:
            state += f" (bug check {self.bugcheck:X})"
        irql = " ".join(f"{n}:{v}" for n, v in enumerate(self.irqls))
        parts = [f"scenario {self.scenario}", f"up {self.uptime or '?'}", state,
                 f"IRQL {irql}"]
        return " | ".join(parts)


def stopped_status(session, scenario: str) -> Status:
    """The status of a stopped target, read through the session."""
    interrupt = shared_time(session, "InterruptTime")
    try:
        bugcheck = read_bugcheck(session)
    except (KdError, MemoryAccessError):
        bugcheck = None
    code = bugcheck[0] if bugcheck is not None else None
    target = session.target
    irqls = []
    for n in range(target.processor_count):
        try:
            irqls.append(target.registers(n).get("cr8", 0))
        except (KdError, MemoryAccessError, KeyError, IndexError):
            irqls.append(0)
    return Status(scenario, uptime(interrupt) if interrupt is not None else None,
                  CRASHED if code is not None else BROKEN_IN, code, tuple(irqls))
