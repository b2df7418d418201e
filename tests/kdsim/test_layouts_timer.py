"""!timer layouts as kd prints them on Windows 10: the interrupt time, then for each
processor two headed tables (`Type 0 - High precision`, `Type 1 - Standard`, the two sets
of lists of its _KTIMER_TABLE), each after a blank line; rows `<list> <KTIMER> <P>  <low>
<high> [fire time]  <DPC routine (DPC @ KDPC) | thread KTHREAD> ` with a trailing space; a
blank line and `Total Timers: n, Maximum List: m` close it."""

from __future__ import annotations

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from machine.machine import STEPS_PER_TICK
from machine.types.view import Struct
from tests.conftest import run
from tests.machine.probe import DELAYED_THREAD_GLOBALS, boot_probe, delayed_thread

HEADER = "List Timer             Interrupt Low/High Fire Time                  DPC/thread"
ROUTINES = {
    **delayed_thread("Idle"),
    "Idle": "    jmp     Idle\n",
    "TimerDpcRoutine": "    nop\n    nop\n    ret\n",
}
ROUTINES["DriverEntry"] = ROUTINES["DriverEntry"].replace("    xor     eax, eax\n", """
    lea     rcx, [Timer2]
    call    nt!KeInitializeTimer
    lea     rcx, [TimerDpc]
    lea     rdx, [TimerDpcRoutine]
    xor     r8d, r8d
    call    nt!KeInitializeDpc
    lea     r9, [TimerDpc]
    mov     r8d, 40
    mov     rdx, -2000000
    lea     rcx, [Timer2]
    call    nt!KeSetTimerEx
    xor     eax, eax
""", 1)
GLOBALS = {**DELAYED_THREAD_GLOBALS, "Timer2": 0x40, "TimerDpc": 0x40}


@pytest.fixture(scope="module")
def timers():
    m = boot_probe("tm", ROUTINES, GLOBALS)
    m.run(STEPS_PER_TICK * 2)
    assert m.bugcheck is None
    return m, Session(LiveTarget(m), processor=0)


def _timer_rows(out: list[str]) -> list[str]:
    return [line for line in out[3:] if line and not line.startswith(("PROCESSOR", "List ",
                                                                       "Total "))]


def test_tables_headings_and_trailer(timers):
    m, s = timers
    out = run(s, "!timer")
    assert out[:2] == ["Dump system timers", ""]
    assert out[2].startswith("Interrupt time: ")
    at = 3
    for proc in m.processors:
        table = Struct(m.kspace, "_KPRCB", proc.prcb).addr("TimerTable")
        for kind, name in ((0, "High precision"), (1, "Standard")):
            at = out.index(f"PROCESSOR {proc.number} (nt!_KTIMER_TABLE {table:016x} - "
                           f"Type {kind} - {name})", at)
            assert out[at - 1] == "" and out[at + 1] == HEADER
    rows = _timer_rows(out)
    assert out[-2:] == ["", f"Total Timers: {len(rows)}, Maximum List: 1"]
    assert not any(line.startswith("Current Hand") for line in out)


def test_rows_read_each_timer(timers):
    m, s = timers
    out = run(s, "!timer")
    waiter = Struct(m.kspace, "_KTIMER", m.sym("tm!Timer"))
    periodic = Struct(m.kspace, "_KTIMER", m.sym("tm!Timer2"))
    dpc = m.sym("tm!TimerDpc")
    block = waiter.get("Header.WaitListHead.Flink")  # KWAIT_BLOCK.WaitListEntry is at +0
    thread = Struct(m.kspace, "_KWAIT_BLOCK", block).get("Thread")
    for timer, flag, target in (
            (waiter, " ", f"thread {thread:016x} "),
            (periodic, "P", f"tm!TimerDpcRoutine (DPC @ {dpc:016x}) ")):
        due = timer.get("DueTime")
        row = next(line for line in out if f" {timer.address:016x} " in line)
        assert row[3:].startswith(f" {timer.address:016x} {flag}  {due & 0xFFFFFFFF:08x} "
                                  f"{due >> 32:08x} [")
        assert row.endswith(f"]  {target}")
        # columns under the heading: timer at 4, interrupt time at 24, fire time at 42
        assert row[4:20] == f"{timer.address:016x}" and row[42] == "[" and row[24] != " "
        assert int(row[:3]) < 256


def test_dpc_routines_off_a_symbol_and_outside_modules(timers):
    m, s = timers
    d = Struct(m.kspace, "_KDPC", m.sym("tm!TimerDpc"))
    routine = d.get("DeferredRoutine")
    try:
        d.set("DeferredRoutine", routine + 2)
        row = next(line for line in run(s, "!timer") if "(DPC @ " in line)
        assert row.endswith(f"]  tm!TimerDpcRoutine (DPC @ {d.address:016x})+2 ")
        d.set("DeferredRoutine", 0x1234)
        row = next(line for line in run(s, "!timer") if "(DPC @ " in line)
        assert row.endswith(f"]   (DPC @ {d.address:016x})+1234 ")
    finally:
        d.set("DeferredRoutine", routine)
