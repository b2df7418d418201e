"""Small Ke services drivers call: spin locks taken at DISPATCH_LEVEL, critical regions,
the processor stall, and the tick count.

- KeAcquireSpinLockAtDpcLevel / KeReleaseSpinLockFromDpcLevel take and free the lock
  word exactly as KeAcquireSpinLockRaiseToDpc / KeReleaseSpinLock do, but never touch
  the IRQL: the caller must already be at DISPATCH_LEVEL or above.  The retail kernel
  does not check it (only Driver Verifier's IRQL checking does, with 0xC4/0x40 and
  0x41, which this machine does not model): called at PASSIVE_LEVEL, the lock is taken
  anyway and the holder can be preempted or deadlock against a DPC.
- KeEnterCriticalRegion / KeLeaveCriticalRegion count down and up the current thread's
  _KTHREAD.KernelApcDisable; leaving the last region with kernel APCs queued (and no
  guarded region open) asks for their delivery, as KiCheckForKernelApcDelivery does.
- KeStallExecutionProcessor busy-waits at the caller's IRQL: the processor spends one
  step per microsecond asked for (a step is one simulated microsecond), so simulated
  time, the clock and the watchdogs move on during the stall exactly as they would
  during a spin loop; interrupts above the IRQL are still taken.
- KeQueryTickCount stores the 64-bit tick count, read from SharedUserData's
  TickCountQuad as the x64 kernel does.
"""

from __future__ import annotations

from machine.ke.apc import KERNEL_MODE, apc_list_head, request_delivery
from machine.ke.irql import spin_acquire
from machine.ke.native import Pause, routine
from machine.types.view import Struct

SPIN_AT = 0x2B  # the `pause` of the acquire's spin loop
STALL_AT = 0x1E  # the `pause` of the stall loop


@routine("KeAcquireSpinLockAtDpcLevel", frame=0x28, size=0x60)
def KeAcquireSpinLockAtDpcLevel(m, proc, a):
    """(SpinLock): acquire at the current IRQL, spinning while it is held."""
    yield from spin_acquire(proc.cpu.mem, a[0], SPIN_AT)
    return 0


@routine("KeReleaseSpinLockFromDpcLevel", frame=0, size=0x20)
def KeReleaseSpinLockFromDpcLevel(m, proc, a):
    """(SpinLock): free the lock; the IRQL stays as it is."""
    proc.cpu.mem.write_u64(a[0], 0)
    return 0


@routine("KeEnterCriticalRegion", frame=0, size=0x20)
def KeEnterCriticalRegion(m, proc, a):
    kt = Struct(m.kspace, "_KTHREAD", proc.current.ethread)
    kt.set("KernelApcDisable", kt.get("KernelApcDisable") - 1)
    return 0


@routine("KeLeaveCriticalRegion", frame=0x28, size=0x60)
def KeLeaveCriticalRegion(m, proc, a):
    thread = proc.current
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    count = kt.get("KernelApcDisable") + 1
    kt.set("KernelApcDisable", count)
    head = apc_list_head(m, thread.ethread, KERNEL_MODE)
    if count == 0 and m.kspace.read_u64(head) != head and kt.get("SpecialApcDisable") == 0:
        kt.set("ApcState.KernelApcPending", 1)
        request_delivery(m, thread)  # taken once the IRQL is below APC_LEVEL
    return 0


@routine("KeStallExecutionProcessor", frame=0x28, size=0x40)
def KeStallExecutionProcessor(m, proc, a):
    """(MicroSeconds): spin here for that many steps."""
    for _ in range(a[0] & 0xFFFFFFFF):
        yield Pause(at=STALL_AT)
    return 0


@routine("KeQueryTickCount", frame=0, size=0x20)
def KeQueryTickCount(m, proc, a):
    """(CurrentCount: PLARGE_INTEGER)"""
    shared = Struct(m.kspace, "_KUSER_SHARED_DATA", m.layout.user_shared_data)
    proc.cpu.mem.write_u64(a[0], shared.get("TickCountQuad"))
    return 0
