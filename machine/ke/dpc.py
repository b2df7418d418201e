"""DPCs: per-processor queues in the KPRCB, drained at DISPATCH_LEVEL by the DPC
software interrupt (vector 0x2f) when a processor's IRQL drops below it."""

from __future__ import annotations

from machine.ke.native import Call, TrapReturn, routine
from machine.ke.processor import DISPATCH_LEVEL, DPC_VECTOR
from machine.types.view import Struct

DPC_NORMAL = 0x13  # DpcObject


@routine("KeInitializeDpc", frame=0, size=0x40)
def KeInitializeDpc(m, proc, a):
    d = Struct(proc.cpu.mem, "_KDPC", a[0])
    d.set("Type", DPC_NORMAL)
    d.set("Importance", 1)
    d.set("DeferredRoutine", a[1])
    d.set("DeferredContext", a[2])
    return 0


def queue_dpc(m, target, dpc: int, arg1: int, arg2: int) -> bool:
    d = Struct(m.kspace, "_KDPC", dpc)
    if d.get("DpcData"):
        return False  # already queued
    data = Struct(m.kspace, "_KPRCB", target.prcb).addr("DpcData")
    dd = Struct(m.kspace, "_KDPC_DATA", data)
    d.set("SystemArgument1", arg1)
    d.set("SystemArgument2", arg2)
    d.set("DpcData", data)
    entry = d.addr("DpcListEntry")
    m.kspace.write_u64(entry, 0)
    last = dd.get("DpcList.LastEntry")
    if last:
        m.kspace.write_u64(last, entry)
    else:
        dd.set("DpcList.ListHead.Next", entry)
    dd.set("DpcList.LastEntry", entry)
    dd.set("DpcQueueDepth", dd.get("DpcQueueDepth") + 1)
    dd.set("DpcCount", dd.get("DpcCount") + 1)
    m.request_interrupt(target, DPC_VECTOR)
    return True


@routine("KeInsertQueueDpc", frame=0x58, size=0x200)
def KeInsertQueueDpc(m, proc, a):
    # Targeted DPCs (KeSetTargetProcessorDpc) come with the complete machine; a DPC
    # is queued to the processor that inserts it.
    return int(queue_dpc(m, proc, a[0], a[1], a[2]))


def pop_dpc(m, proc) -> int | None:
    data = Struct(m.kspace, "_KPRCB", proc.prcb).addr("DpcData")
    dd = Struct(m.kspace, "_KDPC_DATA", data)
    entry = dd.get("DpcList.ListHead.Next")
    if not entry:
        return None
    nxt = m.kspace.read_u64(entry)
    dd.set("DpcList.ListHead.Next", nxt)
    if not nxt:
        dd.set("DpcList.LastEntry", 0)
    dd.set("DpcQueueDepth", dd.get("DpcQueueDepth") - 1)
    dpc = entry - 8  # DpcListEntry is at +0x8 of _KDPC
    Struct(m.kspace, "_KDPC", dpc).set("DpcData", 0)
    return dpc


@routine("KiRetireDpcList", frame=0x98, size=0x800)
def KiRetireDpcList(m, proc, a):
    prcb = Struct(m.kspace, "_KPRCB", proc.prcb)
    while (dpc := pop_dpc(m, proc)) is not None:
        d = Struct(m.kspace, "_KDPC", dpc)
        prcb.set("DpcRoutineActive", 1)
        yield Call(d.get("DeferredRoutine"), (dpc, d.get("DeferredContext"),
                                              d.get("SystemArgument1"),
                                              d.get("SystemArgument2")), ret=0x51E)
        prcb.set("DpcRoutineActive", 0)
    return 0


@routine("KiDispatchInterrupt", frame=0x58, size=0x200)
def KiDispatchInterrupt(m, proc, a):
    yield Call(m.sym("KiRetireDpcList"), (proc.prcb,), ret=0x7A)
    if proc.quantum_end or proc.preempt:
        # Quantum end yields to an equal priority; preemption only to a higher one.
        minimum = proc.current.priority + (0 if proc.quantum_end else 1)
        proc.quantum_end = proc.preempt = False
        old = proc.current
        if not old.idle:
            new = m.next_ready(proc, minimum)
            if new is not None:
                m.make_ready(old)
                yield Call(m.sym("KiSwapContext"), (old.ethread, new.ethread), ret=0x118)
    return 0


@routine("KiDpcInterrupt", trap=True, size=0x200)
def KiDpcInterrupt(m, proc, frame):
    tf = frame.extra["tf"]
    m.set_irql(proc, DISPATCH_LEVEL)
    yield Call(m.sym("KiDispatchInterrupt"), (), ret=0xF0)
    yield TrapReturn(tf)
