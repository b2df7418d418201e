"""Device interrupts: `_KINTERRUPT` objects that drivers connect (IoConnectInterrupt),
found through `_KPRCB.InterruptObject[vector]` (shared vectors chained through
InterruptListEntry), dispatched from the IDT through nt!KiIsrThunk — one 8-byte thunk
per vector — to each connected ISR at the interrupt's IRQL."""

from __future__ import annotations

from machine.ke.idt import read_gate, write_gate
from machine.ke.native import Call, TrapReturn, routine
from machine.rtl.lists import initialize_list_head, insert_tail_list
from machine.types.view import Struct

ISR_THUNK_SIZE = 8
INTERRUPT_OBJECT = 0x16  # _KOBJECTS InterruptObject
STATUS_SUCCESS = 0
STATUS_INVALID_PARAMETER = 0xC000000D


def thunk(m, vector: int) -> int:
    return m.native_base["KiIsrThunk"] + vector * ISR_THUNK_SIZE


def install_thunks(m) -> None:
    """Every vector's thunk enters the same routine, which tells vectors apart by rip."""
    spec = m.natives[m.native_base["KiIsrThunk"]]
    for vector in range(256):
        m.natives[thunk(m, vector)] = spec


def connect(m, interrupt: int, processors: list) -> bool:
    k = Struct(m.kspace, "_KINTERRUPT", interrupt)
    vector = k.get("Vector")
    for proc in processors:
        prcb = Struct(m.kspace, "_KPRCB", proc.prcb)
        slot = f"InterruptObject[{vector}]"
        first = prcb.get(slot)
        gate = read_gate(m.kspace, proc.idt, vector)
        if first:
            if not (k.get("ShareVector") and Struct(m.kspace, "_KINTERRUPT", first).get(
                    "ShareVector")):
                return False
            insert_tail_list(m.kspace, Struct(m.kspace, "_KINTERRUPT", first).addr(
                "InterruptListEntry"), k.addr("InterruptListEntry"))
        elif gate is not None and gate != thunk(m, vector):
            return False  # the vector belongs to something else
        else:
            prcb.set(slot, interrupt)
            write_gate(m.kspace, proc.idt, vector, thunk(m, vector))
    k.set("Connected", 1)
    return True


@routine("IoConnectInterrupt", frame=0x88, size=0x300)
def IoConnectInterrupt(m, proc, a):
    """(InterruptObject*, ServiceRoutine, ServiceContext, SpinLock, Vector, Irql,
    SynchronizeIrql, InterruptMode, ShareVector, ProcessorEnableMask, FloatingSave)"""
    size = m.catalog.get("_KINTERRUPT").size
    interrupt = m.pool.allocate(0, size, "Intr")
    k = Struct(m.kspace, "_KINTERRUPT", interrupt)
    k.set("Type", INTERRUPT_OBJECT)
    k.set("Size", size)
    initialize_list_head(m.kspace, k.addr("InterruptListEntry"))
    k.set("ServiceRoutine", a[1])
    k.set("ServiceContext", a[2])
    k.set("ActualLock", a[3] or k.addr("SpinLock"))
    k.set("Vector", a[4] & 0xFF)
    k.set("Irql", a[5] & 0xF)
    k.set("SynchronizeIrql", a[6] & 0xF)
    k.set("Mode", a[7] & 1)
    k.set("ShareVector", a[8] & 1)
    k.set("DispatchAddress", m.sym("nt!KiInterruptDispatch"))
    mask = a[9] or (1 << len(m.processors)) - 1
    targets = [p for p in m.processors if mask >> p.number & 1]
    if not targets or not connect(m, interrupt, targets):
        return STATUS_INVALID_PARAMETER
    proc.cpu.mem.write_u64(a[0], interrupt)
    return STATUS_SUCCESS


@routine("KiIsrThunk", trap=True, size=256 * ISR_THUNK_SIZE)
def KiIsrThunk(m, proc, frame):
    """Entered through a device vector's gate: pass to KiInterruptDispatch."""
    tf = frame.extra["tf"]
    vector = (frame.extra["entry"] - m.native_base["KiIsrThunk"]) // ISR_THUNK_SIZE
    yield Call(m.sym("KiInterruptDispatch"), (vector, tf), ret=0x7)
    yield TrapReturn(tf)


@routine("KiInterruptDispatch", frame=0x98, size=0x300)
def KiInterruptDispatch(m, proc, a):
    """(Vector, TrapFrame): run each ISR connected to the vector at its IRQL, until one
    claims the interrupt."""
    vector = a[0]
    first = Struct(m.kspace, "_KPRCB", proc.prcb).get(f"InterruptObject[{vector}]")
    if not first:
        return 0
    objects = [first]
    head = Struct(m.kspace, "_KINTERRUPT", first).addr("InterruptListEntry")
    entry = m.kspace.read_u64(head)
    off = Struct(m.kspace, "_KINTERRUPT", 0).offset("InterruptListEntry")
    while entry != head:
        objects.append(entry - off)
        entry = m.kspace.read_u64(entry)
    prcb = Struct(m.kspace, "_KPRCB", proc.prcb)
    prcb.set("InterruptCount", prcb.get("InterruptCount") + 1)
    for interrupt in objects:
        k = Struct(m.kspace, "_KINTERRUPT", interrupt)
        m.set_irql(proc, max(proc.irql, k.get("SynchronizeIrql")))
        claimed = yield Call(k.get("ServiceRoutine"), (interrupt, k.get("ServiceContext")),
                             ret=0x1D4)
        k.set("ServiceCount", k.get("ServiceCount") + 1)
        if claimed & 0xFF:
            break
    return 0
