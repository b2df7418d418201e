"""Sending an IRP on its way and bringing it back: IopSynchronousServiceTail,
IofCompleteRequest (completion routines, unlocking the IRP's pages) and
IopCompleteRequest, the last part of completion, which runs in the issuing thread
(through the special kernel APC embedded in the IRP, or directly for deferred
completion) and hands the result to the caller."""

from __future__ import annotations

from machine.io.irp import (
    FO_ALERTABLE_IO,
    FO_SYNCHRONOUS_IO,
    IO_STACK_LOCATION_SIZE,
    IO_TYPE_IRP,
    IRP_BUFFERED_IO,
    IRP_CREATE_OPERATION,
    IRP_DEALLOCATE_BUFFER,
    IRP_DEFER_IO_COMPLETION,
    IRP_INPUT_OPERATION,
    IRP_READ_OPERATION,
    IRP_SYNCHRONOUS_API,
    IRP_WRITE_OPERATION,
    MULTIPLE_IRP_COMPLETE_REQUESTS,
    SL_INVOKE_ON_CANCEL,
    SL_INVOKE_ON_ERROR,
    SL_INVOKE_ON_SUCCESS,
    SL_PENDING_RETURNED,
    STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_PENDING,
    USER_MODE,
    first_stack_location,
    free_irp,
    nt_error,
    unqueue_irp_from_thread,
)
from machine.io.mdl import release_mdl_block
from machine.ke.native import Call, routine
from machine.ke.processor import APC_LEVEL
from machine.mm.paging import PageFault
from machine.types.view import Struct

EVENT_INCREMENT = 1
ORIGINAL_APC_ENVIRONMENT = 0
APC_SLOTS = 0x60  # where IopSynchronousServiceTail keeps the APC-style arguments


def apc_of(m, irp_addr: int) -> int:
    return Struct(m.kspace, "_IRP", irp_addr).addr("Tail.Apc")


def nt_success(status: int) -> bool:
    return status & 0xFFFFFFFF < 0x80000000


@routine("IofCompleteRequest", frame=0x58, size=0x400)
def IofCompleteRequest(m, proc, a):
    """(Irp, PriorityBoost): unwind the stack locations upward, calling each completion
    routine a higher driver set (with that driver's device); STATUS_MORE_PROCESSING_
    REQUIRED stops the unwinding.  As on Windows, a completed IRP's CurrentLocation ends
    at StackCount + 2, so completing it again is MULTIPLE_IRP_COMPLETE_REQUESTS.  Then the
    IRP's pages are unlocked, and the rest of completion runs in the issuing thread:
    through the IRP's APC, or (deferred completion of a request its dispatch routine did
    not pend) when the I/O manager gets the IRP back from IofCallDriver."""
    irp_addr = a[0]
    space = m.kspace
    irp = Struct(space, "_IRP", irp_addr)
    count = irp.get("StackCount")
    if irp.get("CurrentLocation") > count + 1 or irp.get("Type") != IO_TYPE_IRP:
        yield Call(m.sym("KeBugCheckEx"), (MULTIPLE_IRP_COMPLETE_REQUESTS, irp_addr, 0, 0, 0),
                   ret=0x3C)
    location = irp.get("Tail.Overlay.CurrentStackLocation")
    _step_up(irp)
    while irp.get("CurrentLocation") <= count + 1:
        sl = Struct(space, "_IO_STACK_LOCATION", location)
        control = sl.get("Control")
        irp.set("PendingReturned", control & SL_PENDING_RETURNED)
        status = irp.get("IoStatus.Status")
        routine_ = sl.get("CompletionRoutine")
        if routine_ and ((nt_success(status) and control & SL_INVOKE_ON_SUCCESS)
                         or (not nt_success(status) and control & SL_INVOKE_ON_ERROR)
                         or (irp.get("Cancel") and control & SL_INVOKE_ON_CANCEL)):
            upper = 0
            if irp.get("CurrentLocation") <= count:
                upper = Struct(space, "_IO_STACK_LOCATION",
                               irp.get("Tail.Overlay.CurrentStackLocation")).get("DeviceObject")
            result = yield Call(routine_, (upper, irp_addr, sl.get("Context")), ret=0x1A5)
            if result & 0xFFFFFFFF == STATUS_MORE_PROCESSING_REQUIRED:
                return 0
        elif irp.get("PendingReturned") and irp.get("CurrentLocation") <= count:
            # No routine to look at the pending bit: pass it up (IoMarkIrpPending).
            upper = Struct(space, "_IO_STACK_LOCATION",
                           irp.get("Tail.Overlay.CurrentStackLocation"))
            upper.set("Control", upper.get("Control") | SL_PENDING_RETURNED)
        location += IO_STACK_LOCATION_SIZE
        _step_up(irp)
    mdl = irp.get("MdlAddress")
    while mdl:  # the buffer's pages stay locked only while a driver has the IRP
        yield Call(m.sym("MmUnlockPages"), (mdl,), ret=0x24E)
        mdl = Struct(space, "_MDL", mdl).get("Next")
    if irp.get("Flags") & IRP_DEFER_IO_COMPLETION and not irp.get("PendingReturned"):
        return 0
    thread = irp.get("Tail.Overlay.Thread")
    file_obj = irp.get("Tail.Overlay.OriginalFileObject")
    if not thread:
        # No thread to complete in: a kernel IRP, or one a timed-out IoCancelThreadIo
        # disassociated from its exiting thread (IopDropIrp).
        drop_irp(m, irp_addr)
        return 0
    apc = apc_of(m, irp_addr)
    yield Call(m.sym("KeInitializeApc"),
               (apc, thread, ORIGINAL_APC_ENVIRONMENT, m.sym("IopCompleteRequest"), 0, 0, 0, 0),
               ret=0x2B6)
    yield Call(m.sym("KeInsertQueueApc"), (apc, file_obj, 0, 0), ret=0x2D9)
    return 0


def _step_up(irp: Struct) -> None:
    irp.set("CurrentLocation", irp.get("CurrentLocation") + 1)
    irp.set("Tail.Overlay.CurrentStackLocation",
            irp.get("Tail.Overlay.CurrentStackLocation") + IO_STACK_LOCATION_SIZE)


def drop_irp(m, irp_addr: int) -> None:
    """IopDropIrp: free what the IRP holds (its MDLs, its system buffer) and the IRP."""
    irp = Struct(m.kspace, "_IRP", irp_addr)
    mdl = irp.get("MdlAddress")
    while mdl:
        nxt = Struct(m.kspace, "_MDL", mdl).get("Next")
        release_mdl_block(m, mdl)
        mdl = nxt
    irp.set("MdlAddress", 0)
    if irp.get("Flags") & IRP_DEALLOCATE_BUFFER and irp.get("AssociatedIrp.SystemBuffer"):
        m.pool.free(irp.get("AssociatedIrp.SystemBuffer"))
    free_irp(m, irp_addr)


def _write_iosb(space, iosb: int, status: int, information: int) -> None:
    """The caller's IO_STATUS_BLOCK (written under SEH on Windows: a bad pointer is
    ignored)."""
    if not iosb:
        return
    try:
        space.write_u64(iosb, status & 0xFFFFFFFF)
        space.write_u64(iosb + 8, information)
    except PageFault:
        pass


@routine("IopCompleteRequest", frame=0x88, size=0x300)
def IopCompleteRequest(m, proc, a):
    """(Apc, &NormalRoutine, &NormalContext, &SystemArgument1 = the file object, &...),
    in the thread that issued the IRP: copy a buffered read back to the caller, free the
    system buffer and the MDLs, then hand the result over.  Success (or any status of an
    asynchronous request that went pending) fills the caller's IO_STATUS_BLOCK, signals
    its event (and, for a synchronous file, the file object) and may queue the caller's
    APC; a failure of a synchronous request only sets the file object's FinalStatus and
    wakes the waiter, leaving the status block alone, as Windows does."""
    irp_addr = a[0] - Struct(m.kspace, "_IRP", 0).offset("Tail.Apc")
    irp = Struct(m.kspace, "_IRP", irp_addr)
    space = proc.cpu.mem  # the issuing thread's address space: the caller's buffers are there
    file_obj = space.read_u64(a[3])
    flags = irp.get("Flags")
    status = irp.get("IoStatus.Status") & 0xFFFFFFFF
    information = irp.get("IoStatus.Information")
    system = irp.get("AssociatedIrp.SystemBuffer")
    if flags & IRP_BUFFERED_IO:
        if flags & IRP_INPUT_OPERATION and not nt_error(status) and information and system:
            try:
                space.write(irp.get("UserBuffer"), m.kspace.read(system, information))
            except PageFault:
                pass
        if flags & IRP_DEALLOCATE_BUFFER and system:
            m.pool.free(system)
    irp.set("Flags", flags & ~(IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER))
    mdl = irp.get("MdlAddress")
    while mdl:
        nxt = Struct(m.kspace, "_MDL", mdl).get("Next")
        yield Call(m.sym("IoFreeMdl"), (mdl,), ret=0x12F)
        mdl = nxt
    irp.set("MdlAddress", 0)
    fo = Struct(m.kspace, "_FILE_OBJECT", file_obj) if file_obj else None
    sync_file = fo is not None and fo.get("Flags") & FO_SYNCHRONOUS_IO
    synchronous = flags & IRP_SYNCHRONOUS_API or sync_file
    events = []
    if (not nt_error(status) or (irp.get("PendingReturned") and not synchronous)
            or flags & IRP_CREATE_OPERATION):
        # (A create's status reaches its caller even on failure: Windows returns it
        # through the open packet; here the create IRP carries the caller's block.)
        _write_iosb(space, irp.get("UserIosb"), status, information)
        if irp.get("UserEvent"):
            events.append(irp.get("UserEvent"))
        if fo is not None and (sync_file or not irp.get("UserEvent")):
            fo.set("FinalStatus", status)
            events.append(fo.addr("Event"))
        if (fo is not None and sync_file and flags & (IRP_READ_OPERATION | IRP_WRITE_OPERATION)
                and not nt_error(status)):
            # The file pointer of a synchronous file moves past what was transferred.
            offset = first_stack_location(m, irp_addr).get("Parameters.Read.ByteOffset")
            fo.set("CurrentByteOffset", offset + information)
        unqueue_irp_from_thread(m, irp_addr)
        routine_ = irp.get("Overlay.AsynchronousParameters.UserApcRoutine")
        if routine_ and not flags & IRP_CREATE_OPERATION:
            # The caller's completion routine, as a user-mode APC; its kernel routine
            # frees the IRP when the APC is delivered.
            apc = apc_of(m, irp_addr)
            context = irp.get("Overlay.AsynchronousParameters.UserApcContext")
            iosb = irp.get("UserIosb")
            yield Call(m.sym("KeInitializeApc"),
                       (apc, proc.current.ethread, ORIGINAL_APC_ENVIRONMENT,
                        m.sym("IopUserCompletion"), m.sym("IopUserRundown"), routine_,
                        USER_MODE, context), ret=0x1E0)
            yield Call(m.sym("KeInsertQueueApc"), (apc, iosb, 0, 2), ret=0x203)
        else:
            free_irp(m, irp_addr)
    else:
        if irp.get("PendingReturned") and fo is not None:
            if flags & IRP_SYNCHRONOUS_API:
                _write_iosb(space, irp.get("UserIosb"), status, information)
                events.append(irp.get("UserEvent") or fo.addr("Event"))
            else:
                fo.set("FinalStatus", status)
                events.append(fo.addr("Event"))
        unqueue_irp_from_thread(m, irp_addr)
        free_irp(m, irp_addr)
    for event in events:
        yield Call(m.sym("KeSetEvent"), (event, EVENT_INCREMENT, 0), ret=0x2C2)
    return 0


@routine("IopUserCompletion", frame=0x28, size=0x40)
def IopUserCompletion(m, proc, a):
    """Kernel routine of the APC that runs a caller's I/O completion routine: the IRP
    that carried the APC can go."""
    free_irp(m, a[0] - Struct(m.kspace, "_IRP", 0).offset("Tail.Apc"))
    return 0


@routine("IopUserRundown", frame=0x28, size=0x40)
def IopUserRundown(m, proc, a):
    free_irp(m, a[0] - Struct(m.kspace, "_IRP", 0).offset("Tail.Apc"))
    return 0


@routine("IopSynchronousServiceTail", frame=0xA8, size=0x300)
def IopSynchronousServiceTail(m, proc, a):
    """(DeviceObject, Irp, FileObject, DeferredIoCompletion, RequestorMode, SynchronousIo,
    TransferType): send the IRP.  With deferred completion, a request the driver did not
    pend is completed here (IopCompleteRequest called directly, not as an APC).  For a
    synchronous file, a pended request is waited for on the file object's event, and the
    result is the file object's FinalStatus; an asynchronous caller gets STATUS_PENDING."""
    thread = proc.current
    device, irp_addr, file_obj = a[0], a[1], a[2]
    deferred, mode, synchronous = a[3] & 0xFF, a[4] & 0xFF, a[5] & 0xFF
    if file_obj:  # KeClearEvent: each request waits for its own completion
        Struct(m.kspace, "_FILE_OBJECT", file_obj).set("Event.Header.SignalState", 0)
    status = (yield Call(m.sym("IofCallDriver"), (device, irp_addr), ret=0x1D0)) & 0xFFFFFFFF
    if deferred and status != STATUS_PENDING:
        proc = m.processor_of(thread)
        old = proc.irql
        if not synchronous:
            m.set_irql(proc, max(old, APC_LEVEL))
        slots = proc.cpu.regs[4] + APC_SLOTS  # NormalRoutine, NormalContext, the file object
        for i, value in enumerate((0, 0, file_obj, 0)):
            m.kspace.write_u64(slots + 8 * i, value)
        yield Call(m.sym("IopCompleteRequest"),
                   (apc_of(m, irp_addr), slots, slots + 8, slots + 0x10, slots + 0x18),
                   ret=0x1F4)
        if not synchronous:
            m.set_irql(m.processor_of(thread), old)
    if synchronous and status == STATUS_PENDING and file_obj:
        fo = Struct(m.kspace, "_FILE_OBJECT", file_obj)
        alertable = 1 if fo.get("Flags") & FO_ALERTABLE_IO else 0
        yield Call(m.sym("KeWaitForSingleObject"), (fo.addr("Event"), 0, mode, alertable, 0),
                   ret=0x2A1)
        status = fo.get("FinalStatus") & 0xFFFFFFFF
    return status
