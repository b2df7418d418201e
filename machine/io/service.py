"""What every I/O system service does before it sends an IRP: find the file object
(and the caller's event) behind the handles, and build the packet for the top of the
file's device stack with the caller's completion information."""

from __future__ import annotations

from dataclasses import dataclass

from machine.io.irp import (
    FO_SYNCHRONOUS_IO,
    STATUS_INVALID_HANDLE,
    USER_MODE,
    allocate_irp,
    event_object_of,
    file_object_of,
    related_device,
)
from machine.types.view import Struct

# IOP_TRANSFER_TYPE: which of the process's I/O counters a request counts in
IOP_READ_TRANSFER, IOP_WRITE_TRANSFER, IOP_OTHER_TRANSFER = 0, 1, 2


@dataclass(frozen=True)
class Request:
    file_obj: int
    event: int  # the caller's event object, or 0
    device: int  # the top of the file's device stack
    synchronous: bool  # the file object was opened for synchronous I/O


def open_request(m, thread, handle: int, event_handle: int) -> Request | int:
    """The request's objects, or the status that refuses it.  The caller's event is
    reset (KeClearEvent), as the services do before sending anything."""
    file_obj = file_object_of(m, thread, handle)
    if file_obj is None:
        return STATUS_INVALID_HANDLE
    event = 0
    if event_handle:
        found = event_object_of(m, thread, event_handle)
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
