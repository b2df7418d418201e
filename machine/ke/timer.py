"""Kernel timers: `_KTIMER`s hashed by due tick into the setting processor's
`KPRCB.TimerTable.TimerEntries[0][...]` lists; each clock tick expires the bucket of
that tick: the timer is signaled (waking its waiters), its DPC is queued, and a
periodic timer goes back in.  Due times are in 100 ns units: negative = relative,
positive = absolute system time, as KeSetTimerEx takes them."""

from __future__ import annotations

from machine.ke.dpc import queue_dpc
from machine.ke.native import routine
from machine.ke.wait import init_header, signal_waiters
from machine.rtl.lists import initialize_list_head, insert_tail_list, remove_entry_list
from machine.types.view import Struct

TIMER_BUCKETS = 256
TIMER_NOTIFICATION, TIMER_SYNCHRONIZATION = 8, 9
MS_100NS = 10_000


def interrupt_time(m) -> int:
    """Time since boot in 100 ns units, as the clock keeps it (one tick per 15.625 ms)."""
    from machine.machine import TICK_100NS

    return m.tick_count * TICK_100NS


def bucket_head(m, proc, due: int) -> int:
    from machine.machine import TICK_100NS

    # the bucket of the first tick at or after the due time, the tick that expires it
    index = ((due + TICK_100NS - 1) // TICK_100NS) % TIMER_BUCKETS
    prcb = Struct(m.kspace, "_KPRCB", proc.prcb)
    return prcb.addr(f"TimerTable.TimerEntries[0][{index}].Entry")


def init_timer_table(m, proc) -> None:
    for i in range(TIMER_BUCKETS):
        head = Struct(m.kspace, "_KPRCB", proc.prcb).addr(f"TimerTable.TimerEntries[0][{i}].Entry")
        initialize_list_head(m.kspace, head)


def _inserted(m, timer: int) -> bool:
    entry = Struct(m.kspace, "_KTIMER", timer).addr("TimerListEntry")
    flink = m.kspace.read_u64(entry)
    return flink not in (0, entry)


def cancel(m, timer: int) -> bool:
    t = Struct(m.kspace, "_KTIMER", timer)
    if not _inserted(m, timer):
        return False
    entry = t.addr("TimerListEntry")
    remove_entry_list(m.kspace, entry)
    initialize_list_head(m.kspace, entry)
    return True


def set_timer(m, proc, timer: int, due_time: int, period_ms: int, dpc: int) -> bool:
    from machine.machine import BOOT_SYSTEM_TIME

    was_set = cancel(m, timer)
    due_time &= 0xFFFFFFFFFFFFFFFF
    if due_time >> 63:  # relative
        due = interrupt_time(m) + ((1 << 64) - due_time)
    else:
        due = max(due_time - BOOT_SYSTEM_TIME, interrupt_time(m))
    t = Struct(m.kspace, "_KTIMER", timer)
    t.set("Dpc", dpc)
    t.set("Period", period_ms)
    t.set("Processor", proc.number)
    t.set("Header.SignalState", 0)
    insert_timer(m, proc, timer, due)
    return was_set


def insert_timer(m, proc, timer: int, due: int) -> None:
    t = Struct(m.kspace, "_KTIMER", timer)
    t.set("DueTime", due)
    insert_tail_list(m.kspace, bucket_head(m, proc, due), t.addr("TimerListEntry"))


def expire_timers(m, proc) -> None:
    """Run from the clock interrupt on each processor after time advanced."""
    now = interrupt_time(m)
    head = bucket_head(m, proc, now)
    entry = m.kspace.read_u64(head)
    off = Struct(m.kspace, "_KTIMER", 0).offset("TimerListEntry")
    while entry != head:
        nxt = m.kspace.read_u64(entry)
        timer = entry - off
        t = Struct(m.kspace, "_KTIMER", timer)
        if t.get("DueTime") <= now:
            remove_entry_list(m.kspace, entry)
            initialize_list_head(m.kspace, entry)
            t.set("Header.SignalState", 1)
            signal_waiters(m, timer)
            dpc = t.get("Dpc")
            if dpc:
                queue_dpc(m, proc, dpc, now & 0xFFFFFFFF, now >> 32)
            period = t.get("Period")
            if period:  # periods count from the due time, so a periodic timer never drifts
                insert_timer(m, proc, timer, t.get("DueTime") + period * MS_100NS)
        entry = nxt


def initialize_timer(m, space, timer: int, kind: int) -> None:
    init_header(space, timer, kind, m.catalog.get("_KTIMER").size, 0)
    initialize_list_head(space, Struct(space, "_KTIMER", timer).addr("TimerListEntry"))


@routine("KeInitializeTimerEx", frame=0x28, size=0x80)
def KeInitializeTimerEx(m, proc, a):
    """(Timer, Type): 0 NotificationTimer, 1 SynchronizationTimer."""
    kind = TIMER_SYNCHRONIZATION if a[1] & 0xFF else TIMER_NOTIFICATION
    initialize_timer(m, proc.cpu.mem, a[0], kind)
    return 0


@routine("KeInitializeTimer", frame=0x28, size=0x40)
def KeInitializeTimer(m, proc, a):
    initialize_timer(m, proc.cpu.mem, a[0], TIMER_NOTIFICATION)
    return 0


@routine("KeSetTimerEx", frame=0x58, size=0x200)
def KeSetTimerEx(m, proc, a):
    """(Timer, DueTime, Period in ms, Dpc) -> TRUE if the timer was already set."""
    return int(set_timer(m, proc, a[0], a[1], a[2] & 0xFFFFFFFF, a[3]))


@routine("KeSetTimer", frame=0x48, size=0x100)
def KeSetTimer(m, proc, a):
    """(Timer, DueTime, Dpc)"""
    return int(set_timer(m, proc, a[0], a[1], 0, a[2]))


@routine("KeCancelTimer", frame=0x28, size=0x80)
def KeCancelTimer(m, proc, a):
    return int(cancel(m, a[0]))
