"""NtReadFile and NtWriteFile: IRP_MJ_READ / IRP_MJ_WRITE with the transfer's length,
byte offset and key, the caller's buffer given to the driver the way its device asks:

- DO_BUFFERED_IO: a nonpaged system buffer (a write's data copied in; a read's copied
  back to the caller at completion);
- DO_DIRECT_IO: an MDL for the caller's buffer (Irp->MdlAddress), its pages probed and
  locked for the access the driver needs (a read writes them);
- neither: the caller's own pointer in Irp->UserBuffer.

A file opened for synchronous I/O keeps a file pointer: without a byte offset the
transfer starts there, and the request is waited for; on an asynchronous file the
caller must give the offset and gets STATUS_PENDING while the driver works.
"""

from __future__ import annotations

from machine.io.completion import drop_irp
from machine.io.irp import (
    DO_BUFFERED_IO,
    DO_DIRECT_IO,
    FILE_USE_FILE_POINTER_POSITION,
    FO_MAILSLOT,
    FO_NAMED_PIPE,
    IO_READ_ACCESS,
    IO_WRITE_ACCESS,
    IRP_BUFFERED_IO,
    IRP_DEFER_IO_COMPLETION,
    IRP_INPUT_OPERATION,
    IRP_MJ_READ,
    IRP_MJ_WRITE,
    IRP_READ_OPERATION,
    IRP_WRITE_OPERATION,
    STATUS_ACCESS_VIOLATION,
    STATUS_INVALID_PARAMETER,
    USER_MODE,
    next_stack_location,
    queue_irp_to_thread,
)
from machine.io.service import (
    IOP_READ_TRANSFER,
    IOP_WRITE_TRANSFER,
    Request,
    attach_system_buffer,
    lock_user_buffer,
    open_request,
    user_irp,
)
from machine.ke.native import Call, routine
from machine.mm.mdl import MM_USER_PROBE_ADDRESS
from machine.mm.paging import PageFault
from machine.types.view import Struct


@routine("NtReadFile", frame=0xD8, size=0x600)
def NtReadFile(m, proc, a):
    """(FileHandle, Event, ApcRoutine, ApcContext, IoStatusBlock, Buffer, Length,
    ByteOffset*, Key*)"""
    status = yield from transfer(m, proc, a, IRP_MJ_READ, ret=0x3F2)
    return status


@routine("NtWriteFile", frame=0xD8, size=0x600)
def NtWriteFile(m, proc, a):
    """(FileHandle, Event, ApcRoutine, ApcContext, IoStatusBlock, Buffer, Length,
    ByteOffset*, Key*)"""
    status = yield from transfer(m, proc, a, IRP_MJ_WRITE, ret=0x41A)
    return status


def transfer(m, proc, a, major: int, ret: int):
    thread = proc.current
    space = proc.cpu.mem  # the caller's buffers and parameters
    req = open_request(m, thread, a[0], a[1])
    if not isinstance(req, Request):
        return req
    fo = Struct(m.kspace, "_FILE_OBJECT", req.file_obj)
    buffer, length = a[5], a[6] & 0xFFFFFFFF
    try:
        offset = space.read_u64(a[7]) if a[7] else None
        key = space.read_int(a[8], 4) if a[8] else 0
    except PageFault:
        return STATUS_ACCESS_VIOLATION
    if req.synchronous:
        if offset is None or offset == (0xFFFFFFFF << 32) | FILE_USE_FILE_POINTER_POSITION:
            offset = fo.get("CurrentByteOffset")
    elif offset is None and not fo.get("Flags") & (FO_NAMED_PIPE | FO_MAILSLOT):
        return STATUS_INVALID_PARAMETER
    if length and buffer + length > MM_USER_PROBE_ADDRESS:  # ProbeForRead/ProbeForWrite
        return STATUS_ACCESS_VIOLATION
    irp_addr = user_irp(m, thread, req, a[2], a[3], a[4])
    sl = next_stack_location(m, irp_addr)
    sl.set("MajorFunction", major)
    sl.set("FileObject", req.file_obj)
    sl.set("Parameters.Read.Length", length)  # Parameters.Write has the same layout
    sl.set("Parameters.Read.Key", key)
    sl.set("Parameters.Read.ByteOffset", offset or 0)
    status = attach_buffer(m, proc, irp_addr, req.device, major, buffer, length)
    if status:
        drop_irp(m, irp_addr)
        return status
    irp = Struct(m.kspace, "_IRP", irp_addr)
    operation = IRP_READ_OPERATION if major == IRP_MJ_READ else IRP_WRITE_OPERATION
    irp.set("Flags", irp.get("Flags") | operation | IRP_DEFER_IO_COMPLETION)
    queue_irp_to_thread(m, irp_addr, thread.ethread)
    kind = IOP_READ_TRANSFER if major == IRP_MJ_READ else IOP_WRITE_TRANSFER
    status = yield Call(m.sym("IopSynchronousServiceTail"),
                        (req.device, irp_addr, req.file_obj, 1, USER_MODE, int(req.synchronous),
                         kind), ret=ret)
    return status


def attach_buffer(m, proc, irp_addr: int, device: int, major: int, buffer: int,
                  length: int) -> int:
    """The caller's buffer in the form the device takes; a status if it is not usable."""
    irp = Struct(m.kspace, "_IRP", irp_addr)
    device_flags = Struct(m.kspace, "_DEVICE_OBJECT", device).get("Flags")
    read = major == IRP_MJ_READ
    if device_flags & DO_BUFFERED_IO:
        if read:  # completion copies the data back to the caller
            irp.set("Flags", irp.get("Flags") | IRP_BUFFERED_IO | IRP_INPUT_OPERATION)
        if length:
            system = attach_system_buffer(m, irp_addr, length)
            if read:
                irp.set("UserBuffer", buffer)
            else:
                try:
                    m.kspace.write(system, proc.cpu.mem.read(buffer, length))
                except PageFault:
                    return STATUS_ACCESS_VIOLATION
    elif device_flags & DO_DIRECT_IO:
        if length:
            # A read writes the caller's pages; a write only reads them.
            access = IO_WRITE_ACCESS if read else IO_READ_ACCESS
            return lock_user_buffer(m, proc, irp_addr, buffer, length, access)
    else:
        irp.set("UserBuffer", buffer)
    return 0
