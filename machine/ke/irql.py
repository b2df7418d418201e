"""IRQL services and spin locks (x64: the IRQL is CR8)."""

from __future__ import annotations

from machine.ke.native import Pause, routine
from machine.ke.processor import DISPATCH_LEVEL, SYNCH_LEVEL
from machine.types.view import Struct


def raise_irql(m, proc, new: int) -> int:
    old = proc.irql
    m.set_irql(proc, new)
    return old


@routine("KeGetCurrentIrql", frame=0, size=0x10)
def KeGetCurrentIrql(m, proc, a):
    return proc.irql


@routine("KeRaiseIrqlToDpcLevel", frame=0, size=0x20)
def KeRaiseIrqlToDpcLevel(m, proc, a):
    return raise_irql(m, proc, DISPATCH_LEVEL)


@routine("KeRaiseIrqlToSynchLevel", frame=0, size=0x20)
def KeRaiseIrqlToSynchLevel(m, proc, a):
    return raise_irql(m, proc, SYNCH_LEVEL)


@routine("KeLowerIrql", frame=0, size=0x20)
def KeLowerIrql(m, proc, a):
    m.set_irql(proc, a[0] & 0xF)
    return 0


@routine("KeAcquireSpinLockRaiseToDpc", frame=0x28, size=0x80)
def KeAcquireSpinLockRaiseToDpc(m, proc, a):
    old = raise_irql(m, proc, DISPATCH_LEVEL)
    yield from spin_acquire(proc.cpu.mem, a[0], 0x3B)
    return old


def spin_acquire(space, lock: int, spin_at: int):
    """Take a spin lock's word, spinning (one `pause` step at a time, at the routine's
    offset spin_at) while another processor holds it."""
    while space.read_u64(lock) & 1:
        yield Pause(at=spin_at)
    space.write_u64(lock, 1)


@routine("KeReleaseSpinLock", frame=0x28, size=0x60)
def KeReleaseSpinLock(m, proc, a):
    proc.cpu.mem.write_u64(a[0], 0)
    m.set_irql(proc, a[1] & 0xF)
    return 0


# In-stack queued spin locks: the lock holds the address of the last waiter's
# _KSPIN_LOCK_QUEUE; each waiter spins on its own entry until its predecessor hands the
# lock over, so waiters get the lock in arrival order.
LOCK_QUEUE_WAIT = 1
LOCK_QUEUE_OWNER = 2


@routine("KeAcquireInStackQueuedSpinLock", frame=0x38, size=0x100)
def KeAcquireInStackQueuedSpinLock(m, proc, a):
    """(SpinLock, LockHandle)"""
    space = proc.cpu.mem
    lock, handle = a[0], a[1]
    h = Struct(space, "_KLOCK_QUEUE_HANDLE", handle)
    h.set("OldIrql", raise_irql(m, proc, DISPATCH_LEVEL))
    h.set("LockQueue.Next", 0)
    h.set("LockQueue.Lock", lock)
    previous = space.read_u64(lock)
    space.write_u64(lock, handle)  # we are the new tail
    if previous:
        h.set("LockQueue.Lock", lock | LOCK_QUEUE_WAIT)
        Struct(space, "_KSPIN_LOCK_QUEUE", previous).set("Next", handle)
        while h.get("LockQueue.Lock") & LOCK_QUEUE_WAIT:
            yield Pause(at=0x4F)
    h.set("LockQueue.Lock", lock | LOCK_QUEUE_OWNER)
    return 0


@routine("KeReleaseInStackQueuedSpinLock", frame=0x28, size=0x100)
def KeReleaseInStackQueuedSpinLock(m, proc, a):
    """(LockHandle)"""
    space = proc.cpu.mem
    h = Struct(space, "_KLOCK_QUEUE_HANDLE", a[0])
    lock = h.get("LockQueue.Lock") & ~(LOCK_QUEUE_WAIT | LOCK_QUEUE_OWNER)
    nxt = h.get("LockQueue.Next")
    if nxt:
        successor = Struct(space, "_KSPIN_LOCK_QUEUE", nxt)
        successor.set("Lock", successor.get("Lock") & ~LOCK_QUEUE_WAIT)
    elif space.read_u64(lock) == a[0]:
        space.write_u64(lock, 0)  # no one waiting: the lock is free
    h.set("LockQueue.Lock", lock)
    m.set_irql(proc, h.get("OldIrql"))
    return 0
