"""Asynchronous procedure calls: `_KAPC`s queued on a thread's
`ApcState.ApcListHead[mode]`.  Kernel APCs are delivered through the APC software
interrupt (vector 0x1f) at APC_LEVEL when the thread runs below it: the KernelRoutine,
then (if it has one) the NormalRoutine at PASSIVE_LEVEL.  A user APC waits on
ApcListHead[1] until the thread waits alertably in user mode (or tests for alerts); it
is then pending (UserApcPending) and runs on the thread's way back to user mode, where
KiDeliverApc redirects the trap frame to ntdll!KiUserApcDispatcher
(machine.ke.userapc)."""

from __future__ import annotations

from machine.ke.native import Call, TrapReturn, routine
from machine.ke.processor import APC_LEVEL, PASSIVE_LEVEL
from machine.ke.threads import WAITING
from machine.ke.wait import STATUS_KERNEL_APC, STATUS_USER_APC, unwait
from machine.rtl.lists import (
    initialize_list_head,
    insert_tail_list,
    iterate_list,
    remove_entry_list,
)
from machine.types.view import Struct

APC_OBJECT = 0x12
APC_VECTOR = 0x1F
KERNEL_MODE, USER_MODE = 0, 1
STATUS_SUCCESS, STATUS_UNSUCCESSFUL = 0, 0xC0000001


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
    """(Apc, SystemArgument1, SystemArgument2, Increment) -> TRUE if queued (FALSE when
    it already is, or when its thread no longer takes APCs: it is exiting)."""
    apc = Struct(m.kspace, "_KAPC", a[0])
    if apc.get("Inserted"):
        return 0
    ethread = apc.get("Thread")
    kt = Struct(m.kspace, "_KTHREAD", ethread)
    if not kt.get("ApcQueueable"):
        return 0
    apc.set("SystemArgument1", a[1])
    apc.set("SystemArgument2", a[2])
    mode = apc.get("ApcMode")
    insert_tail_list(m.kspace, apc_list_head(m, ethread, mode), apc.addr("ApcListEntry"))
    apc.set("Inserted", 1)
    thread = m.thread_at(ethread)
    if mode == KERNEL_MODE:
        kt.set("ApcState.KernelApcPending", 1)
        if kt.get("State") == WAITING and kt.get("WaitIrql") == PASSIVE_LEVEL:
            # A thread waiting at PASSIVE_LEVEL leaves its wait to run the APC, then
            # waits again (KeWaitForSingleObject sees STATUS_KERNEL_APC).
            unwait(m, thread, STATUS_KERNEL_APC)
        else:
            request_delivery(m, thread)
    elif (kt.get("State") == WAITING and kt.get("WaitMode") == USER_MODE
          and (kt.get("Alertable") or kt.get("ApcState.UserApcPending"))):
        # An alertable wait from user mode ends with STATUS_USER_APC, and the APC runs
        # on the way back to user mode; any other thread finds it at its next
        # alertable wait or NtTestAlert.
        kt.set("ApcState.UserApcPending", 1)
        unwait(m, thread, STATUS_USER_APC)
    return 1


def queue_pool_apc(m, apc: int, system_argument1: int, system_argument2: int,
                   increment: int, ret: int, free_ret: int):
    """KeInsertQueueApc for an APC the caller allocated from pool: STATUS_SUCCESS once it
    is queued; when its thread no longer takes APCs (it is on its way out) the APC's
    memory goes back and the request fails with STATUS_UNSUCCESSFUL.  `ret` and
    `free_ret` are the caller's call sites (a generator: `yield from`)."""
    queued = yield Call(m.sym("KeInsertQueueApc"),
                        (apc, system_argument1, system_argument2, increment), ret=ret)
    if not queued & 0xFF:
        yield Call(m.sym("ExFreePool"), (apc,), ret=free_ret)
        return STATUS_UNSUCCESSFUL
    return STATUS_SUCCESS


def _dequeue(m, ethread: int, mode: int) -> int | None:
    """Take the first APC off a thread's list for `mode`."""
    head = apc_list_head(m, ethread, mode)
    entry = m.kspace.read_u64(head)
    if entry == head:
        if mode == KERNEL_MODE:
            Struct(m.kspace, "_KTHREAD", ethread).set("ApcState.KernelApcPending", 0)
        return None
    remove_entry_list(m.kspace, entry)
    initialize_list_head(m.kspace, entry)
    apc = entry - Struct(m.kspace, "_KAPC", 0).offset("ApcListEntry")
    Struct(m.kspace, "_KAPC", apc).set("Inserted", 0)
    return apc


def flush_apc_queue(m, ethread: int, mode: int) -> list[int]:
    """KeFlushQueueApc: every APC queued for `mode` leaves the list, not inserted."""
    head = apc_list_head(m, ethread, mode)
    off = Struct(m.kspace, "_KAPC", 0).offset("ApcListEntry")
    apcs = [entry - off for entry in iterate_list(m.kspace, head)]
    for apc in apcs:
        entry = apc + off
        initialize_list_head(m.kspace, entry)
        Struct(m.kspace, "_KAPC", apc).set("Inserted", 0)
    initialize_list_head(m.kspace, head)
    kt = Struct(m.kspace, "_KTHREAD", ethread)
    kt.set("ApcState.KernelApcPending" if mode == KERNEL_MODE else "ApcState.UserApcPending",
           0)
    return apcs


def poll_alert(m, ethread: int, mode: int) -> bool:
    """KeTestAlertThread: clear and report an alert; else, for user mode, make queued
    user APCs pending so they run on the way back to user mode."""
    kt = Struct(m.kspace, "_KTHREAD", ethread)
    if kt.get(f"Alerted[{mode}]"):
        kt.set(f"Alerted[{mode}]", 0)
        return True
    head = apc_list_head(m, ethread, USER_MODE)
    if mode == USER_MODE and m.kspace.read_u64(head) != head:
        kt.set("ApcState.UserApcPending", 1)
    return False


@routine("KiDeliverApc", frame=0x88, size=0x400)
def KiDeliverApc(m, proc, a):
    """(PreviousMode, ExceptionFrame, TrapFrame): run the current thread's kernel APCs;
    on the way back to user mode, then deliver one pending user APC.  A KernelRoutine
    gets pointers to NormalRoutine, NormalContext and the two arguments, which it may
    change; they live in this routine's frame on the stack."""
    from machine.ke.userapc import initialize_user_apc

    thread = proc.current
    space = proc.cpu.mem
    slots = proc.cpu.regs[4] + 0x40  # four local qwords in this frame
    while (apc_addr := _dequeue(m, thread.ethread, KERNEL_MODE)) is not None:
        normal, context, arg1, arg2 = yield from _kernel_routine(m, space, slots, apc_addr,
                                                                 ret=0x1A3)
        if normal:
            m.set_irql(m.processor_of(thread), PASSIVE_LEVEL)
            yield Call(normal, (context, arg1, arg2), ret=0x2C4)
            m.set_irql(m.processor_of(thread), APC_LEVEL)
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    if a[0] & 0xFF != USER_MODE or not kt.get("ApcState.UserApcPending"):
        return 0
    kt.set("ApcState.UserApcPending", 0)
    apc_addr = _dequeue(m, thread.ethread, USER_MODE)
    if apc_addr is None:
        return 0
    normal, context, arg1, arg2 = yield from _kernel_routine(m, space, slots, apc_addr,
                                                             ret=0x35E)
    if normal:
        initialize_user_apc(m, m.processor_of(thread), a[2], normal, context, arg1, arg2)
    else:
        poll_alert(m, thread.ethread, USER_MODE)
    return 0


def _kernel_routine(m, space, slots: int, apc_addr: int, ret: int):
    """Call an APC's KernelRoutine with pointers to copies of its normal routine and
    arguments; the (possibly changed) values afterwards."""
    apc = Struct(space, "_KAPC", apc_addr)
    for i, field in enumerate(("NormalRoutine", "NormalContext", "SystemArgument1",
                               "SystemArgument2")):
        space.write_u64(slots + 8 * i, apc.get(field))
    yield Call(apc.get("KernelRoutine"),
               (apc_addr, slots, slots + 8, slots + 0x10, slots + 0x18), ret=ret)
    return tuple(space.read_u64(slots + 8 * i) for i in range(4))


@routine("KiApcInterrupt", trap=True, size=0x200)
def KiApcInterrupt(m, proc, frame):
    tf = frame.extra["tf"]
    m.set_irql(proc, APC_LEVEL)
    previous_mode = Struct(proc.cpu.mem, "_KTRAP_FRAME", tf).get("SegCs") & 1
    yield Call(m.sym("KiDeliverApc"), (previous_mode, 0, tf), ret=0xE6)
    yield TrapReturn(tf)


@routine("KiInitiateUserApc", frame=0x38, size=0x80)
def KiInitiateUserApc(m, proc, a):
    """(TrapFrame): from the system-service exit, with a user APC pending."""
    thread = proc.current
    m.set_irql(proc, APC_LEVEL)
    yield Call(m.sym("KiDeliverApc"), (USER_MODE, 0, a[0]), ret=0x3D)
    m.set_irql(m.processor_of(thread), PASSIVE_LEVEL)
    return 0
