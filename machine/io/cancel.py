"""Cancelling IRPs.

A driver that holds an IRP for a while makes it cancellable by setting
Irp->CancelRoutine (IoSetCancelRoutine is an interlocked exchange in wdm.h).  The cancel
spin lock is nt!IopCancelSpinLock, taken as a queued spin lock through the processor's
KPRCB.LockQueue[LockQueueIoCancelLock] entry, so the lock word names the owner's entry.
IoCancelIrp sets Irp->Cancel, takes the lock and calls the routine it took from the IRP
with the lock held; the routine releases it (with Irp->CancelIrql) and completes the IRP
with STATUS_CANCELLED through the normal path.

NtCancelIoFile cancels the calling thread's IRPs for one file and waits until they are
gone; IoCancelThreadIo (thread exit) cancels all of a thread's IRPs and waits in short
delays, giving up after a while: then IRPs still outstanding are disassociated from the
thread, so their eventual completion has no thread to go back to.
"""

from __future__ import annotations

from machine.io.irp import (
    CANCEL_STATE_IN_COMPLETED_IRP,
    KERNEL_MODE,
    STATUS_INVALID_HANDLE,
    STATUS_SUCCESS,
)
from machine.ke.irql import LOCK_QUEUE_OWNER, LOCK_QUEUE_WAIT
from machine.ke.native import Call, Pause, routine
from machine.ke.processor import APC_LEVEL, DISPATCH_LEVEL
from machine.mm.paging import PageFault
from machine.ob.object import handle_object_of_type
from machine.rtl.lists import initialize_list_head, remove_entry_list
from machine.types.view import Struct

LOCK_QUEUE_IO_CANCEL_LOCK = 7  # KSPIN_LOCK_QUEUE_NUMBER
INTERVAL_SLOT = 0x40  # a delay's LARGE_INTEGER, in the frame of the routine that waits
# NtCancelIoFile looks again every 10 ms until the cancelled IRPs are gone.
CANCEL_IO_FILE_DELAY = 10 * 10_000
# IoCancelThreadIo looks every 100 ms; Windows gives up after 3000 looks (5 minutes).
# Like the watchdogs (see README), the limit here is 64 times shorter.
CANCEL_THREAD_IO_DELAY = 100 * 10_000
CANCEL_THREAD_IO_LOOKS = 3000 // 64


def cancel_lock(m) -> int:
    return m.sym("nt!IopCancelSpinLock")


def _queue_entry(m, proc) -> Struct:
    entry = Struct(m.kspace, "_KPRCB", proc.prcb).addr(
        f"LockQueue[{LOCK_QUEUE_IO_CANCEL_LOCK}]")
    return Struct(m.kspace, "_KSPIN_LOCK_QUEUE", entry)


def acquire_cancel_lock(m, proc, at: int):
    """KeAcquireQueuedSpinLock(LockQueueIoCancelLock): raise to DISPATCH_LEVEL, become
    the lock's tail and spin on our own entry until the previous owner hands over.
    Returns the IRQL to go back to (a generator: `yield from`)."""
    old = proc.irql
    m.set_irql(proc, max(old, DISPATCH_LEVEL))
    lock = cancel_lock(m)
    q = _queue_entry(m, proc)
    q.set("Next", 0)
    q.set("Lock", lock)
    previous = m.kspace.read_u64(lock)
    m.kspace.write_u64(lock, q.address)
    if previous:
        q.set("Lock", lock | LOCK_QUEUE_WAIT)
        Struct(m.kspace, "_KSPIN_LOCK_QUEUE", previous).set("Next", q.address)
        while q.get("Lock") & LOCK_QUEUE_WAIT:
            yield Pause(at=at)
    q.set("Lock", lock | LOCK_QUEUE_OWNER)
    return old


def release_cancel_lock(m, proc, irql: int) -> None:
    """KeReleaseQueuedSpinLock: hand the lock to the next waiter, or free it."""
    lock = cancel_lock(m)
    q = _queue_entry(m, proc)
    successor = q.get("Next")
    if successor:
        s = Struct(m.kspace, "_KSPIN_LOCK_QUEUE", successor)
        s.set("Lock", s.get("Lock") & ~LOCK_QUEUE_WAIT)
    elif m.kspace.read_u64(lock) == q.address:
        m.kspace.write_u64(lock, 0)
    q.set("Next", 0)
    q.set("Lock", lock)
    m.set_irql(proc, irql & 0xF)


@routine("IoAcquireCancelSpinLock", frame=0x28, size=0x100)
def IoAcquireCancelSpinLock(m, proc, a):
    """(*Irql): the previous IRQL goes to the caller."""
    old = yield from acquire_cancel_lock(m, proc, at=0x4B)
    proc.cpu.mem.write_int(a[0], 1, old)
    return 0


@routine("IoReleaseCancelSpinLock", frame=0x28, size=0x80)
def IoReleaseCancelSpinLock(m, proc, a):
    """(Irql)"""
    release_cancel_lock(m, proc, a[0] & 0xFF)
    return 0


@routine("IoCancelIrp", frame=0x48, size=0x180)
def IoCancelIrp(m, proc, a):
    """(Irp) -> TRUE if a cancel routine was called, FALSE if the IRP was not
    cancellable (its Cancel flag stays set, for the driver to see later)."""
    irp_addr = a[0]
    irp = Struct(m.kspace, "_IRP", irp_addr)
    irp.set("Cancel", 1)
    old = yield from acquire_cancel_lock(m, proc, at=0x3E)
    routine_ = irp.get("CancelRoutine")
    irp.set("CancelRoutine", 0)  # the exchange: the routine runs at most once
    if not routine_:
        release_cancel_lock(m, proc, old)
        return 0
    if irp.get("CurrentLocation") > irp.get("StackCount") + 1:
        yield Call(m.sym("KeBugCheckEx"), (CANCEL_STATE_IN_COMPLETED_IRP, irp_addr, routine_,
                                           0, 0), ret=0x9D)
    irp.set("CancelIrql", old)
    device = Struct(m.kspace, "_IO_STACK_LOCATION",
                    irp.get("Tail.Overlay.CurrentStackLocation")).get("DeviceObject")
    yield Call(routine_, (device, irp_addr), ret=0xC7)  # it releases the cancel lock
    return 1


def thread_irps(m, ethread: int) -> list[int]:
    """The IRPs on a thread's IrpList, in order."""
    head = Struct(m.kspace, "_ETHREAD", ethread).addr("IrpList")
    off = Struct(m.kspace, "_IRP", 0).offset("ThreadListEntry")
    out = []
    entry = m.kspace.read_u64(head)
    while entry != head:
        out.append(entry - off)
        entry = m.kspace.read_u64(entry)
    return out


def delay(m, thread, interval_100ns: int, ret: int):
    """KeDelayExecutionThread(KernelMode, FALSE, -interval), the interval in the delaying
    routine's frame (INTERVAL_SLOT); `ret` is its call site (a generator: `yield from`)."""
    slot = m.processor_of(thread).cpu.regs[4] + INTERVAL_SLOT
    m.kspace.write_u64(slot, -interval_100ns & 0xFFFFFFFFFFFFFFFF)
    yield Call(m.sym("KeDelayExecutionThread"), (KERNEL_MODE, 0, slot), ret=ret)


@routine("NtCancelIoFile", frame=0x68, size=0x300)
def NtCancelIoFile(m, proc, a):
    """(FileHandle, IoStatusBlock): cancel the calling thread's IRPs for the file, then
    wait (10 ms at a time) until none is left; the status block says success."""
    thread = proc.current
    space = proc.cpu.mem
    file_obj = handle_object_of_type(m, thread, a[0], "File")
    if file_obj is None:
        return STATUS_INVALID_HANDLE

    def for_file() -> list[int]:
        return [irp for irp in thread_irps(m, thread.ethread)
                if Struct(m.kspace, "_IRP", irp).get("Tail.Overlay.OriginalFileObject")
                == file_obj]

    # At APC_LEVEL no completion can take an IRP off the list while it is walked.
    old = proc.irql
    m.set_irql(proc, max(old, APC_LEVEL))
    found = for_file()
    for irp in found:
        yield Call(m.sym("IoCancelIrp"), (irp,), ret=0x8A)
    m.set_irql(m.processor_of(thread), old)
    while found:
        yield from delay(m, thread, CANCEL_IO_FILE_DELAY, ret=0x13E)
        found = for_file()
    try:
        space.write_u64(a[1], STATUS_SUCCESS)
        space.write_u64(a[1] + 8, 0)
    except PageFault:
        pass
    return STATUS_SUCCESS


@routine("IoCancelThreadIo", frame=0x58, size=0x300)
def IoCancelThreadIo(m, proc, a):
    """(Thread), called in that thread: cancel each IRP it has outstanding, then wait for
    its IrpList to empty, looking every 100 ms; after CANCEL_THREAD_IO_LOOKS looks each
    further look disassociates one IRP from the thread."""
    thread = proc.current
    ethread = a[0]
    old = proc.irql
    m.set_irql(proc, max(old, APC_LEVEL))
    for irp in thread_irps(m, ethread):
        yield Call(m.sym("IoCancelIrp"), (irp,), ret=0x74)
    looks = 0
    while thread_irps(m, ethread):
        m.set_irql(m.processor_of(thread), old)
        yield from delay(m, thread, CANCEL_THREAD_IO_DELAY, ret=0x10B)
        looks += 1
        if looks > CANCEL_THREAD_IO_LOOKS:
            yield Call(m.sym("IopDisassociateThreadIrp"), (), ret=0x151)
        proc = m.processor_of(thread)
        m.set_irql(proc, max(proc.irql, APC_LEVEL))
    m.set_irql(m.processor_of(thread), old)
    return 0


@routine("IopDisassociateThreadIrp", frame=0x48, size=0x200)
def IopDisassociateThreadIrp(m, proc, a):
    """The current thread's oldest IRP stops belonging to it: Tail.Overlay.Thread is
    cleared and the IRP leaves the IrpList, unless its completion is already under way
    (CurrentLocation past the stack: only its APC is left to run).  Windows also writes
    an IO_DRIVER_CANCEL_TIMEOUT error-log entry naming the device that holds it; there
    is no error log here."""
    irps = thread_irps(m, proc.current.ethread)
    if not irps:
        return 0
    irp = Struct(m.kspace, "_IRP", irps[0])
    if irp.get("CurrentLocation") == irp.get("StackCount") + 2:
        return 0
    irp.set("Tail.Overlay.Thread", 0)
    remove_entry_list(m.kspace, irp.addr("ThreadListEntry"))
    initialize_list_head(m.kspace, irp.addr("ThreadListEntry"))
    return 0
