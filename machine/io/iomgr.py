"""The I/O manager: driver and device objects, device stacks, IofCallDriver, and files:
opening a device (NtCreateFile, IRP_MJ_CREATE) and closing its last handle.  Requests on
open files are in control.py (IOCTLs) and readwrite.py; completion in completion.py."""

from __future__ import annotations

from machine.io.irp import (
    DO_DEVICE_INITIALIZING,
    FILE_SYNCHRONOUS_IO_ALERT,
    FILE_SYNCHRONOUS_IO_NONALERT,
    FO_ALERTABLE_IO,
    FO_FILE_OPEN,
    FO_HANDLE_CREATED,
    FO_SYNCHRONOUS_IO,
    IO_STACK_LOCATION_SIZE,
    IO_TYPE_DEVICE,
    IO_TYPE_DRIVER,
    IO_TYPE_FILE,
    IRP_CLOSE_OPERATION,
    IRP_CREATE_OPERATION,
    IRP_MJ_CLEANUP,
    IRP_MJ_CLOSE,
    IRP_MJ_CREATE,
    IRP_MJ_MAXIMUM_FUNCTION,
    IRP_SYNCHRONOUS_API,
    KERNEL_MODE,
    STATUS_INVALID_DEVICE_REQUEST,
    STATUS_INVALID_HANDLE,
    STATUS_OBJECT_NAME_NOT_FOUND,
    STATUS_SUCCESS,
    USER_MODE,
    allocate_irp,
    attached_top,
    next_stack_location,
    queue_irp_to_thread,
)
from machine.io.service import IOP_OTHER_TRANSFER
from machine.ke.native import Call, routine
from machine.ke.wait import init_header
from machine.ldr.loader import write_unicode_string
from machine.ob.object import create_object
from machine.rtl.unicode import read_unicode_string
from machine.types.view import Struct


def create_driver_object(m, name: str, image) -> int:
    size = m.catalog.get("_DRIVER_OBJECT").size
    body = create_object(m, "Driver", size + 0x60, "Driv", name=name,
                         directory=m.directories["\\Driver"])
    d = Struct(m.kspace, "_DRIVER_OBJECT", body)
    d.set("Type", IO_TYPE_DRIVER)
    d.set("Size", size)
    d.set("DriverStart", image.base)
    d.set("DriverSize", image.size)
    d.set("DriverSection", image.ldr_entry)
    d.set("DriverExtension", body + size)  # the extension follows the object, as on Windows
    write_unicode_string(m, d.addr("DriverName"), f"\\Driver\\{name}")
    invalid = m.sym("nt!IopInvalidDeviceRequest")
    for i in range(IRP_MJ_MAXIMUM_FUNCTION + 1):
        d.set(f"MajorFunction[{i}]", invalid)
    return body


@routine("IopInvalidDeviceRequest", frame=0x28, size=0x60)
def IopInvalidDeviceRequest(m, proc, a):
    irp = Struct(m.kspace, "_IRP", a[1])
    irp.set("IoStatus.Status", STATUS_INVALID_DEVICE_REQUEST)
    yield Call(m.sym("IofCompleteRequest"), (a[1], 0), ret=0x2D)
    return STATUS_INVALID_DEVICE_REQUEST


@routine("IoCreateDevice", frame=0x78, size=0x400)
def IoCreateDevice(m, proc, a):
    """(DriverObject, DeviceExtensionSize, DeviceName, DeviceType, Characteristics,
    Exclusive, *DeviceObject)"""
    space = proc.cpu.mem
    driver, ext_size, name_us = a[0], a[1] & 0xFFFFFFFF, a[2]
    size = m.catalog.get("_DEVICE_OBJECT").size
    name = None
    if name_us:
        name = read_unicode_string(space, name_us)
    folder, _, leaf = (name or "").rpartition("\\")
    directory = m.directories.get(folder, 0)
    dox_size = m.catalog.get("_DEVOBJ_EXTENSION").size
    body = create_object(m, "Device", size + ext_size + dox_size, "Devi",
                         name=leaf if name else None, directory=directory)
    dev = Struct(m.kspace, "_DEVICE_OBJECT", body)
    dev.set("Type", IO_TYPE_DEVICE)
    dev.set("Size", size + ext_size)
    dev.set("ReferenceCount", 0)
    dev.set("DriverObject", driver)
    dev.set("DeviceType", a[3] & 0xFFFFFFFF)
    dev.set("Characteristics", a[4] & 0xFFFFFFFF)
    dev.set("Flags", DO_DEVICE_INITIALIZING)
    dev.set("StackSize", 1)
    dev.set("AlignmentRequirement", 0)
    if ext_size:
        dev.set("DeviceExtension", body + size)
    # The device object extension follows the driver's extension, as on Windows.
    dox = body + size + ext_size
    dev.set("DeviceObjectExtension", dox)
    x = Struct(m.kspace, "_DEVOBJ_EXTENSION", dox)
    x.set("Type", 0xD)
    x.set("Size", dox_size)
    x.set("DeviceObject", body)
    drv = Struct(m.kspace, "_DRIVER_OBJECT", driver)
    dev.set("NextDevice", drv.get("DeviceObject"))
    drv.set("DeviceObject", body)
    space.write_u64(a[6], body)
    return STATUS_SUCCESS


@routine("IoCreateSymbolicLink", frame=0x48, size=0x100)
def IoCreateSymbolicLink(m, proc, a):
    """(SymbolicLinkName, DeviceName): a symbolic-link object in the namespace."""
    from machine.ob.symlink import LinkError, create_symbolic_link

    space = proc.cpu.mem
    try:
        create_symbolic_link(m, read_unicode_string(space, a[0]),
                             read_unicode_string(space, a[1]))
    except LinkError as err:
        return err.status
    return STATUS_SUCCESS


@routine("IoDeleteSymbolicLink", frame=0x48, size=0x100)
def IoDeleteSymbolicLink(m, proc, a):
    """(SymbolicLinkName): the link leaves its directory (its object goes with it)."""
    from machine.ob.object import dereference, remove_from_directory

    link = lookup_link(m, read_unicode_string(proc.cpu.mem, a[0]))
    if link is None:
        return STATUS_OBJECT_NAME_NOT_FOUND
    remove_from_directory(m, link)
    dereference(m, link)
    return STATUS_SUCCESS


def lookup_link(m, path: str) -> int | None:
    """The symbolic-link object a path names itself (its last component not followed)."""
    from machine.ob.object import type_of
    from machine.ob.symlink import lookup_object

    found = lookup_object(m, path, follow_last=False)
    return found if found is not None and type_of(m, found) == "SymbolicLink" else None


@routine("IoGetAttachedDevice", frame=0x28, size=0x40)
def IoGetAttachedDevice(m, proc, a):
    return attached_top(m, a[0])


@routine("IoAttachDeviceToDeviceStack", frame=0x38, size=0x100)
def IoAttachDeviceToDeviceStack(m, proc, a):
    """(SourceDevice, TargetDevice) -> the device attached to (the old top), or NULL."""
    source, target = a[0], a[1]
    top = attached_top(m, target)
    t = Struct(m.kspace, "_DEVICE_OBJECT", top)
    src = Struct(m.kspace, "_DEVICE_OBJECT", source)
    t.set("AttachedDevice", source)
    src.set("StackSize", t.get("StackSize") + 1)
    src.set("AlignmentRequirement", t.get("AlignmentRequirement"))
    Struct(m.kspace, "_DEVOBJ_EXTENSION", src.get("DeviceObjectExtension")).set(
        "AttachedTo", top)
    return top


@routine("IofCallDriver", frame=0x38, size=0x80)
def IofCallDriver(m, proc, a):
    device, irp_addr = a[0], a[1]
    irp = Struct(m.kspace, "_IRP", irp_addr)
    irp.set("CurrentLocation", irp.get("CurrentLocation") - 1)
    stack = irp.get("Tail.Overlay.CurrentStackLocation") - IO_STACK_LOCATION_SIZE
    irp.set("Tail.Overlay.CurrentStackLocation", stack)
    sl = Struct(m.kspace, "_IO_STACK_LOCATION", stack)
    sl.set("DeviceObject", device)
    major = sl.get("MajorFunction")
    driver = Struct(m.kspace, "_DEVICE_OBJECT", device).get("DriverObject")
    dispatch = Struct(m.kspace, "_DRIVER_OBJECT", driver).get(f"MajorFunction[{major}]")
    status = yield Call(dispatch, (device, irp_addr), ret=0x55)
    return status


def resolve_device_path(m, path: str) -> int | None:
    """The device a path names: `\\.\\X` and `\\??\\X` go through the DOS-device links."""
    from machine.ob.object import lookup_object

    if path.startswith("\\\\.\\"):
        path = "\\??\\" + path[4:]
    return lookup_object(m, path)


def create_file_object(m, device: int) -> int:
    size = m.catalog.get("_FILE_OBJECT").size
    fo = create_object(m, "File", size, "File")
    f = Struct(m.kspace, "_FILE_OBJECT", fo)
    f.set("Type", IO_TYPE_FILE)
    f.set("Size", size)
    f.set("DeviceObject", device)
    init_header(m.kspace, f.addr("Event"), 0, m.catalog.get("_KEVENT").size, 0)
    init_header(m.kspace, f.addr("Lock"), 1, m.catalog.get("_KEVENT").size, 0)
    dev = Struct(m.kspace, "_DEVICE_OBJECT", device)
    dev.set("ReferenceCount", dev.get("ReferenceCount") + 1)
    return fo


# OBJECT_ATTRIBUTES (wdm.h): Length, RootDirectory, ObjectName at +0x10, Attributes, ...
OBJECT_ATTRIBUTES_NAME = 0x10


@routine("NtCreateFile", frame=0x88, size=0x100)
def NtCreateFile(m, proc, a):
    """(FileHandle*, DesiredAccess, ObjectAttributes*, IoStatusBlock*, AllocationSize*,
    FileAttributes, ShareAccess, CreateDisposition, CreateOptions, EaBuffer, EaLength)"""
    args = tuple(a[i] for i in range(11))
    status = yield Call(m.sym("IopCreateFile"), args, ret=0x71)
    return status


@routine("IopCreateFile", frame=0xE8, size=0x500)
def IopCreateFile(m, proc, a):
    thread = proc.current
    space = proc.cpu.mem  # the caller's parameters are in its own address space
    path = read_unicode_string(space, space.read_u64(a[2] + OBJECT_ATTRIBUTES_NAME))
    device = resolve_device_path(m, path)
    if device is None:
        return STATUS_OBJECT_NAME_NOT_FOUND
    file_obj = create_file_object(m, device)
    status = yield Call(m.sym("IopParseDevice"),
                        (device, file_obj, a[3], (a[7] << 24) | (a[8] & 0xFFFFFF)), ret=0x3B9)
    if status & 0xFFFFFFFF >= 0x80000000:
        return status
    from machine.ob.object import insert_handle

    table = Struct(m.kspace, "_EPROCESS", thread.process.eprocess).get("ObjectTable")
    handle = insert_handle(m, table, file_obj, access=a[1] & 0xFFFFFFFF)
    fo = Struct(m.kspace, "_FILE_OBJECT", file_obj)
    fo.set("Flags", fo.get("Flags") | FO_HANDLE_CREATED)
    space.write_u64(a[0], handle)
    return status


@routine("IopParseDevice", frame=0x1D8, size=0x900)
def IopParseDevice(m, proc, a):
    """(Device, FileObject, IoStatusBlock*, Options = Disposition << 24 | CreateOptions):
    send IRP_MJ_CREATE to the top of the device's stack and wait for it.  The create
    options decide whether the file object does synchronous I/O (then it keeps a file
    pointer and each request waits for its completion)."""
    thread = proc.current
    file_obj = a[1]
    fo = Struct(m.kspace, "_FILE_OBJECT", file_obj)
    options = a[3] & 0xFFFFFF
    if options & (FILE_SYNCHRONOUS_IO_ALERT | FILE_SYNCHRONOUS_IO_NONALERT):
        flags = FO_SYNCHRONOUS_IO
        if options & FILE_SYNCHRONOUS_IO_ALERT:
            flags |= FO_ALERTABLE_IO
        fo.set("Flags", fo.get("Flags") | flags)
    top = attached_top(m, a[0])
    irp_addr = allocate_irp(m, Struct(m.kspace, "_DEVICE_OBJECT", top).get("StackSize"))
    irp = Struct(m.kspace, "_IRP", irp_addr)
    irp.set("RequestorMode", USER_MODE)
    irp.set("UserIosb", a[2])
    irp.set("Flags", IRP_CREATE_OPERATION | IRP_SYNCHRONOUS_API)
    irp.set("Tail.Overlay.OriginalFileObject", file_obj)
    sl = next_stack_location(m, irp_addr)
    sl.set("MajorFunction", IRP_MJ_CREATE)
    sl.set("FileObject", file_obj)
    sl.set("Parameters.Create.Options", a[3] & 0xFFFFFFFF)
    queue_irp_to_thread(m, irp_addr, thread.ethread)
    status = yield Call(m.sym("IopSynchronousServiceTail"),
                        (top, irp_addr, file_obj, 0, KERNEL_MODE, 1, IOP_OTHER_TRANSFER),
                        ret=0x6F3)
    if status & 0xFFFFFFFF < 0x80000000:
        fo.set("Flags", fo.get("Flags") | FO_FILE_OPEN)
    return status


@routine("IopLoadDriver", frame=0x1B8, size=0x900)
def IopLoadDriver(m, proc, a):
    """Run a loaded driver image's DriverEntry (the image is mapped and linked)."""
    image = proc.current.work_item
    drv = create_driver_object(m, image.name, image)
    image.driver_object = drv
    reg = m.pool.allocate(0, 0x10, "Strg")
    write_unicode_string(m, reg, "\\REGISTRY\\MACHINE\\SYSTEM\\ControlSet001\\Services\\"
                         + image.name)
    d = Struct(m.kspace, "_DRIVER_OBJECT", drv)
    d.set("DriverInit", image.entry)
    status = yield Call(image.entry, (drv, reg), ret=0x2C5)
    return status


@routine("NtClose", frame=0x48, size=0x100)
def NtClose(m, proc, a):
    """(Handle): close a handle; the last handle to a file sends IRP_MJ_CLEANUP and
    IRP_MJ_CLOSE to its device's stack."""
    from machine.ob.object import OBJECT_HEADER_BODY, remove_handle, type_of

    thread = proc.current
    table = Struct(m.kspace, "_EPROCESS", thread.process.eprocess).get("ObjectTable")
    body = remove_handle(m, table, a[0])
    if body is None:
        return STATUS_INVALID_HANDLE
    header = Struct(m.kspace, "_OBJECT_HEADER", body - OBJECT_HEADER_BODY)
    if type_of(m, body) == "File" and header.get("HandleCount") == 0:
        yield Call(m.sym("IopCloseFile"), (body,), ret=0x8C)
    return STATUS_SUCCESS


@routine("IopCloseFile", frame=0x78, size=0x300)
def IopCloseFile(m, proc, a):
    """The last handle is gone: IRP_MJ_CLEANUP, then IRP_MJ_CLOSE, each waited for."""
    thread = proc.current
    file_obj = a[0]
    device = attached_top(m, Struct(m.kspace, "_FILE_OBJECT", file_obj).get("DeviceObject"))
    for major, ret in ((IRP_MJ_CLEANUP, 0x124), (IRP_MJ_CLOSE, 0x1E7)):
        irp_addr = allocate_irp(m, Struct(m.kspace, "_DEVICE_OBJECT", device).get("StackSize"))
        irp = Struct(m.kspace, "_IRP", irp_addr)
        irp.set("Flags", IRP_CLOSE_OPERATION | IRP_SYNCHRONOUS_API)
        irp.set("Tail.Overlay.OriginalFileObject", file_obj)
        sl = next_stack_location(m, irp_addr)
        sl.set("MajorFunction", major)
        sl.set("FileObject", file_obj)
        queue_irp_to_thread(m, irp_addr, thread.ethread)
        yield Call(m.sym("IopSynchronousServiceTail"),
                   (device, irp_addr, file_obj, 0, KERNEL_MODE, 1, IOP_OTHER_TRANSFER), ret=ret)
    dev = Struct(m.kspace, "_DEVICE_OBJECT", Struct(m.kspace, "_FILE_OBJECT", file_obj).get(
        "DeviceObject"))
    dev.set("ReferenceCount", dev.get("ReferenceCount") - 1)
    if dev.get("ReferenceCount") == 0:
        complete_pending_delete(m, dev.address)  # IoDeleteDevice waited for this file
    return 0


# -- deleting a device (IoDeleteDevice is in devobj.py) -------------------------------

DOE_DELETE_PENDING = 0x2  # _DEVOBJ_EXTENSION.ExtensionFlags


def delete_pending(m, device: int) -> bool:
    dox = Struct(m.kspace, "_DEVICE_OBJECT", device).get("DeviceObjectExtension")
    return bool(Struct(m.kspace, "_DEVOBJ_EXTENSION", dox).get("ExtensionFlags")
                & DOE_DELETE_PENDING)


def unlink_from_driver(m, device: int) -> bool:
    """Take the device off its driver's DeviceObject/NextDevice list; False if it was
    not on it."""
    dev = Struct(m.kspace, "_DEVICE_OBJECT", device)
    link = Struct(m.kspace, "_DRIVER_OBJECT", dev.get("DriverObject")).addr("DeviceObject")
    next_off = dev.offset("NextDevice")
    while current := m.kspace.read_u64(link):
        if current == device:
            m.kspace.write_u64(link, dev.get("NextDevice"))
            dev.set("NextDevice", 0)
            return True
        link = current + next_off
    return False


def complete_pending_delete(m, device: int) -> None:
    """IopCompleteUnloadOrDelete: a device deleted while files were open on it leaves its
    driver's list once the last one is closed, and IoCreateDevice's reference goes."""
    from machine.ob.object import dereference

    if delete_pending(m, device) and unlink_from_driver(m, device):
        dereference(m, device)
