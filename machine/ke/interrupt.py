"""Device interrupts: `_KINTERRUPT` objects that drivers connect (IoConnectInterrupt),
found through `_KPRCB.InterruptObject[vector]` (shared vectors chained through
InterruptListEntry), dispatched from the IDT through nt!KiIsrThunk — one 8-byte thunk
per vector — to each connected ISR at the interrupt's IRQL, holding the interrupt spin
lock that KeSynchronizeExecution also takes.

IoConnectInterrupt makes one `_KINTERRUPT` per processor in the enable mask (a shared
vector chains each processor's objects separately), in one pool block: a 0x10-byte
prefix holding the count, then the objects; the driver gets the first.

Interrupt storms: a level-sensitive vector that no ISR claims is counted in the first
object's DispatchCount while it keeps arriving within a clock tick of the last time
(TickCount); at STORM_THRESHOLD the kernel raises HARDWARE_INTERRUPT_STORM (0xF2).  The
threshold is the simulator's own; Windows does not document its value."""

from __future__ import annotations

from machine.ke.idt import read_gate, write_gate
from machine.ke.native import Call, Pause, TrapReturn, routine
from machine.rtl.lists import initialize_list_head, insert_tail_list, remove_entry_list
from machine.types.view import Struct

ISR_THUNK_SIZE = 8
INTERRUPT_OBJECT = 0x16  # _KOBJECTS InterruptObject
STATUS_SUCCESS = 0
STATUS_INVALID_PARAMETER = 0xC000000D
LEVEL_SENSITIVE, LATCHED = 0, 1  # _KINTERRUPT_MODE
CONNECTION_PREFIX = 0x10
INTERRUPT_TAG = 0x72746E49  # 'Intr'
STORM_THRESHOLD = 0x80
HARDWARE_INTERRUPT_STORM = 0xF2
IRQL_NOT_GREATER_OR_EQUAL = 0x9


def thunk(m, vector: int) -> int:
    return m.native_base["KiIsrThunk"] + vector * ISR_THUNK_SIZE


def install_thunks(m) -> None:
    """Every vector's thunk enters the same routine, which tells vectors apart by rip."""
    spec = m.natives[m.native_base["KiIsrThunk"]]
    for vector in range(256):
        m.natives[thunk(m, vector)] = spec


def chain(m, first: int) -> list[int]:
    """The interrupt objects on one processor's vector, the first one first."""
    objects = [first]
    off = Struct(m.kspace, "_KINTERRUPT", 0).offset("InterruptListEntry")
    head = first + off
    entry = m.kspace.read_u64(head)
    while entry != head:
        objects.append(entry - off)
        entry = m.kspace.read_u64(entry)
    return objects


def connection_objects(m, first: int) -> list[int]:
    """Every per-processor object of the connection whose first object is `first`."""
    count = m.kspace.read_u64(first - CONNECTION_PREFIX)
    size = m.catalog.get("_KINTERRUPT").size
    return [first + i * size for i in range(count)]


def connect(m, interrupt: int, proc) -> bool:
    k = Struct(m.kspace, "_KINTERRUPT", interrupt)
    vector = k.get("Vector")
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


def disconnect(m, interrupt: int) -> None:
    k = Struct(m.kspace, "_KINTERRUPT", interrupt)
    if not k.get("Connected"):
        return
    proc = m.processors[k.get("Number")]
    prcb = Struct(m.kspace, "_KPRCB", proc.prcb)
    slot = f"InterruptObject[{k.get('Vector')}]"
    entry = k.addr("InterruptListEntry")
    if prcb.get(slot) == interrupt:
        successor = m.kspace.read_u64(entry)
        off = k.offset("InterruptListEntry")
        # The next object on the chain becomes the first; the gate stays on the thunk,
        # which finds no object for an interrupt that arrives now.
        prcb.set(slot, 0 if successor == entry else successor - off)
    remove_entry_list(m.kspace, entry)
    initialize_list_head(m.kspace, entry)
    k.set("Connected", 0)


def acquire_interrupt_lock(m, proc, interrupt: int, at: int):
    """Spin (at offset `at` of the calling routine) until the interrupt's lock is ours."""
    space = proc.cpu.mem
    lock = Struct(space, "_KINTERRUPT", interrupt).get("ActualLock")
    while space.read_u64(lock) & 1:
        yield Pause(at=at)
    space.write_u64(lock, 1)


def release_interrupt_lock(m, proc, interrupt: int) -> None:
    proc.cpu.mem.write_u64(Struct(proc.cpu.mem, "_KINTERRUPT", interrupt).get("ActualLock"), 0)


@routine("IoConnectInterrupt", frame=0x88, size=0x300)
def IoConnectInterrupt(m, proc, a):
    """(InterruptObject*, ServiceRoutine, ServiceContext, SpinLock, Vector, Irql,
    SynchronizeIrql, InterruptMode, ShareVector, ProcessorEnableMask, FloatingSave)"""
    mask = a[9] or (1 << len(m.processors)) - 1
    targets = [p for p in m.processors if mask >> p.number & 1]
    if not targets or a[6] & 0xF < a[5] & 0xF:
        return STATUS_INVALID_PARAMETER
    size = m.catalog.get("_KINTERRUPT").size
    block = m.pool.allocate(0, CONNECTION_PREFIX + size * len(targets), "Intr")
    m.kspace.write_u64(block, len(targets))
    objects = [block + CONNECTION_PREFIX + i * size for i in range(len(targets))]
    for interrupt, target in zip(objects, targets, strict=True):
        k = Struct(m.kspace, "_KINTERRUPT", interrupt)
        k.set("Type", INTERRUPT_OBJECT)
        k.set("Size", size)
        initialize_list_head(m.kspace, k.addr("InterruptListEntry"))
        k.set("ServiceRoutine", a[1])
        k.set("ServiceContext", a[2])
        # One lock for the whole connection: the caller's, or the first object's own.
        k.set("ActualLock", a[3] or objects[0] + k.offset("SpinLock"))
        k.set("Vector", a[4] & 0xFF)
        k.set("Irql", a[5] & 0xF)
        k.set("SynchronizeIrql", a[6] & 0xF)
        k.set("Mode", a[7] & 1)
        k.set("ShareVector", a[8] & 1)
        k.set("Number", target.number)
        k.set("FloatingSave", a[10] & 1)
        k.set("DispatchAddress", m.sym("nt!KiInterruptDispatch"))
    for interrupt, target in zip(objects, targets, strict=True):
        if not connect(m, interrupt, target):
            for done in objects:
                disconnect(m, done)
            return STATUS_INVALID_PARAMETER
    proc.cpu.mem.write_u64(a[0], objects[0])
    return STATUS_SUCCESS


@routine("IoDisconnectInterrupt", frame=0x38, size=0x140)
def IoDisconnectInterrupt(m, proc, a):
    """(InterruptObject): every processor's object leaves its chain; the block is freed."""
    first = a[0]
    for interrupt in connection_objects(m, first):
        disconnect(m, interrupt)
    yield Call(m.sym("ExFreePoolWithTag"), (first - CONNECTION_PREFIX, INTERRUPT_TAG),
               ret=0x9E)
    return 0


@routine("KeSynchronizeExecution", frame=0x48, size=0x100)
def KeSynchronizeExecution(m, proc, a):
    """(Interrupt, SynchronizeRoutine, SynchronizeContext) -> the routine's BOOLEAN, run
    at the interrupt's SynchronizeIrql holding its spin lock, so no ISR of that interrupt
    runs meanwhile on any processor."""
    k = Struct(m.kspace, "_KINTERRUPT", a[0])
    old = proc.irql
    sync = k.get("SynchronizeIrql")
    if old > sync:
        yield Call(m.sym("KeBugCheckEx"), (IRQL_NOT_GREATER_OR_EQUAL, old, sync, 0, 0),
                   ret=0x2A)
    m.set_irql(proc, sync)
    yield from acquire_interrupt_lock(m, proc, a[0], at=0x45)
    result = yield Call(a[1], (a[2],), ret=0x6C)
    proc = m.processor_of(proc.current)
    release_interrupt_lock(m, proc, a[0])
    m.set_irql(proc, old)
    return result & 0xFF


@routine("KeAcquireInterruptSpinLock", frame=0x28, size=0x80)
def KeAcquireInterruptSpinLock(m, proc, a):
    """(Interrupt) -> the previous IRQL."""
    old = proc.irql
    sync = Struct(m.kspace, "_KINTERRUPT", a[0]).get("SynchronizeIrql")
    if old > sync:
        yield Call(m.sym("KeBugCheckEx"), (IRQL_NOT_GREATER_OR_EQUAL, old, sync, 0, 0),
                   ret=0x22)
    m.set_irql(proc, sync)
    yield from acquire_interrupt_lock(m, proc, a[0], at=0x3D)
    return old


@routine("KeReleaseInterruptSpinLock", frame=0x28, size=0x40)
def KeReleaseInterruptSpinLock(m, proc, a):
    """(Interrupt, OldIrql)"""
    release_interrupt_lock(m, proc, a[0])
    m.set_irql(proc, a[1] & 0xF)
    return 0


@routine("KiIsrThunk", trap=True, size=256 * ISR_THUNK_SIZE)
def KiIsrThunk(m, proc, frame):
    """Entered through a device vector's gate: pass to KiInterruptDispatch, then end the
    interrupt (a level-sensitive line still asserted comes straight back)."""
    from machine.hal.devices import end_of_interrupt

    tf = frame.extra["tf"]
    vector = (frame.extra["entry"] - m.native_base["KiIsrThunk"]) // ISR_THUNK_SIZE
    yield Call(m.sym("KiInterruptDispatch"), (vector, tf), ret=0x7)
    end_of_interrupt(m, proc, vector)
    yield TrapReturn(tf)


@routine("KiInterruptDispatch", frame=0x98, size=0x300)
def KiInterruptDispatch(m, proc, a):
    """(Vector, TrapFrame): run each ISR connected to the vector at its IRQL, holding
    its interrupt lock, until one claims the interrupt."""
    vector = a[0]
    first = Struct(m.kspace, "_KPRCB", proc.prcb).get(f"InterruptObject[{vector}]")
    if not first:
        return 0
    objects = chain(m, first)
    prcb = Struct(m.kspace, "_KPRCB", proc.prcb)
    prcb.set("InterruptCount", prcb.get("InterruptCount") + 1)
    claimed = 0
    for interrupt in objects:
        k = Struct(m.kspace, "_KINTERRUPT", interrupt)
        m.set_irql(proc, max(proc.irql, k.get("SynchronizeIrql")))
        yield from acquire_interrupt_lock(m, proc, interrupt, at=0x1A0)
        claimed = yield Call(k.get("ServiceRoutine"), (interrupt, k.get("ServiceContext")),
                             ret=0x1D4)
        release_interrupt_lock(m, proc, interrupt)
        k.set("ServiceCount", k.get("ServiceCount") + 1)
        if claimed & 0xFF:
            break
    head = Struct(m.kspace, "_KINTERRUPT", first)
    if claimed & 0xFF or head.get("Mode") != LEVEL_SENSITIVE:
        head.set("DispatchCount", 0)
        return 0
    # Nobody claimed a level-sensitive interrupt: a storm if it keeps coming back.
    count = head.get("DispatchCount") + 1 if m.tick_count - head.get("TickCount") <= 1 else 1
    head.set("DispatchCount", count)
    head.set("TickCount", m.tick_count)
    if count >= STORM_THRESHOLD:
        yield Call(m.sym("KeBugCheckEx"), (
            HARDWARE_INTERRUPT_STORM, head.get("ServiceRoutine"), head.get("ServiceContext"),
            first, 2 if len(objects) > 1 else 1), ret=0x2B0)
    return 0
