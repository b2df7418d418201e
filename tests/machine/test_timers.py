"""Kernel timers in the processor's timer table: due times, DPCs, periodic re-arming."""

from __future__ import annotations

from machine.ke.timer import bucket_head
from machine.machine import STEPS_PER_TICK, TICK_100NS
from machine.types.view import Struct
from tests.machine.probe import boot_probe

ROUTINES = {
    "DriverEntry": """
    sub     rsp, 28h
    lea     rcx, [Timer]
    xor     edx, edx                ; NotificationTimer
    call    nt!KeInitializeTimerEx
    lea     rcx, [TimerDpc]
    lea     rdx, [TimerDpcRoutine]
    xor     r8d, r8d
    call    nt!KeInitializeDpc
    lea     r9, [TimerDpc]
    mov     r8d, 50                 ; period: 50 ms
    mov     rdx, -1000000           ; due in 100 ms (relative)
    lea     rcx, [Timer]
    call    nt!KeSetTimerEx
    xor     eax, eax
    add     rsp, 28h
    ret
""",
    "TimerDpcRoutine": """
    mov     rax, cr8
    mov     qword ptr [DpcIrql], rax
    lock inc qword ptr [Fired]
    ret
""",
}
GLOBALS = {"Timer": 0x40, "TimerDpc": 0x40, "Fired": 8, "DpcIrql": 8}


def test_a_periodic_timer_sits_in_the_timer_table_and_fires_its_dpc():
    m = boot_probe("tick", ROUTINES, GLOBALS, cpus=2)
    timer = Struct(m.kspace, "_KTIMER", m.sym("tick!Timer"))
    due = timer.get("DueTime")
    proc = m.processors[timer.get("Processor")]
    assert timer.get("Period") == 50 and timer.get("Dpc") == m.sym("tick!TimerDpc")
    head = bucket_head(m, proc, due)
    assert m.kspace.read_u64(head) == timer.addr("TimerListEntry")
    assert m.kspace.read_u64(m.sym("tick!Fired")) == 0
    # 100 ms then every 50 ms: over 400 ms (25.6 ticks) it fires 7 times
    m.run(STEPS_PER_TICK * 26)
    fired = m.kspace.read_u64(m.sym("tick!Fired"))
    elapsed = m.tick_count * TICK_100NS - (due - 1_000_000)
    assert fired == 1 + (elapsed - 1_000_000) // 500_000
    assert fired >= 6
    assert m.kspace.read_u64(m.sym("tick!DpcIrql")) == 2
    assert timer.get("DueTime") > m.tick_count * TICK_100NS  # re-armed for the next period
