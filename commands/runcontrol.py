"""Letting a live target run and reporting where it stopped, as kd does: breakpoints armed
for the run, conditions (/p, /t, pass counts) checked at each hit by reading the current
thread from memory (the target resumes silently when they do not hold), the stop text
(`Breakpoint N hit`, the bug-check break-in, the Ctrl+C banner), the new location, and a
hit breakpoint's command string."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from commands.bptable import UNRESOLVED, Breakpoint
from commands.disasm import disassemble_one
from commands.errors import KdCommandError, KdError
from commands.session import sub_registers
from commands.symbols import SymbolEngine
from commands.target import (
    STOP_BREAK,
    STOP_BREAKPOINT,
    STOP_BUDGET,
    STOP_BUGCHECK,
    STOP_DATA,
    STOP_STEP,
    ArmedBreakpoints,
    MemoryAccessError,
    StopEvent,
)

# A run request: the breakpoints to arm and the steps allowed -> how the run ended.
Request = Callable[[ArmedBreakpoints, int], StopEvent]

MAX_COMMAND_DEPTH = 8  # breakpoint command strings that step may nest this deep


class NoRunnableError(KdCommandError):
    """Run control on a target that cannot run (a dump): kd's
    `^ No runnable debuggees error in 'g'`."""

    kind = "No runnable debuggees"


def require_live(s) -> None:
    if not getattr(s.target, "is_live", False) or not hasattr(s.target, "go"):
        raise NoRunnableError("", 0)


# -- the text of a stop -----------------------------------------------------------------

def location_lines(s) -> list[str]:
    """`module!symbol+0xoff:` and the instruction at the current processor's rip."""
    regs = s.target.registers(s.processor)
    lines, _ = disassemble_one(lambda a, n: s.target.read_virtual(a, n), s.symbols,
                               regs["rip"], sub_registers(regs))
    return lines


def _boxed(rows: list[str]) -> list[str]:
    return ["*" + row.ljust(77) + "*" for row in rows]


# kd's banner for a break-in from the keyboard.
BREAK_IN_BANNER = ["*" * 79] + _boxed([
    "",
    "   You are seeing this message because you pressed either",
    "       CTRL+C (if you run console kernel debugger) or,",
    "       CTRL+BREAK (if you run GUI kernel debugger),",
    "   on your debugger machine's keyboard.",
    "",
    "                   THIS IS NOT A BUG OR A SYSTEM CRASH",
    "",
    ' If you did not intend to break into the machine, press the "g" key, then',
    ' press the "ENTER" key now.  This message might immediately reappear.  If it',
    ' does, press "g" and "ENTER" again.',
    "",
]) + ["*" * 79]
BREAK_EXCEPTION = "Break instruction exception - code 80000003 (first chance)"


def bugcheck_lines(s) -> list[str]:
    """The live target's break-in on a bug check, with the code and parameters read from
    nt!KiBugCheckData."""
    try:
        data = s.nt("KiBugCheckData")
        words = [s.reader.u64(data + 8 * i) for i in range(5)]
    except (KdError, MemoryAccessError):
        return [BREAK_EXCEPTION, ""]
    params = ",".join(f"0x{w:016X}" for w in words[1:])
    return ["KDTARGET: Refreshing KD connection", "",
            f"*** Fatal System Error: 0x{words[0] & 0xFFFFFFFF:08x}",
            " " * 23 + f"({params})", "",
            BREAK_EXCEPTION, "",
            "A fatal system error has occurred.",
            "Debugger entered on first try; Bugcheck callbacks have not been invoked.", "",
            "A fatal system error has occurred.", "",
            "For analysis of this file, run !analyze -v"]


def stop_lines(s, ev: StopEvent, hit: Breakpoint | None) -> list[str]:
    if ev.reason == STOP_BUGCHECK:
        head = bugcheck_lines(s)
    elif ev.reason == STOP_BREAK:
        head = [BREAK_EXCEPTION, *BREAK_IN_BANNER]
    elif ev.reason == STOP_BUDGET:
        head = [f"kdsim: the target ran {ev.steps} steps without an event; the debugger "
                "broke in"]
    elif hit is not None:
        head = [f"Breakpoint {hit.id} hit"]
    else:
        head = []
    return head + location_lines(s)


# -- conditions checked at a hit -------------------------------------------------------------

def _conditions_hold(s, bp: Breakpoint, processor: int) -> bool:
    """/p and /t: the thread running on the stopped processor, read from its KPRCB."""
    if bp.thread is None and bp.process is None:
        return True
    try:
        thread = s.current_thread(processor)
        process = s.current_process(processor)
    except (KdError, MemoryAccessError):
        return True  # cannot tell: stop, as kd does when it cannot evaluate
    if bp.thread is not None and thread != bp.thread:
        return False
    return bp.process is None or process == bp.process


def _breaks(s, bp: Breakpoint, processor: int) -> bool:
    """Whether this hit stops the target; a hit that matches counts one pass."""
    if not _conditions_hold(s, bp, processor):
        return False
    if bp.remaining > 1:
        bp.remaining -= 1
        return False
    return True


# -- running -----------------------------------------------------------------------------

@dataclass
class Outcome:
    event: StopEvent
    hit: Breakpoint | None
    lines: list[str] = field(default_factory=list)
    spent: int = 0


def run_once(s, request: Request, temps: frozenset[int] = frozenset(),
             budget: int | None = None) -> Outcome:
    """Run until a stop the user sees: hits whose conditions fail resume silently."""
    allowed = s.run_budget if budget is None else budget
    spent = 0
    while True:
        s.breakpoints.resolve(s.symbols.address_of)
        load = _load_notification(s, temps)
        extra = temps | {load} if load is not None else temps
        ev = request(s.breakpoints.armed(extra), max(allowed - spent, 0))
        spent += ev.steps
        if (load is not None and ev.reason == STOP_BREAKPOINT and ev.address == load
                and s.breakpoints.hit_by(load, None) is None and spent < allowed):
            # A driver image was loaded: read the module list again so that deferred
            # breakpoints resolve, then go on (kd's load-image event, not shown).
            s.symbols = SymbolEngine(s.target)
            request, temps = _go(s), frozenset()
            continue
        hit = None
        if ev.reason in (STOP_BREAKPOINT, STOP_DATA):
            hit = s.breakpoints.hit_by(ev.address, ev.watch)
            quiet_ok = ev.reason == STOP_BREAKPOINT and ev.address in temps
            if hit is not None and not quiet_ok and not _breaks(s, hit, ev.processor):
                if spent < allowed:
                    # kd resumes with `g`: a step under way is not resumed (see report)
                    request = _go(s)
                    temps = frozenset()
                    continue
                ev = StopEvent(STOP_BUDGET, ev.processor, steps=spent)
                hit = None
        s.stopped(ev.processor)
        if hit is not None and hit.one_shot:
            s.breakpoints.remove(hit.id)
        return Outcome(ev, hit, stop_lines(s, ev, hit), spent)


# nt's routine that runs a loaded driver's DriverEntry: the image is in the loaded-module
# list when it starts, so stopping there is when kd's load-image event would come.
LOAD_NOTIFICATION = "nt!IopLoadDriver"


def _load_notification(s, temps: frozenset[int]) -> int | None:
    """The address to stop at (silently) for a driver load, while a deferred breakpoint
    waits for its module; None when none waits."""
    if not any(b.kind == UNRESOLVED and b.enabled and s.symbols.address_of(b.expression)
               is None for b in s.breakpoints):
        return None
    address = s.symbols.address_of(LOAD_NOTIFICATION)
    return None if address is None or address in temps else address


def _go(s) -> Request:
    return lambda armed, steps: s.target.go(armed, steps)


def run(s, request: Request, temps: frozenset[int] = frozenset(),
        budget: int | None = None) -> tuple[list[str], Outcome]:
    """run_once, then the hit breakpoint's command string; a `g` in it resumes the target
    (in this loop, so a logging breakpoint may be hit any number of times).  The run
    takes at most `budget` steps (default: the session's run budget)."""
    allowed = s.run_budget if budget is None else budget
    lines: list[str] = []
    spent = 0
    while True:
        out = run_once(s, request, temps, allowed - spent)
        spent += out.spent
        lines += out.lines
        if out.hit is None or not out.hit.command or spent >= allowed:
            return lines, out
        resume = run_command_string(s, out.hit.command, lines)
        if not resume:
            return lines, out
        if resume != "gc":
            request, temps = _go(s), frozenset()
        # gc resumes the run that hit the breakpoint in its own fashion: the same request
        # (a go keeps its break addresses; a step is issued again from the hit)


def run_command_string(s, command: str, lines: list[str]) -> str | None:
    """Run a breakpoint's commands (kd does not echo them) as a command program: `.if`,
    `j`, blocks and aliases work as at the prompt.  A plain go (`g`, `gh`, `gn`, `gc`)
    anywhere in it resumes the target: the commands after it are not run and the result
    says how to resume: "g" (freely) or "gc" (as the run that hit)."""
    from commands.flow import run_breakpoint_commands

    depth = s.bp_command_depth
    if depth >= MAX_COMMAND_DEPTH:
        return None
    s.bp_command_depth = depth + 1
    try:
        results, resume = run_breakpoint_commands(s, command)
    finally:
        s.bp_command_depth = depth
    for res in results:
        lines += res.lines
    return resume


def is_step(out: Outcome) -> bool:
    return out.event.reason == STOP_STEP
