"""What every I/O system service does before it sends an IRP: find the file object
(and the caller's event) behind the handles, build the packet for the top of the file's
device stack with the caller's completion information, and give it the caller's buffer
as a system buffer or as an MDL."""

from __future__ import annotations

from dataclasses import dataclass

from machine.io.irp import (
    FO_SYNCHRONOUS_IO,
    IRP_BUFFERED_IO,
    IRP_DEALLOCATE_BUFFER,
    STATUS_INSUFFICIENT_RESOURCES,
    STATUS_INVALID_HANDLE,
    USER_MODE,
    allocate_irp,
    related_device,
)
from machine.io.mdl import allocate_mdl
from machine.mm.mdl import probe_and_lock
from machine.ob.object import handle_object_of_type
from machine.types.view import Struct

# IOP_TRANSFER_TYPE: which of the process's I/O counters a request counts in
IOP_READ_TRANSFER, IOP_WRITE_TRANSFER, IOP_OTHER_TRANSFER = 0, 1, 2
SYSTEM_BUFFER_TAG = "IoSB"


@dataclass(frozen=True)
class Request:
    file_obj: int
    event: int  # the caller's event object, or 0
    device: int  # the top of the file's device stack
    synchronous: bool  # the file object was opened for synchronous I/O


def open_request(m, thread, handle: int, event_handle: int) -> Request | int:
    """The request's objects, or the status that refuses it.  The caller's event is
    reset (KeClearEvent), as the services do before sending anything."""
    file_obj = handle_object_of_type(m, thread, handle, "File")
    if file_obj is None:
        return STATUS_INVALID_HANDLE
    event = 0
    if event_handle:
        found = handle_object_of_type(m, thread, event_handle, "Event")
        if found is None:
            return STATUS_INVALID_HANDLE
        event = found
        Struct(m.kspace, "_DISPATCHER_HEADER", event).set("SignalState", 0)
    synchronous = bool(Struct(m.kspace, "_FILE_OBJECT", file_obj).get("Flags")
                       & FO_SYNCHRONOUS_IO)
    return Request(file_obj, event, related_device(m, file_obj), synchronous)


def user_irp(m, thread, req: Request, apc_routine: int, apc_context: int, iosb: int) -> int:
    """An IRP for the request's device, from user mode, owned by the thread."""
    stack_size = Struct(m.kspace, "_DEVICE_OBJECT", req.device).get("StackSize")
    irp_addr = allocate_irp(m, stack_size)
    irp = Struct(m.kspace, "_IRP", irp_addr)
    irp.set("RequestorMode", USER_MODE)
    irp.set("UserIosb", iosb)
    irp.set("UserEvent", req.event)
    irp.set("Overlay.AsynchronousParameters.UserApcRoutine", apc_routine)
    irp.set("Overlay.AsynchronousParameters.UserApcContext", apc_context)
    irp.set("Tail.Overlay.Thread", thread.ethread)
    irp.set("Tail.Overlay.OriginalFileObject", req.file_obj)
    return irp_addr


def attach_system_buffer(m, irp_addr: int, length: int) -> int:
    """A nonpaged system buffer of `length` bytes in Irp->AssociatedIrp.SystemBuffer,
    flagged IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER so it goes with the IRP (at
    completion, or in IopDropIrp when the request fails before it is sent)."""
    system = m.pool.allocate(0, length, SYSTEM_BUFFER_TAG)
    irp = Struct(m.kspace, "_IRP", irp_addr)
    irp.set("AssociatedIrp.SystemBuffer", system)
    irp.set("Flags", irp.get("Flags") | IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER)
    return system


def lock_user_buffer(m, proc, irp_addr: int, buffer: int, length: int, access: int) -> int:
    """An MDL on the IRP (Irp->MdlAddress) for the caller's buffer, its pages probed and
    locked for `access`; a status if the buffer is too big to describe or not usable."""
    mdl = allocate_mdl(m, buffer, length, False, irp_addr)
    if not mdl:
        return STATUS_INSUFFICIENT_RESOURCES
    return probe_and_lock(m, proc, mdl, USER_MODE, access)
