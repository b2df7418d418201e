"""Asynchronous procedure calls: `_KAPC`s queued on a thread's
`ApcState.ApcListHead[mode]`, delivered through the APC software interrupt (vector 0x1f)
at APC_LEVEL when the thread runs below it.  A kernel APC runs its KernelRoutine, then
(if it has one) its NormalRoutine at PASSIVE_LEVEL.  User-mode APCs are queued but not
delivered yet (user mode is not executed instruction by instruction)."""

from __future__ import annotations

from machine.ke.native import Call, TrapReturn, routine
from machine.ke.processor import APC_LEVEL, PASSIVE_LEVEL
from machine.ke.threads import WAITING
from machine.ke.wait import STATUS_KERNEL_APC, unwait
from machine.rtl.lists import initialize_list_head, insert_tail_list, remove_entry_list
from machine.types.view import Struct

APC_OBJECT = 0x12
APC_VECTOR = 0x1F
KERNEL_MODE = 0


def apc_list_head(m, ethread: int, mode: int) -> int:
    return Struct(m.kspace, "_KTHREAD", ethread).addr(f"ApcState.ApcListHead[{mode}]")


def init_apc_lists(m, ethread: int) -> None:
    for mode in (0, 1):
        initialize_list_head(m.kspace, apc_list_head(m, ethread, mode))


def request_delivery(m, thread) -> None:
    """Ask for the APC interrupt on the processor the thread runs on, if it runs."""
    for proc in m.processors:
        if proc.current is thread:
            m.request_interrupt(proc, APC_VECTOR)


@routine("KeInitializeApc", frame=0x28, size=0x100)
def KeInitializeApc(m, proc, a):
    """(Apc, Thread, Environment, KernelRoutine, RundownRoutine, NormalRoutine,
    ProcessorMode, NormalContext)"""
    apc = Struct(proc.cpu.mem, "_KAPC", a[0])
    apc.set("Type", APC_OBJECT)
    apc.set("Size", m.catalog.get("_KAPC").size)
    apc.set("Thread", a[1])
    apc.set("ApcStateIndex", a[2] & 0xFF)
    apc.set("KernelRoutine", a[3])
    apc.set("RundownRoutine", a[4])
    apc.set("NormalRoutine", a[5])
    mode = a[6] & 0xFF if a[5] else KERNEL_MODE
    apc.set("ApcMode", mode)
    apc.set("NormalContext", a[7] if a[5] else 0)
    apc.set("Inserted", 0)
    return 0


@routine("KeInsertQueueApc", frame=0x58, size=0x200)
def KeInsertQueueApc(m, proc, a):
    """(Apc, SystemArgument1, SystemArgument2, Increment) -> TRUE if queued."""
    apc = Struct(m.kspace, "_KAPC", a[0])
    if apc.get("Inserted"):
        return 0
    apc.set("SystemArgument1", a[1])
    apc.set("SystemArgument2", a[2])
    ethread = apc.get("Thread")
    mode = apc.get("ApcMode")
    insert_tail_list(m.kspace, apc_list_head(m, ethread, mode), apc.addr("ApcListEntry"))
    apc.set("Inserted", 1)
    if mode == KERNEL_MODE:
        kt = Struct(m.kspace, "_KTHREAD", ethread)
        kt.set("ApcState.KernelApcPending", 1)
        thread = m.thread_at(ethread)
        if kt.get("State") == WAITING and kt.get("WaitIrql") == PASSIVE_LEVEL:
            # A thread waiting at PASSIVE_LEVEL leaves its wait to run the APC, then
            # waits again (KeWaitForSingleObject sees STATUS_KERNEL_APC).
            unwait(m, thread, STATUS_KERNEL_APC)
        else:
            request_delivery(m, thread)
    return 1


def _next_kernel_apc(m, ethread: int) -> int | None:
    head = apc_list_head(m, ethread, KERNEL_MODE)
    entry = m.kspace.read_u64(head)
    if entry == head:
        Struct(m.kspace, "_KTHREAD", ethread).set("ApcState.KernelApcPending", 0)
        return None
    remove_entry_list(m.kspace, entry)
    initialize_list_head(m.kspace, entry)
    apc = entry - Struct(m.kspace, "_KAPC", 0).offset("ApcListEntry")
    Struct(m.kspace, "_KAPC", apc).set("Inserted", 0)
    return apc


@routine("KiDeliverApc", frame=0x88, size=0x400)
def KiDeliverApc(m, proc, a):
    """Run the current thread's kernel APCs.  The KernelRoutine gets pointers to
    NormalRoutine, NormalContext and the two arguments, which it may change; they live
    in this routine's frame on the stack."""
    thread = proc.current
    space = proc.cpu.mem
    while (apc_addr := _next_kernel_apc(m, thread.ethread)) is not None:
        apc = Struct(space, "_KAPC", apc_addr)
        slots = proc.cpu.regs[4] + 0x40  # four local qwords in this frame
        for i, field in enumerate(("NormalRoutine", "NormalContext", "SystemArgument1",
                                   "SystemArgument2")):
            space.write_u64(slots + 8 * i, apc.get(field))
        yield Call(apc.get("KernelRoutine"),
                   (apc_addr, slots, slots + 8, slots + 0x10, slots + 0x18), ret=0x1A3)
        normal, context, arg1, arg2 = (space.read_u64(slots + 8 * i) for i in range(4))
        if normal:
            m.set_irql(m.processor_of(thread), PASSIVE_LEVEL)
            yield Call(normal, (context, arg1, arg2), ret=0x2C4)
            m.set_irql(m.processor_of(thread), APC_LEVEL)
    return 0


@routine("KiApcInterrupt", trap=True, size=0x200)
def KiApcInterrupt(m, proc, frame):
    tf = frame.extra["tf"]
    m.set_irql(proc, APC_LEVEL)
    yield Call(m.sym("KiDeliverApc"), (0, 0, tf), ret=0xE6)
    yield TrapReturn(tf)
