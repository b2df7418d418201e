"""IRQL services and spin locks (x64: the IRQL is CR8)."""

from __future__ import annotations

from machine.ke.native import Pause, routine
from machine.ke.processor import DISPATCH_LEVEL, SYNCH_LEVEL


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
    space = proc.cpu.mem
    while space.read_u64(a[0]) & 1:  # held elsewhere: spin, one step at a time
        yield Pause(at=0x3B)
    space.write_u64(a[0], 1)
    return old


@routine("KeReleaseSpinLock", frame=0x28, size=0x60)
def KeReleaseSpinLock(m, proc, a):
    proc.cpu.mem.write_u64(a[0], 0)
    m.set_irql(proc, a[1] & 0xF)
    return 0
