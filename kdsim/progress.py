"""Long runs of the machine: interruptible by Ctrl+C, and on a terminal a progress
display while the machine runs for a while (to its crash at start, `g` on a hang).

A helper thread watches the machine's counters and, once a run has gone on for a moment,
shows a transient rich progress line: steps run, simulated time, each processor's IRQL
and how to break in.  It only reads; the run itself is untouched, so what the machine
does never depends on the display (the wall clock decides only when it is drawn).
Ctrl+C still reaches the main thread, whose handler breaks in.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

from commands.vertarget import uptime
from machine.machine import TICK_100NS, Machine

DELAY = 0.4  # seconds a run goes on before the display appears
POLL = 0.1


def running_text(m: Machine) -> str:
    """The toolbar's line for a running machine, from its own counters."""
    irql = " ".join(f"{p.number}:{p.irql}" for p in m.processors)
    return (f"running | up {uptime(m.tick_count * TICK_100NS)} | IRQL {irql} | "
            f"{m.steps:,} steps | Ctrl+C breaks in")


@contextmanager
def watch_run(m: Machine, console: Console | None = None,
              total: int | None = None) -> Iterator[None]:
    """Show progress while the block runs the machine (`total`: the most steps the run
    may take, for a bar; None shows a pulsing bar)."""
    console = console or Console(file=sys.stdout, highlight=False)
    done = threading.Event()
    start = m.steps

    def show() -> None:
        if done.wait(DELAY) or m.steps == start:
            return
        columns = [SpinnerColumn(), TextColumn("{task.description}")]
        if total is not None:
            columns.append(BarColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(running_text(m), total=total)
            while not done.wait(POLL):
                progress.update(task, description=running_text(m),
                                completed=m.steps - start)

    thread = threading.Thread(target=show, name="kdsim-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@contextmanager
def interruptible(m: Machine) -> Iterator[None]:
    """While the block runs the machine, SIGINT (Ctrl+C) breaks in to it, as kd's
    Ctrl+C does, instead of ending kdsim."""
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: m.request_break())
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def startup_watch(display: bool):
    """The watch App.start runs the scenario under: interruptible, and with the progress
    display when `display` (a terminal)."""

    def watch(m: Machine) -> ExitStack:
        stack = ExitStack()
        stack.enter_context(interruptible(m))
        if display:
            stack.enter_context(watch_run(m))
        return stack

    return watch
