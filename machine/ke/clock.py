"""The clock interrupt: advances time, charges the running thread, ends quanta."""

from __future__ import annotations

from machine.ke.native import TrapReturn, routine
from machine.ke.processor import CLOCK_LEVEL, DPC_VECTOR
from machine.ke.timer import expire_timers
from machine.types.view import Struct


def advance_tick(m) -> None:
    m.tick_count += 1
    m.kspace.write_u64(m.sym("nt!KeTickCount"), m.tick_count)
    Struct(m.kspace, "_KUSER_SHARED_DATA", m.layout.user_shared_data).set(
        "TickCountQuad", m.tick_count)
    m.run_due_events()


@routine("HalpTimerClockInterrupt", trap=True, size=0x180)
def HalpTimerClockInterrupt(m, proc, frame):
    tf = frame.extra["tf"]
    m.set_irql(proc, CLOCK_LEVEL)
    if proc.number == 0:
        advance_tick(m)
    expire_timers(m, proc)
    thread = proc.current
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    trap = Struct(proc.cpu.mem, "_KTRAP_FRAME", tf)
    if trap.get("SegCs") & 1:
        kt.set("UserTime", kt.get("UserTime") + 1)
    else:
        kt.set("KernelTime", kt.get("KernelTime") + 1)
    # Quantum end: another thread of at least this priority is waiting to run here.
    if not thread.idle and m.sched.has_ready(proc, thread.priority):
        proc.quantum_end = True
        m.request_interrupt(proc, DPC_VECTOR)
    yield TrapReturn(tf)
