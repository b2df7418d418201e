"""!stacks: every thread of every process (the Idle process first, then
nt!PsActiveProcessHead), each with its state, the ticks since its last state change and
the frame it is blocked in, unwound from its kernel stack in memory."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from commands.errors import KdError
from commands.process import Kernel
from commands.registry import Result, command
from commands.stackwalk import walk
from commands.target import MemoryAccessError

HEADER = "Proc.Thread  .Thread  Ticks   ThreadState Blocker"
PROCESS_INDENT = 28
FRAME_INDENT = 40
# KTHREAD_STATE as !stacks names it.
STATE_NAMES = {0: "Initialized", 1: "READY", 2: "RUNNING", 3: "Standby", 4: "Terminated",
               5: "Blocked", 6: "Transition", 7: "DeferredReady", 8: "GateWait"}
# The wait and context-switch routines every blocked thread is in: the "blocker" kd
# reports is the first frame below them.
WAIT_ROUTINES = {"KiSwapContext", "KiSwapThread", "KiCommitThreadWait",
                 "KeWaitForSingleObject", "KeWaitForMultipleObjects", "KeWaitForMutexObject",
                 "KeDelayExecutionThread", "KiSwapDispatch"}
PAGED_OUT = "Stack paged out"


@dataclass
class StackThread:
    address: int
    pid: int
    tid: int
    ticks: int
    state: str
    frames: list[str] = field(default_factory=list)  # call sites, innermost first
    paged_out: bool = False

    def blocker_index(self) -> int:
        for i, site in enumerate(self.frames):
            name = site.split("!", 1)[-1].split("+", 1)[0]
            if name not in WAIT_ROUTINES:
                return i
        return 0


@dataclass
class StackProcess:
    address: int
    image: str
    threads: list[StackThread] = field(default_factory=list)


def _processes(s, k: Kernel) -> list[int]:
    out = []
    try:
        idle = s.reader.u64(s.nt("PsIdleProcess"))
    except (KdError, MemoryAccessError):
        idle = 0
    if idle:
        out.append(idle)
    return out + [ep for ep in k.process_list() if ep != idle]


def read_thread(s, k: Kernel, et: int, now: int) -> StackThread:
    r = s.reader
    state = r.field("_ETHREAD", et, "Tcb.State")
    th = StackThread(et, r.field("_ETHREAD", et, "Cid.UniqueProcess"),
                     r.field("_ETHREAD", et, "Cid.UniqueThread"),
                     (now - r.field("_ETHREAD", et, "Tcb.WaitTime")) & 0xFFFFFFFF,
                     STATE_NAMES.get(state, f"State {state}"))
    if state == 4:
        return th  # an exited thread has no stack left to show
    ctx = k.thread_context(et, state)
    if ctx is None:
        th.paged_out = True
        return th
    th.frames = [frame_name(s, f.ip)
                 for f in walk(s.target, s.symbols, ctx["rip"], ctx["rsp"])]
    return th


def frame_name(s, ip: int) -> str:
    """A frame as !stacks names it: symbol+offset, or `+0x<address>` with no symbol."""
    name = s.symbols.name_for(ip)
    return name if name is not None else f"+0x{ip:x}"


def read_stacks(s) -> list[StackProcess]:
    k = Kernel(s)
    r = s.reader
    now = r.u64(s.nt("KeTickCount")) & 0xFFFFFFFF
    off = r.offset("_ETHREAD", "ThreadListEntry")
    out = []
    for ep in _processes(s, k):
        p = StackProcess(ep, k.image(ep))
        for entry in r.list_entries(r.field_addr("_EPROCESS", ep, "ThreadListHead"),
                                    limit=4096):
            p.threads.append(read_thread(s, k, entry - off, now))
        out.append(p)
    return out


def _matches(th: StackThread, needle: str) -> bool:
    return any(needle in site.lower() for site in th.frames)


def render_thread(th: StackThread, detail: int) -> list[str]:
    row = f"{th.pid:4x}.{th.tid:06x}  {th.address:016x} {th.ticks:07x} {th.state:<10} "
    if th.paged_out:
        return [row + PAGED_OUT]
    if not th.frames:
        return [row.rstrip()]
    start = 0 if detail >= 2 else th.blocker_index()
    out = [row + th.frames[start]]
    if detail >= 2:
        out += [" " * FRAME_INDENT + site for site in th.frames[start + 1:]]
    return out


def _parse(s, args: str) -> tuple[int, str]:
    words = args.split(None, 1)
    if not words:
        return 0, ""
    detail = s.evaluate(words[0])
    if detail not in (0, 1, 2):
        raise KdError(f"Invalid detail level {detail:x}")
    return detail, words[1].strip() if len(words) > 1 else ""


@command("!stacks", syntax="!stacks [detail [filter]]",
         help="Every thread by process: state, ticks since its last change and the frame it "
              "is blocked in; detail 1 adds paged-out stacks, 2 whole stacks; filter keeps "
              "threads with a matching module or function on their stack.")
def stacks_cmd(s, args: str) -> Result:
    detail, needle = _parse(s, args)
    lines = [HEADER]
    processes = read_stacks(s)
    shown = 0
    count = 0
    for p in processes:
        lines.append(" " * PROCESS_INDENT + f"[{p.address:016x} {p.image}]")
        for th in p.threads:
            count += 1
            if th.paged_out and detail == 0:
                continue
            if needle and not _matches(th, needle.lower()):
                continue
            shown += 1
            lines += render_thread(th, detail)
    lines += ["", f"Threads Processed: {count}"]
    data = {"detail": detail, "filter": needle, "threads_processed": count,
            "threads_shown": shown, "processes": [asdict(p) for p in processes]}
    return Result(lines, data)
