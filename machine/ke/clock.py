"""The clock interrupt: advances time, expires timers, charges the running thread,
ends quanta, and runs the watchdogs.

The watchdogs keep Windows' rules on a faster, documented scale, so that a hang shows
within seconds of simulated time rather than minutes:

- one DPC running too long (0x133, P1=0): Windows 0x500 ticks (20 s), kdsim 0x14 ticks
  (312.5 ms);
- cumulative time at DISPATCH_LEVEL or above (0x133, P1=1): Windows 0x1e00 ticks
  (120 s), kdsim 0x78 ticks (1.875 s);
- a processor not taking clock interrupts (0x101): kdsim 0x10 ticks (250 ms).

The limits are written to each KPRCB (DpcTimeLimit, DpcWatchdogPeriod) where a debugger
reads them; the running counts are DpcTimeCount and DpcWatchdogCount.
"""

from __future__ import annotations

from machine.ke.native import Call, TrapReturn, routine
from machine.ke.processor import CLOCK_LEVEL, DISPATCH_LEVEL, DPC_VECTOR
from machine.ke.timer import expire_timers
from machine.mm.paging import PageFault
from machine.types.view import Struct

WATCHDOG_SPEEDUP = 64
DPC_TIME_LIMIT = 0x500 // WATCHDOG_SPEEDUP
DPC_WATCHDOG_PERIOD = 0x1E00 // WATCHDOG_SPEEDUP
CLOCK_TIMEOUT_TICKS = 0x10
DPC_WATCHDOG_VIOLATION = 0x133
CLOCK_WATCHDOG_TIMEOUT = 0x101
DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS = 0xCE
TRIAGE_SIGNATURE = 0xAEBECEDE  # DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK_SIGNATURE
TRIAGE_REVISION = 1


def init_watchdogs(m) -> None:
    """Per-processor limits, and the global triage block a 0x133 points at."""
    for proc in m.processors:
        prcb = Struct(m.kspace, "_KPRCB", proc.prcb)
        prcb.set("DpcTimeLimit", DPC_TIME_LIMIT)
        prcb.set("DpcWatchdogPeriod", DPC_WATCHDOG_PERIOD)
    # DPC_WATCHDOG_GLOBAL_TRIAGE_BLOCK: Signature (ULONG), Revision, Size (USHORT),
    # DpcWatchdogProfileOffset (USHORT), DpcWatchdogProfileLength (ULONG).
    block = m.pool.allocate(0, 0x10, "KeDw")
    m.kspace.write(block, TRIAGE_SIGNATURE.to_bytes(4, "little")
                   + TRIAGE_REVISION.to_bytes(2, "little") + (0x10).to_bytes(2, "little"))
    m.dpc_triage_block = block


def publish_time(m) -> None:
    """The clock where Windows keeps it for everyone (and for a debugger): KeTickCount,
    and SharedUserData's TickCountQuad, InterruptTime and SystemTime."""
    from machine.machine import TICK_100NS

    m.kspace.write_u64(m.sym("nt!KeTickCount"), m.tick_count)
    shared = Struct(m.kspace, "_KUSER_SHARED_DATA", m.layout.user_shared_data)
    shared.set("TickCountQuad", m.tick_count)
    for name, value in (("InterruptTime", m.tick_count * TICK_100NS),
                        ("SystemTime", m.system_time())):
        # _KSYSTEM_TIME: High2Time first, then LowPart, then High1Time, as the kernel
        # writes it so that readers can detect a torn read.
        shared.set(f"{name}.High2Time", value >> 32)
        shared.set(f"{name}.LowPart", value & 0xFFFFFFFF)
        shared.set(f"{name}.High1Time", value >> 32)


def advance_tick(m) -> None:
    m.tick_count += 1
    publish_time(m)
    m.run_due_events()


def _watchdog_violation(m, proc, previous_irql: int) -> tuple[int, tuple] | None:
    """Update this processor's DPC watchdog counts; the bugcheck to raise, if any."""
    prcb = Struct(m.kspace, "_KPRCB", proc.prcb)
    if prcb.get("DpcRoutineActive"):
        count = prcb.get("DpcTimeCount") + 1
        prcb.set("DpcTimeCount", count)
        if count >= prcb.get("DpcTimeLimit"):
            return DPC_WATCHDOG_VIOLATION, (0, count, prcb.get("DpcTimeLimit"),
                                            m.dpc_triage_block)
    else:
        prcb.set("DpcTimeCount", 0)
    if previous_irql >= DISPATCH_LEVEL:
        count = prcb.get("DpcWatchdogCount") + 1
        prcb.set("DpcWatchdogCount", count)
        if count >= prcb.get("DpcWatchdogPeriod"):
            return DPC_WATCHDOG_VIOLATION, (1, prcb.get("DpcWatchdogPeriod"),
                                            m.dpc_triage_block, 0)
    else:
        prcb.set("DpcWatchdogCount", 0)
    for other in m.processors:
        if other is not proc and other.clock_missed >= CLOCK_TIMEOUT_TICKS:
            return CLOCK_WATCHDOG_TIMEOUT, (CLOCK_TIMEOUT_TICKS, 0, other.prcb, other.number)
    return None


@routine("KeAccumulateTicks", frame=0x68, size=0x280)
def KeAccumulateTicks(m, proc, a):
    """Charge the tick to the running thread and check the watchdogs.
    (tf: the interrupted context's trap frame)"""
    tf = a[0]
    thread = proc.current
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    trap = Struct(proc.cpu.mem, "_KTRAP_FRAME", tf)
    if trap.get("SegCs") & 1:
        kt.set("UserTime", kt.get("UserTime") + 1)
    else:
        kt.set("KernelTime", kt.get("KernelTime") + 1)
    violation = _watchdog_violation(m, proc, trap.get("PreviousIrql"))
    if violation is not None:
        code, params = violation
        yield Call(m.sym("KeBugCheckEx"), (code, *params), ret=0x1C6)
    return 0


@routine("HalpTimerClockInterrupt", trap=True, size=0x180)
def HalpTimerClockInterrupt(m, proc, frame):
    tf = frame.extra["tf"]
    m.set_irql(proc, CLOCK_LEVEL)
    proc.clock_missed = 0
    if proc.number == 0:
        advance_tick(m)
    try:
        expire_timers(m, proc)
    except PageFault as fault:
        from machine.io.unload import unloaded_image_at

        if unloaded_image_at(m, fault.va) is None:
            raise
        # A timer in the data of a driver that was unloaded without cancelling it: the
        # timer list leads into its unmapped pages.
        yield Call(m.sym("KeBugCheckEx"),
                   (DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS, fault.va,
                    int(fault.write), 0, 0), ret=0x5A)
    yield Call(m.sym("KeAccumulateTicks"), (tf,), ret=0x6B)
    thread = proc.current
    # Quantum end: another thread of at least this priority is waiting to run here.
    if not thread.idle and m.sched.has_ready(proc, thread.priority):
        proc.quantum_end = True
        m.request_interrupt(proc, DPC_VECTOR)
    yield TrapReturn(tf)
