"""IoAttachDevice: attach a device over a device named in the object namespace."""

from __future__ import annotations

from machine.ke.native import Call, routine
from machine.rtl.unicode import read_unicode_string

STATUS_SUCCESS = 0
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034


@routine("IoAttachDevice", frame=0x68, size=0x180)
def IoAttachDevice(m, proc, a):
    """(SourceDevice, TargetDeviceName*, AttachedDevice**): find the named device and
    attach the source to the top of its stack; the device attached to goes to
    *AttachedDevice.  (Windows opens the target with a file object for this, sending
    IRP_MJ_CREATE and IRP_MJ_CLOSE to its stack; the lookup here goes straight through
    the object namespace.)"""
    from machine.io.iomgr import resolve_device_path

    target = resolve_device_path(m, read_unicode_string(proc.cpu.mem, a[1]))
    if target is None:
        return STATUS_OBJECT_NAME_NOT_FOUND
    attached = yield Call(m.sym("nt!IoAttachDeviceToDeviceStack"), (a[0], target), ret=0xB3)
    proc.cpu.mem.write_u64(a[2], attached)
    return STATUS_SUCCESS
