"""Device objects after IoCreateDevice: deleting one (IoDeleteDevice), detaching a filter
(IoDetachDevice), and finding one by name the way a filter or a client driver does
(IoGetDeviceObjectPointer).

Declared after every other nt routine, so that the earlier ones keep their addresses.
"""

from __future__ import annotations

from machine.io.iomgr import (
    DOE_DELETE_PENDING,
    complete_pending_delete,
    create_file_object,
    resolve_device_path,
    unlink_from_driver,
)
from machine.io.irp import STATUS_OBJECT_NAME_NOT_FOUND, STATUS_SUCCESS, related_device
from machine.ke.native import Call, routine
from machine.ob.object import (
    OBJECT_HEADER_BODY,
    free_pool_block,
    register_delete_procedure,
    remove_from_directory,
    type_of,
)
from machine.rtl.unicode import read_unicode_string
from machine.types.view import Struct

STATUS_OBJECT_TYPE_MISMATCH = 0xC0000024
FILE_OPEN = 1
FILE_NON_DIRECTORY_FILE = 0x40


@routine("IoDeleteDevice", frame=0x38, size=0x140)
def IoDeleteDevice(m, proc, a):
    """(DeviceObject): the device is marked delete-pending and loses its name at once; it
    leaves its driver's list, and IoCreateDevice's reference goes, when no file object is
    open on it (ReferenceCount 0), else when the last one is closed."""
    device = a[0]
    dev = Struct(m.kspace, "_DEVICE_OBJECT", device)
    dox = Struct(m.kspace, "_DEVOBJ_EXTENSION", dev.get("DeviceObjectExtension"))
    dox.set("ExtensionFlags", dox.get("ExtensionFlags") | DOE_DELETE_PENDING)
    remove_from_directory(m, device)  # ObMakeTemporaryObject
    if dev.get("ReferenceCount") == 0:
        complete_pending_delete(m, device)
    return 0


@routine("IoDetachDevice", frame=0x28, size=0x80)
def IoDetachDevice(m, proc, a):
    """(TargetDevice): the device attached directly above it is detached."""
    target = Struct(m.kspace, "_DEVICE_OBJECT", a[0])
    above = target.get("AttachedDevice")
    if above:
        dox = Struct(m.kspace, "_DEVICE_OBJECT", above).get("DeviceObjectExtension")
        Struct(m.kspace, "_DEVOBJ_EXTENSION", dox).set("AttachedTo", 0)
        target.set("AttachedDevice", 0)
    return 0


@routine("IoGetDeviceObjectPointer", frame=0x58, size=0x200)
def IoGetDeviceObjectPointer(m, proc, a):
    """(ObjectName, DesiredAccess, *FileObject, *DeviceObject): open the named device as
    NtCreateFile does (IRP_MJ_CREATE to the top of its stack); the file object comes back
    referenced, with the top of the device's stack (not referenced: the file object keeps
    it).  The caller releases both with ObDereferenceObject(FileObject).

    Windows opens a kernel handle, references the file through it and closes it (which
    sends IRP_MJ_CLEANUP); the machine opens the file object without a handle."""
    space = proc.cpu.mem
    device = resolve_device_path(m, read_unicode_string(space, a[0]))
    if device is None:
        return STATUS_OBJECT_NAME_NOT_FOUND
    if type_of(m, device) != "Device":
        return STATUS_OBJECT_TYPE_MISMATCH
    file_obj = create_file_object(m, device)
    status = yield Call(m.sym("IopParseDevice"),
                        (device, file_obj, 0, FILE_OPEN << 24 | FILE_NON_DIRECTORY_FILE),
                        ret=0x9A)
    if status & 0xFFFFFFFF >= 0x80000000:
        discard_file_object(m, file_obj)
        return status
    space.write_u64(a[2], file_obj)
    space.write_u64(a[3], related_device(m, file_obj))
    return STATUS_SUCCESS


def discard_file_object(m, file_obj: int) -> None:
    """A file object whose open failed goes (its device loses the reference it took)."""
    dev = Struct(m.kspace, "_DEVICE_OBJECT",
                 Struct(m.kspace, "_FILE_OBJECT", file_obj).get("DeviceObject"))
    dev.set("ReferenceCount", dev.get("ReferenceCount") - 1)
    kind = Struct(m.kspace, "_OBJECT_TYPE", m.object_types["File"])
    kind.set("TotalNumberOfObjects", kind.get("TotalNumberOfObjects") - 1)
    free_pool_block(m, file_obj - OBJECT_HEADER_BODY)


def delete_device(m, device: int) -> None:
    """IopDeleteDevice, the device type's delete procedure: whatever still names or lists
    the device lets go of it before its memory goes."""
    remove_from_directory(m, device)
    unlink_from_driver(m, device)


register_delete_procedure("Device", delete_device)
