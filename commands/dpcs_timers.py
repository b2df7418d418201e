"""Deferred work: !dpcs (each processor's DPC queues, KPRCB.DpcData) and !timer (each
processor's timer table, KPRCB.TimerTable), walked in memory."""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass, field

from commands import fmt
from commands.errors import KdError
from commands.kernel_state import prcb_of, processor_count
from commands.registry import Result, command
from commands.target import MemoryAccessError

DPC_KINDS = ("Normal", "Threaded")  # KPRCB.DpcData[0] and [1]
MAX_QUEUE = 10_000  # a corrupted (cyclic) list stops here
TIMER_LISTS = 256
TICK_100NS = 156250  # fallback when nt!KeMaximumIncrement cannot be read
EPOCH_1601 = datetime.datetime(1601, 1, 1)


# -- DPC queues --------------------------------------------------------------------------

@dataclass
class QueuedDpc:
    processor: int
    kind: str
    dpc: int
    routine: int = 0
    symbol: str = ""
    error: str = ""  # kd's line for an entry it cannot read


def queued_dpcs(s, n: int) -> list[QueuedDpc]:
    """Processor n's queued DPCs: the normal queue, then the threaded one."""
    r = s.reader
    prcb = prcb_of(s, n)
    link = r.offset("_KDPC", "DpcListEntry")
    size = s.target.types.sizeof("_KDPC_DATA")
    out: list[QueuedDpc] = []
    for i, kind in enumerate(DPC_KINDS):
        data = r.field_addr("_KPRCB", prcb, "DpcData") + i * size
        entry = r.field("_KDPC_DATA", data, "DpcList.ListHead.Next")
        seen = 0
        while entry and seen < MAX_QUEUE:
            dpc = entry - link
            seen += 1
            try:
                routine = r.field("_KDPC", dpc, "DeferredRoutine")
                entry = r.u64(entry)
            except MemoryAccessError:
                out.append(QueuedDpc(n, kind, dpc, error=f"Failed to read DPC at 0x{dpc:016x}"))
                break
            out.append(QueuedDpc(n, kind, dpc, routine, s.symbols.name_for(routine) or ""))
    return out


def dpc_line(d: dict, symbols=None) -> str:
    """A queued DPC as !pcr lists it: `0x<KDPC> 0x<routine> [Normal] symbol`."""
    return f"0x{d['dpc']:016x} 0x{d['routine']:016x} [{d['kind']}] {d['symbol']}".rstrip()


def render_dpcs(rows: list[QueuedDpc]) -> list[str]:
    out = ["CPU Type      KDPC       Function"]
    for d in rows:
        if d.error:
            out.append(d.error)
        else:
            out.append(f"{d.processor:2}: {d.kind:<8}: 0x{d.dpc:016x} 0x{d.routine:016x} "
                       f"{d.symbol}".rstrip())
    return out


@command("!dpcs", syntax="!dpcs [processor]",
         help="List the DPCs queued on each processor (or one processor): KDPC and routine.")
def dpcs_cmd(s, args: str) -> Result:
    numbers = [s.evaluate(args.strip())] if args.strip() else range(processor_count(s))
    rows = [d for n in numbers for d in queued_dpcs(s, n)]
    return Result(render_dpcs(rows), [asdict(d) for d in rows])


# -- timers ----------------------------------------------------------------------------------

@dataclass
class TimerRow:
    list_index: int
    first_in_list: bool
    timer: int
    due: int
    periodic: bool
    dpc: int = 0
    routine: str = ""  # the DPC routine's symbol (`nt!KiTimerExpirationDpc`), "" if none
    thread: int = 0
    table_type: int = 0  # KTIMER_TABLE.TimerEntries[table_type]: 0 high precision, 1 standard
    displacement: int = 0  # from `routine` (the whole address where it has no symbol)


@dataclass
class TimerTable:
    processor: int
    table: int
    timers: list[TimerRow] = field(default_factory=list)


def _increment(s) -> int:
    try:
        return s.reader.u64(s.nt("KeMaximumIncrement")) & 0xFFFFFFFF or TICK_100NS
    except (KdError, MemoryAccessError):
        return TICK_100NS


SHARED_USER_DATA = 0xFFFFF78000000000  # KUSER_SHARED_DATA's fixed kernel address on x64


def shared_time(s, name: str) -> int | None:
    """A _KSYSTEM_TIME of SharedUserData (InterruptTime, SystemTime) in 100 ns units, or
    None where the target's SharedUserData cannot be read."""
    r = s.reader
    try:
        low = r.field("_KUSER_SHARED_DATA", SHARED_USER_DATA, f"{name}.LowPart")
        high = r.field("_KUSER_SHARED_DATA", SHARED_USER_DATA, f"{name}.High1Time")
    except MemoryAccessError:
        return None
    return (high & 0xFFFFFFFF) << 32 | low


def interrupt_time(s) -> int:
    """Time since boot in 100 ns: SharedUserData's InterruptTime, or where that cannot
    be read, KeTickCount ticks of KeMaximumIncrement."""
    now = shared_time(s, "InterruptTime")
    if now is not None:
        return now
    return s.reader.u64(s.nt("KeTickCount")) * _increment(s)


def _timer_target(s, timer: int) -> tuple[int, str, int, int]:
    """(DPC, its routine's symbol, displacement from it, waiting thread) of a timer."""
    r = s.reader
    dpc = r.field("_KTIMER", timer, "Dpc")
    if dpc:
        try:
            routine = r.field("_KDPC", dpc, "DeferredRoutine")
        except MemoryAccessError:
            return dpc, "", 0, 0
        parts = s.symbols.split_name(routine)
        if parts is None:
            gone = s.symbols.name_for(routine)  # `<Unloaded_x.sys>+0x..`, as k names it
            return (dpc, gone, 0, 0) if gone else (dpc, "", routine, 0)
        module, symbol, off = parts
        return dpc, f"{module}!{symbol}" if symbol else module, off, 0
    head = r.field_addr("_KTIMER", timer, "Header.WaitListHead")
    first = r.u64(head)
    if first and first != head:
        block = first - r.offset("_KWAIT_BLOCK", "WaitListEntry")
        return 0, "", 0, r.field("_KWAIT_BLOCK", block, "Thread")
    return 0, "", 0, 0


def _list(r, head: int) -> list[int]:
    """A timer list's entries; a list never initialized (Flink 0) is empty, and a broken
    link ends the walk."""
    out = []
    entry = r.u64(head)
    while entry and entry != head and len(out) < MAX_QUEUE:
        out.append(entry)
        entry = r.try_u64(entry) or 0
    return out


def timer_table(s, n: int) -> TimerTable:
    r = s.reader
    prcb = prcb_of(s, n)
    table = r.field_addr("_KPRCB", prcb, "TimerTable")
    entry_size = s.target.types.sizeof("_KTIMER_TABLE_ENTRY")
    entries = r.field_addr("_KTIMER_TABLE", table, "TimerEntries")
    link = r.offset("_KTIMER", "TimerListEntry")
    out = TimerTable(n, table)
    for half in range(2):
        for i in range(TIMER_LISTS):
            head = r.field_addr("_KTIMER_TABLE_ENTRY",
                                entries + (half * TIMER_LISTS + i) * entry_size, "Entry")
            for k, e in enumerate(_list(r, head)):
                timer = e - link
                dpc, routine, off, thread = _timer_target(s, timer)
                out.timers.append(TimerRow(i, k == 0, timer, r.field("_KTIMER", timer, "DueTime"),
                                           bool(r.field("_KTIMER", timer, "Period")), dpc,
                                           routine, thread, half, off))
    return out


def kd_time(system_time: int | None) -> str:
    """A system time as kd prints it in brackets: `[ 5/ 5/2023 04:26:25.000]`."""
    if system_time is None or system_time >> 63:
        return "[         NEVER         ]"
    t = EPOCH_1601 + datetime.timedelta(microseconds=system_time // 10)
    return (f"[{t.month:2}/{t.day:2}/{t.year} {t.hour:02}:{t.minute:02}:{t.second:02}."
            f"{t.microsecond // 1000:03}]")


TABLE_TYPES = ("High precision", "Standard")  # kd's names for TimerEntries[0] and [1]
TIMER_HEADER = "List Timer             Interrupt Low/High Fire Time                  DPC/thread"


def timer_target_text(row: TimerRow) -> str:
    """The DPC/thread column: `nt!Routine (DPC @ <KDPC>)`, a displacement after it
    (`+<address>` for a routine outside every module), or `thread <KTHREAD>`; kd ends the
    column with a space."""
    if row.dpc:
        more = f"+{row.displacement:x}" if row.displacement else ""
        return f"{row.routine} (DPC @ {fmt.hex16(row.dpc)}){more} "
    return f"thread {fmt.hex16(row.thread)} " if row.thread else ""


def render_timers(tables: list[TimerTable], now: int, system_now: int | None) -> list[str]:
    def wall(interrupt: int) -> str:
        return kd_time(None if system_now is None else system_now + interrupt - now)

    out = ["Dump system timers", "",
           f"Interrupt time: {now & 0xFFFFFFFF:08x} {now >> 32:08x} {wall(now)}"]
    total, longest, lengths = 0, 0, {}
    for t in tables:
        for kind, name in enumerate(TABLE_TYPES):
            # A _KTIMER_TABLE holds two sets of lists (TimerEntries[0] and [1]), each shown
            # under its own heading.
            out += ["", f"PROCESSOR {t.processor} (nt!_KTIMER_TABLE {fmt.hex16(t.table)} - "
                        f"Type {kind} - {name})", TIMER_HEADER]
            for row in t.timers:
                if row.table_type != kind:
                    continue
                total += 1
                key = (t.processor, kind, row.list_index)
                lengths[key] = lengths.get(key, 0) + 1
                longest = max(longest, lengths[key])
                index = f"{row.list_index:3}" if row.first_in_list else "   "
                line = (f"{index} {fmt.hex16(row.timer)} {'P' if row.periodic else ' '}  "
                        f"{row.due & 0xFFFFFFFF:08x} {row.due >> 32:08x} {wall(row.due)}")
                target = timer_target_text(row)
                out.append(f"{line}  {target}" if target else line)
    out += ["", f"Total Timers: {total}, Maximum List: {longest}"]
    return out


@command("!timer", syntax="!timer",
         help="List the timers in every processor's timer table: due time, periodic flag, "
              "DPC routine or waiting thread.")
def timer_cmd(s, args: str) -> Result:
    tables = [timer_table(s, n) for n in range(processor_count(s))]
    now = interrupt_time(s)
    system_now = shared_time(s, "SystemTime")
    return Result(render_timers(tables, now, system_now),
                  {"interrupt_time": now, "tables": [asdict(t) for t in tables]})
