"""Scheduling state: !running (what each processor runs), !ready (the dispatcher ready
queues, KPRCB.DispatcherReadyListHead) and !apc (the APC queues, KTHREAD.ApcState)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from commands import fmt
from commands.errors import KdError
from commands.kernel_state import prcb_of, processor_count
from commands.process import Kernel, render_thread
from commands.registry import Result, command
from commands.stack import HEADER, frame_row, frames_for_context
from commands.target import MemoryAccessError

PRIORITIES = 32
LOCK_COLUMNS = 16  # KPRCB.LockQueue entries !running shows
LOCK_WAIT, LOCK_OWNER = 1, 2  # low bits of _KSPIN_LOCK_QUEUE.Lock
MAX_LIST = 10_000
APC_MODES = ("KERNEL", "USER")


# -- !running --------------------------------------------------------------------------------

@dataclass
class RunningRow:
    processor: int
    prcb: int
    current: int
    next: int
    idle: bool
    locks: str
    stack: list[str] = field(default_factory=list)


def lock_state(s, prcb: int) -> str:
    """One character per queued spin lock: O owned, W waited for, . free."""
    r = s.reader
    base = r.field_addr("_KPRCB", prcb, "LockQueue")
    size = s.target.types.sizeof("_KSPIN_LOCK_QUEUE")
    text = ""
    for i in range(LOCK_COLUMNS):
        lock = r.field("_KSPIN_LOCK_QUEUE", base + i * size, "Lock")
        text += "O" if lock & LOCK_OWNER else "W" if lock & LOCK_WAIT else "."
    return text


def running_rows(s, with_stacks: bool) -> list[RunningRow]:
    r = s.reader
    rows = []
    for n in range(processor_count(s)):
        prcb = prcb_of(s, n)
        current = r.field("_KPRCB", prcb, "CurrentThread")
        row = RunningRow(n, prcb, current, r.field("_KPRCB", prcb, "NextThread"),
                         current == r.field("_KPRCB", prcb, "IdleThread"),
                         lock_state(s, prcb))
        if with_stacks:
            frames = frames_for_context(s, s.target.registers(n))
            row.stack = [HEADER] + [frame_row(s, f, False, False) for f in frames]
        rows.append(row)
    return rows


def render_running(rows: list[RunningRow], idle_too: bool, stacks: bool) -> list[str]:
    system = sum(1 << row.processor for row in rows)
    idle = sum(1 << row.processor for row in rows if row.idle)
    out = ["", f"System Processors {system:x} (affinity mask)", f"  Idle Processors {idle:x}"]
    if idle == system:
        out.append("All processors idle.")
    out += ["", "     Prcb              Current           Next"]
    for row in rows:
        if row.idle and not idle_too:
            continue
        nxt = fmt.hex16(row.next) if row.next else " " * 16
        out.append(f"{row.processor:3}  {fmt.hex16(row.prcb)}  {fmt.hex16(row.current)}  "
                   f"{nxt}  {row.locks}")
        if stacks:
            out += [""] + row.stack + [""]
    return out


@command("!running", syntax="!running [-i] [-t]",
         help="Show what each processor is running: PRCB, current and next thread, queued "
              "spin locks; -i includes idle processors, -t adds each one's stack.")
def running_cmd(s, args: str) -> Result:
    flags = ""
    for word in args.split():
        if not word.startswith("-") or set(word[1:].lower()) - {"i", "t"} or len(word) < 2:
            raise KdError(f"Invalid option {word}")
        flags += word[1:].lower()
    rows = running_rows(s, "t" in flags)
    return Result(render_running(rows, "i" in flags, "t" in flags), [asdict(r) for r in rows])


# -- !ready ----------------------------------------------------------------------------------

def ready_threads(s, n: int) -> list[tuple[int, list[int]]]:
    """Processor n's ready queues, highest priority first: (priority, [ETHREAD, ...])."""
    r = s.reader
    prcb = prcb_of(s, n)
    link = r.offset("_KTHREAD", "WaitListEntry")
    size = s.target.types.sizeof("_LIST_ENTRY")
    heads = r.field_addr("_KPRCB", prcb, "DispatcherReadyListHead")
    out = []
    for priority in range(PRIORITIES - 1, -1, -1):
        entries = r.list_entries(heads + priority * size, limit=MAX_LIST)
        if entries:
            out.append((priority, [e - link for e in entries]))
    return out


@command("!ready", syntax="!ready [processor]",
         help="List the threads in each processor's ready queues, highest priority first.")
def ready_cmd(s, args: str) -> Result:
    numbers = [s.evaluate(args.strip())] if args.strip() else range(processor_count(s))
    k = Kernel(s)
    lines: list[str] = []
    data = []
    for n in numbers:
        for priority, threads in ready_threads(s, n):
            lines.append(f"Processor {n}: Ready Threads at priority {priority}")
            for et in threads:
                lines.append(render_thread(k.thread(et, with_stack=False))[0])
            data.append({"processor": n, "priority": priority, "threads": threads})
    return Result(lines, data)


# -- !apc --------------------------------------------------------------------------------------

@dataclass
class Apc:
    address: int
    type: int
    kernel_routine: int
    rundown_routine: int
    normal_routine: int


def read_apc(s, apc: int) -> Apc:
    r = s.reader
    t = "_KAPC"
    return Apc(apc, r.field(t, apc, "Type"), r.field(t, apc, "KernelRoutine"),
               r.field(t, apc, "RundownRoutine"), r.field(t, apc, "NormalRoutine"))


def apc_routine(s, address: int) -> str:
    """A routine as kdexts prints it after the address: `module!symbol+<hex displacement>`
    (`nt!IopUserCompletion+0`); an address outside every module shows only `+<address>`."""
    parts = s.symbols.split_name(address) if address else None
    if parts is None:
        return f"+{address:x}"
    module, symbol, off = parts
    return f"{module}!{symbol}+{off:x}" if symbol else f"{module}+{off:x}"


def render_apc(s, a: Apc, indent: str) -> list[str]:
    # kd prints the type and two of the routines; NormalRoutine stays in the data only.
    return [f"{indent}KAPC @ {fmt.hex16(a.address)}",
            f"{indent}  Type           {a.type:x}",
            f"{indent}  KernelRoutine  {fmt.hex16(a.kernel_routine)} "
            f"{apc_routine(s, a.kernel_routine)}",
            f"{indent}  RundownRoutine {fmt.hex16(a.rundown_routine)} "
            f"{apc_routine(s, a.rundown_routine)}"]


def thread_apcs(s, et: int) -> list[tuple[int, list[int]]]:
    """(mode, [KAPC, ...]) for the thread's kernel and user APC queues."""
    r = s.reader
    link = r.offset("_KAPC", "ApcListEntry")
    head = r.field_addr("_KTHREAD", et, "ApcState.ApcListHead")
    size = s.target.types.sizeof("_LIST_ENTRY")
    return [(mode, [e - link for e in r.list_entries(head + mode * size, limit=MAX_LIST)])
            for mode in range(len(APC_MODES))]


def render_thread_apcs(s, et: int, alone: bool = False) -> tuple[list[str], list[dict]]:
    """One thread's queues.  `!apc thre` (alone) prints both queue heads at the left
    margin, empty or not; inside a process listing kd indents them and shows only queues
    that hold APCs."""
    r = s.reader
    index = r.field("_KTHREAD", et, "ApcStateIndex")
    head = r.field_addr("_KTHREAD", et, "ApcState.ApcListHead")
    size = s.target.types.sizeof("_LIST_ENTRY")
    pad = "" if alone else "    "
    lines, data = [], []
    for mode, apcs in thread_apcs(s, et):
        if not apcs and not alone:
            continue
        lines.append(f"{pad}Thread {fmt.hex16(et)} ApcStateIndex {index} ApcListHead "
                     f"{fmt.hex16(head + mode * size)} [{APC_MODES[mode]}]")
        for apc in apcs:
            a = read_apc(s, apc)
            lines += render_apc(s, a, pad + "    ")
            data.append({"thread": et, "mode": APC_MODES[mode], **asdict(a)})
    return lines, data


def process_threads(s, ep: int) -> list[int]:
    r = s.reader
    link = r.offset("_KTHREAD", "ThreadListEntry")
    return [e - link for e in r.list_entries(r.field_addr("_KPROCESS", ep, "ThreadListHead"),
                                             limit=MAX_LIST)]


def render_process_apcs(s, k: Kernel, ep: int) -> tuple[list[str], list[dict]]:
    lines = [f"Process {fmt.hex16(ep)} {k.image(ep)}"]
    data: list[dict] = []
    for et in process_threads(s, ep):
        more, rows = render_thread_apcs(s, et)
        lines += more
        data += rows
    return lines, data


@command("!apc", syntax="!apc [proc Process | thre Thread | KAPC]",
         help="Show the queued APCs of every process, of one process or thread, or one KAPC.")
def apc_cmd(s, args: str) -> Result:
    k = Kernel(s)
    words = args.split(None, 1)
    if not words:
        lines = ["*** Enumerating APCs in all processes"]
        data: list[dict] = []
        for ep in k.process_list():
            more, rows = render_process_apcs(s, k, ep)
            lines += more
            data += rows
        return Result(lines, data)
    kind = words[0].lower()
    if kind in ("proc", "thre"):
        if len(words) < 2:
            raise KdError("Numeric expression missing from '<EOL>'")
        address = s.evaluate(words[1])
        if kind == "proc":
            lines, data = render_process_apcs(s, k, address)
        else:
            lines, data = render_thread_apcs(s, address, alone=True)
        return Result(lines, data)
    address = s.evaluate(args)
    try:
        a = read_apc(s, address)
    except MemoryAccessError:
        raise KdError(f"Unable to read KAPC at {fmt.hex16(address)}") from None
    return Result(render_apc(s, a, ""), asdict(a))
