"""A debugging session on a booted scenario: the machine, its Target, the command
session, and the start-up text kd prints when it stops on a crashed target."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from commands.analyze import analyze, read_bugcheck
from commands.crashdump import DUMP_BITMAP, DUMP_FULL
from commands.disasm import disassemble_one
from commands.errors import KdError
from commands.runcontrol import BREAK_EXCEPTION, BREAK_IN_BANNER
from commands.session import Session
from commands.target import MemoryAccessError
from commands.vertarget import session_time
from kdsim.live import LiveTarget
from machine.boot import BOOT_TICKS
from machine.machine import STEPS_PER_TICK, Machine
from machine.scenario import Scenario, boot_scenario

VERSION = "0.1.0"

# A context manager entered around a long run of the machine (a progress display).
Watch = Callable[[Machine], AbstractContextManager[object]]


@dataclass
class App:
    scenario: Scenario
    machine: Machine
    target: LiveTarget
    session: Session

    broke_in: bool = False  # stopped by a break-in (a lab's tick stop), not a bug check
    out_of_budget: int | None = None  # the step budget, when the run used it all up

    @classmethod
    def start(cls, scenario: Scenario, seed: int | None = None, cpus: int | None = None,
              max_steps: int | None = None, ticks: int | None = None,
              watch: Watch | None = None) -> App:
        """Boot the scenario and run it: to its bug check, or, with ticks, for that many
        clock ticks of its timeline and then break in (ticks=0: as soon as it has
        booted, kd's -b).  Either way the run, boot included, takes at most max_steps
        steps (default: the scenario's step budget); a run that uses them all up is
        broken into where it is.  `watch(machine)`, a context manager, is entered around
        the run (the terminal's progress display)."""
        budget = scenario.budget if max_steps is None else max_steps
        if ticks is not None and max_steps is None and scenario.step_budget is None:
            # A tick stop has the steps its ticks take, however many that is.
            budget = max(budget, (ticks + 65) * STEPS_PER_TICK)
        m = boot_scenario(scenario, seed=seed, cpus=cpus, settle_steps=budget)
        with watch(m) if watch is not None else nullcontext():
            if ticks is None:
                m.run(max(budget - m.steps, 0))
                broke_in = m.bugcheck is None and break_in(m)
            else:
                broke_in = run_ticks_then_break(m, ticks, budget)
        spent = budget if broke_in and m.steps >= budget else None
        target = LiveTarget(m)
        session = Session(target, processor=target.stop_processor)
        return cls(scenario, m, target, session, broke_in, spent)

    def banner(self) -> list[str]:
        """kd's start-up text for the live target (see start_text)."""
        s = self.session
        version = s.execute_one("vertarget")
        head = [connected_line(version.data),
                f"Scenario {self.scenario.name}: {self.scenario.title} "
                f"(seed {self.machine.config.seed})"]
        stop: list[str] = []
        if self.machine.bugcheck is None and self.broke_in:
            if self.out_of_budget is not None:
                stop += [budget_message(self.out_of_budget), ""]
            stop += [BREAK_EXCEPTION, *BREAK_IN_BANNER]
        return start_text(s, head, stop, version.lines)


def start_text(s, head: list[str], stop: list[str] | None = None,
               version: list[str] | None = None) -> list[str]:
    """kd's start-up text in its shape: the version line, the target's lines (`head`),
    the search paths, the target's version (vertarget's lines, read from memory), then
    the bug check (read from nt!KiBugCheckData) or `stop`, and the instruction where the
    target stopped."""
    if version is None:
        version = s.execute_one("vertarget").lines
    lines = [f"kdsim Windows Kernel Debugger Version {VERSION} AMD64", "", "", *head, "",
             f"Symbol search path is: {s.symbol_path or '<empty>'}",
             f"Executable search path is: {s.image_path}", *version, ""]
    crash = crash_banner(s)
    lines += crash if crash else (stop or [])
    regs = s.target.registers(s.processor)
    code, _ = disassemble_one(lambda a, n: s.target.read_virtual(a, n), s.symbols, regs["rip"])
    return lines + code


def crash_banner(s) -> list[str]:
    """The short analysis kd printed on opening a crashed target; [] when the target has
    not bug-checked."""
    try:
        if read_bugcheck(s) is None:
            return []
        a = analyze(s)
    except (KdError, MemoryAccessError):
        return []
    params = ", ".join(f"{v:x}" for v, _ in a.args)
    lines = ["*" * 79, "*" + " " * 77 + "*",
             "*" + " " * 24 + "Bugcheck Analysis" + " " * 36 + "*",
             "*" + " " * 77 + "*", "*" * 79, "",
             "Use !analyze -v to get detailed debugging information.", "",
             f"BugCheck {a.code:X}, {{{params}}}", ""]
    if a.image:
        culprit = a.image if a.image_only else f"{a.image} ( {a.symbol} )"
        lines += [f"Probably caused by : {culprit}", ""]
    lines += ["Followup:     MachineOwner", "---------", ""]
    return lines


def connected_line(version: dict) -> str:
    """kd's line on connecting to a live target, from vertarget's data (read from the
    target's memory); the parts it could not read are left out."""
    build = version.get("build")
    system = version.get("system_time")
    name = f"{version.get('os')} {build} x64 target" if build is not None else "x64 target"
    when = ""
    if system is not None:
        when = f" at ({session_time(system, version.get('time_zone_bias', 0))})"
    return f"Connected to {name}{when}, ptr64 TRUE"


def budget_message(budget: int) -> str:
    return (f"kdsim: the scenario ran {budget} steps without stopping (its step budget); "
            "breaking in")


def break_in(m: Machine) -> bool:
    """Break in as kd's Ctrl+C does; True unless the machine bug-checked first."""
    m.request_break()
    return m.run().reason != "bugcheck"


def run_ticks_then_break(m: Machine, ticks: int, budget: int | None = None) -> bool:
    """Run until the clock has ticked `ticks` times on the scenario's timeline (the clock
    its events' at_tick counts from), or the machine has run `budget` steps since it
    was switched on, then break in as kd's Ctrl+C does.  True when the run was broken
    into; False when the machine bug-checked first."""
    goal = BOOT_TICKS + ticks  # the boot schedules the timeline from BOOT_TICKS
    # A processor that masks the clock stops the count: the run is bounded in time too.
    limit = m.steps + (max(goal - m.tick_count, 0) + 64) * STEPS_PER_TICK
    if budget is not None:
        limit = min(limit, budget)
    while m.tick_count < goal and m.steps < limit:
        # Whole ticks while far from the goal, then small slices up to the goal tick's
        # clock interrupt.
        whole = goal - m.tick_count - 1
        chunk = whole * STEPS_PER_TICK if whole > 0 else STEPS_PER_TICK // 16
        if m.run(min(chunk, limit - m.steps)).reason == "bugcheck":
            return False
    return m.bugcheck is None and break_in(m)


DUMP_KINDS = {
    DUMP_FULL: "Kernel Complete Dump File: Full address space is available",
    DUMP_BITMAP: "Kernel Bitmap Dump File: Kernel address space is available, User address "
                 "space may not be available."}


def dump_banner(s, target) -> list[str]:
    """kd's start-up text on opening a dump file (a kdsim dump also names its scenario)."""
    head = [f"Loading Dump File [{target.path}]", DUMP_KINDS.get(target.image.dump_type, "")]
    scen = target.scenario
    if scen is not None:
        head.append(f"Scenario {scen.get('name')}: {scen.get('title')} (seed {scen.get('seed')})")
    return start_text(s, head)
