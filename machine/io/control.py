"""I/O control requests (NtDeviceIoControlFile) and the three ways their buffers reach
a driver, chosen by the low two bits of the control code:

- METHOD_BUFFERED: one nonpaged system buffer, the input copied in, the output copied
  back to the caller at completion;
- METHOD_IN_DIRECT / METHOD_OUT_DIRECT: the input in a system buffer, the output
  buffer described by an MDL (Irp->MdlAddress) whose pages are probed and locked for
  reading or writing;
- METHOD_NEITHER: no copies: the caller's input pointer in the stack location's
  Type3InputBuffer, its output pointer in Irp->UserBuffer.
"""

from __future__ import annotations

from machine.io.completion import drop_irp
from machine.io.irp import (
    IO_READ_ACCESS,
    IO_WRITE_ACCESS,
    IRP_DEFER_IO_COMPLETION,
    IRP_INPUT_OPERATION,
    IRP_MJ_DEVICE_CONTROL,
    METHOD_BUFFERED,
    METHOD_IN_DIRECT,
    METHOD_NEITHER,
    STATUS_ACCESS_VIOLATION,
    USER_MODE,
    next_stack_location,
    queue_irp_to_thread,
)
from machine.io.service import (
    IOP_OTHER_TRANSFER,
    Request,
    attach_system_buffer,
    lock_user_buffer,
    open_request,
    user_irp,
)
from machine.ke.native import Call, routine
from machine.mm.paging import PageFault
from machine.types.view import Struct

IRP_MJ_FILE_SYSTEM_CONTROL = 0x0D


@routine("NtDeviceIoControlFile", frame=0x68, size=0x100)
def NtDeviceIoControlFile(m, proc, a):
    args = tuple(a[i] for i in range(10))
    status = yield Call(m.sym("IopXxxControlFile"), (*args, 1), ret=0x56)
    return status


@routine("IopXxxControlFile", frame=0x1E8, size=0x900)
def IopXxxControlFile(m, proc, a):
    """(FileHandle, Event, ApcRoutine, ApcContext, IoStatusBlock, IoControlCode,
    InputBuffer, InputBufferLength, OutputBuffer, OutputBufferLength, DeviceIoControl)"""
    thread = proc.current
    req = open_request(m, thread, a[0], a[1])
    if not isinstance(req, Request):
        return req
    code, in_buf, in_len = a[5] & 0xFFFFFFFF, a[6], a[7] & 0xFFFFFFFF
    out_buf, out_len = a[8], a[9] & 0xFFFFFFFF
    irp_addr = user_irp(m, thread, req, a[2], a[3], a[4])
    sl = next_stack_location(m, irp_addr)
    sl.set("MajorFunction", IRP_MJ_DEVICE_CONTROL if a[10] else IRP_MJ_FILE_SYSTEM_CONTROL)
    sl.set("FileObject", req.file_obj)
    sl.set("Parameters.DeviceIoControl.IoControlCode", code)
    sl.set("Parameters.DeviceIoControl.InputBufferLength", in_len)
    sl.set("Parameters.DeviceIoControl.OutputBufferLength", out_len)
    status = attach_buffers(m, proc, irp_addr, code & 3, in_buf, in_len, out_buf, out_len)
    if status:
        drop_irp(m, irp_addr)
        return status
    irp = Struct(m.kspace, "_IRP", irp_addr)
    if not a[10]:
        # File systems pend properly, so their control requests may complete in place;
        # device drivers' IOCTLs always complete through the APC.
        irp.set("Flags", irp.get("Flags") | IRP_DEFER_IO_COMPLETION)
    queue_irp_to_thread(m, irp_addr, thread.ethread)
    status = yield Call(m.sym("IopSynchronousServiceTail"),
                        (req.device, irp_addr, req.file_obj, 0 if a[10] else 1, USER_MODE,
                         int(req.synchronous), IOP_OTHER_TRANSFER), ret=0x700)
    return status


def attach_buffers(m, proc, irp_addr: int, method: int, in_buf: int, in_len: int,
                   out_buf: int, out_len: int) -> int:
    """Give the IRP the caller's buffers the way the transfer method says; a status
    (what the probe raised) if the caller's memory is not usable."""
    irp = Struct(m.kspace, "_IRP", irp_addr)
    space = proc.cpu.mem
    try:
        if method == METHOD_BUFFERED:
            length = max(in_len, out_len)
            if length:
                system = attach_system_buffer(m, irp_addr, length)
                if in_buf and in_len:
                    m.kspace.write(system, space.read(in_buf, in_len))
                if out_buf:  # completion copies the output back to the caller
                    irp.set("Flags", irp.get("Flags") | IRP_INPUT_OPERATION)
                irp.set("UserBuffer", out_buf)
        elif method == METHOD_NEITHER:
            irp.set("UserBuffer", out_buf)
            sl = next_stack_location(m, irp_addr)
            sl.set("Parameters.DeviceIoControl.Type3InputBuffer", in_buf)
        else:
            if in_buf and in_len:
                system = attach_system_buffer(m, irp_addr, in_len)
                m.kspace.write(system, space.read(in_buf, in_len))
            if out_len:
                access = IO_READ_ACCESS if method == METHOD_IN_DIRECT else IO_WRITE_ACCESS
                status = lock_user_buffer(m, proc, irp_addr, out_buf, out_len, access)
                if status:
                    return status
    except PageFault:
        return STATUS_ACCESS_VIOLATION
    return 0
