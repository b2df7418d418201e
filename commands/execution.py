"""Execution control on a live target: g, gu, t, p, tc, pc, ta, pa, and ~Ns (the current
processor).  Each prints what kd prints at the stop: the stop text and the new location."""

from __future__ import annotations

import re
from collections.abc import Callable

from iced_x86 import Decoder, Mnemonic

from commands.errors import KdCommandError, KdSyntaxError
from commands.registry import Result, command
from commands.runcontrol import Outcome, Request, is_step, require_live, run
from commands.target import MemoryAccessError

MAX_STEPS_PER_COMMAND = 10_000  # t/p/pa/pc repetitions one command may make


def _data(s, out: Outcome) -> dict:
    ev = out.event
    return {"reason": ev.reason, "processor": ev.processor, "address": ev.address,
            "breakpoint": out.hit.id if out.hit is not None else None,
            "rip": s.target.registers(s.processor)["rip"]}


def _no_start_address(args: str) -> None:
    # The step commands take no `= StartAddress` in kdsim.
    if args.lstrip().startswith("="):
        raise KdSyntaxError(args.strip())


MAX_GO_BREAKS = 10  # kd takes up to ten break addresses on one go


class KdListSizeError(KdCommandError):
    """More break addresses than a go command takes."""

    kind = "List size"


def _set_start(s, start: int) -> None:
    """`= StartAddress`: the current processor resumes there (kd writes its rip)."""
    write = getattr(s.target, "write_register", None)
    if write is None:
        raise KdSyntaxError("=")
    write(s.processor, "rip", start)


def _go(s, args: str) -> Result:
    """g, gh, gn, gN, gc: `[= StartAddress] [BreakAddress ...]`.  On a kernel target the
    handled / not-handled forms resume as `g` does (kd's exception disposition only
    matters to a user-mode debuggee)."""
    require_live(s)
    rest = args.strip()
    start = None
    if rest.startswith("="):
        start, rest = s.take(rest[1:].lstrip())
        rest = rest.strip()
    temps: list[int] = []
    while rest:
        if len(temps) == MAX_GO_BREAKS:
            raise KdListSizeError(args, len(args) - len(rest))
        address, rest = s.take(rest)
        temps.append(address)
        rest = rest.strip()
    if start is not None:
        _set_start(s, start)
    lines, out = run(s, lambda armed, steps: s.target.go(armed, steps), frozenset(temps),
                     s.go_budget)
    return Result(lines, _data(s, out))


@command("g", syntax="g [= StartAddress] [BreakAddress ...]",
         help="Go: run the target until a breakpoint, a bug check or a break-in; with "
              "break addresses (up to 10), also stop when one of them is reached; "
              "`= StartAddress` resumes the current processor there.")
def g_cmd(s, args: str) -> Result:
    return _go(s, args)


@command("gh", syntax="gh [= StartAddress] [BreakAddress ...]",
         help="Go with exception handled: on a kernel target, the same as g.")
def gh_cmd(s, args: str) -> Result:
    return _go(s, args)


@command("gn", syntax="gn | gN [= StartAddress] [BreakAddress ...]",
         help="Go with exception not handled: on a kernel target, the same as g.")
def gn_cmd(s, args: str) -> Result:
    return _go(s, args)


@command("gc", syntax="gc",
         help="Go from a conditional breakpoint: in a breakpoint's command string it "
              "resumes the run that hit the breakpoint; typed, it is g.")
def gc_cmd(s, args: str) -> Result:
    if args.strip():
        raise KdCommandError(args, 0)
    return _go(s, "")


@command("gu", syntax="gu", help="Go up: run until the current function returns.")
def gu_cmd(s, args: str) -> Result:
    require_live(s)
    if args.strip():
        raise KdSyntaxError(args.strip())
    cpu = s.processor
    lines, out = run(s, lambda armed, steps: s.target.step_out(cpu, armed, steps))
    return Result(lines, _data(s, out))


def _step_request(s, over: bool) -> Request:
    cpu = s.processor
    if over:
        return lambda armed, steps: s.target.step_over(cpu, armed, steps)
    return lambda armed, steps: s.target.step_into(cpu, armed, steps)


def _count(s, args: str) -> int:
    _no_start_address(args)
    text = args.strip()
    if not text:
        return 1
    count, rest = s.take(text)
    if rest.strip():
        raise KdSyntaxError(rest.strip())
    return max(1, min(count, MAX_STEPS_PER_COMMAND))


def _step_until(s, over: bool, limit: int, done: Callable[[], bool]) -> Result:
    """Step up to `limit` times, showing every step, until the target stops for another
    reason (a breakpoint, a bug check) or `done()` holds after a step."""
    lines: list[str] = []
    out = None
    for _ in range(limit):
        step_lines, out = run(s, _step_request(s, over))
        lines += step_lines
        if not is_step(out) or done():
            break
    assert out is not None
    return Result(lines, _data(s, out))


def _steps(s, over: bool, args: str) -> Result:
    require_live(s)
    return _step_until(s, over, _count(s, args), lambda: False)


@command("t", syntax="t [count]",
         help="Trace: execute one instruction (into calls), count times.")
def t_cmd(s, args: str) -> Result:
    return _steps(s, False, args)


@command("p", syntax="p [count]",
         help="Step: execute one instruction, a call or rep instruction as a whole.")
def p_cmd(s, args: str) -> Result:
    return _steps(s, True, args)


def _is_call(s) -> bool:
    rip = s.target.registers(s.processor)["rip"]
    try:
        code = s.target.read_virtual(rip, 15)
    except MemoryAccessError as exc:
        readable = exc.address - rip
        if readable <= 0:
            return False
        code = s.target.read_virtual(rip, readable)
    ins = Decoder(64, code, ip=rip).decode()
    return not ins.is_invalid and ins.mnemonic == Mnemonic.CALL


def _to_call(s, over: bool, args: str) -> Result:
    """tc / pc: run (stepping) until a call instruction is next; a call the step starts
    on is stepped through (tc) or over (pc) first."""
    require_live(s)
    count = _count(s, args)
    lines: list[str] = []
    out = None
    steps = 0
    for _ in range(count):
        while True:
            step_lines, out = run(s, _step_request(s, over))
            steps += 1
            if not is_step(out):
                return Result(lines + step_lines, _data(s, out))
            if _is_call(s) or steps >= MAX_STEPS_PER_COMMAND:
                lines += step_lines
                break
    assert out is not None
    return Result(lines, _data(s, out))


@command("tc", syntax="tc [count]", help="Trace to the next call instruction.")
def tc_cmd(s, args: str) -> Result:
    return _to_call(s, False, args)


@command("pc", syntax="pc [count]", help="Step (over calls) to the next call instruction.")
def pc_cmd(s, args: str) -> Result:
    return _to_call(s, True, args)


def _to_address(s, over: bool, args: str) -> Result:
    """ta / pa: step until rip is the address, showing every step on the way."""
    require_live(s)
    text = args.strip()
    if not text:
        raise KdSyntaxError("")
    target, rest = s.take(text)
    if rest.strip():
        raise KdSyntaxError(rest.strip())
    return _step_until(s, over, MAX_STEPS_PER_COMMAND,
                       lambda: s.target.registers(s.processor)["rip"] == target)


@command("ta", syntax="ta address", help="Trace to an address, showing each step.")
def ta_cmd(s, args: str) -> Result:
    return _to_address(s, False, args)


@command("pa", syntax="pa address",
         help="Step (over calls) to an address, showing each step.")
def pa_cmd(s, args: str) -> Result:
    return _to_address(s, True, args)


_SWITCH = re.compile(r"(\d+)\s*s\s*$", re.IGNORECASE)
_PREFIX = re.compile(r"(\d+)\s*(\S.*)$", re.DOTALL)


@command("~", syntax="~Ns  |  ~N command",
         help="Make processor N the current processor (`~1s`), or run one command in "
              "processor N's context without switching (`~1k`, `~1 r rip`).")
def switch_cmd(s, args: str) -> Result:
    text = args.strip()
    m = _SWITCH.match(text)
    if m is not None:
        n = int(m.group(1))
        if n >= s.target.processor_count:
            raise KdCommandError(args, 0)
        s.switch_processor(n)
        return Result([], {"processor": n})
    m = _PREFIX.match(text)
    if m is None or int(m.group(1)) >= s.target.processor_count:
        raise KdCommandError(args, 0)
    return _on_processor(s, int(m.group(1)), m.group(2))


def _on_processor(s, n: int, command_text: str) -> Result:
    """kd's `~N<command>`: the command sees processor N's registers, thread and process;
    the current processor and any context set with .trap/.cxr/.frame come back after."""
    if n == s.processor:
        return s.execute_one(command_text)
    saved = (s.processor, s.scope, dict(s.next_dump))
    s.processor, s.scope = n, None
    s.next_dump.clear()
    try:
        return s.execute_one(command_text)
    finally:
        s.processor, s.scope = saved[0], saved[1]
        s.next_dump.clear()
        s.next_dump.update(saved[2])

