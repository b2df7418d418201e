"""The I/O manager: driver and device objects, IRPs and the calls that carry them."""

from __future__ import annotations

from machine.ke.native import Call, routine
from machine.ke.wait import init_header
from machine.ldr.loader import write_unicode_string
from machine.ob.object import create_object, lookup_handle
from machine.rtl.lists import initialize_list_head, insert_tail_list, remove_entry_list
from machine.types.view import Struct

IRP_MJ_MAXIMUM_FUNCTION = 0x1B
IRP_MJ_CREATE = 0x00
IRP_MJ_CLOSE = 0x02
IRP_MJ_CLEANUP = 0x12
IRP_MJ_DEVICE_CONTROL = 0x0E
IO_TYPE_DRIVER, IO_TYPE_DEVICE, IO_TYPE_FILE, IO_TYPE_IRP = 4, 3, 5, 6
IO_STACK_LOCATION_SIZE = 0x48
SL_PENDING_RETURNED = 0x01
# IRP flags (wdm.h) and the transfer methods of an I/O control code (its low two bits)
IRP_SYNCHRONOUS_API, IRP_BUFFERED_IO, IRP_DEALLOCATE_BUFFER = 0x4, 0x10, 0x20
IRP_INPUT_OPERATION = 0x40
METHOD_BUFFERED, METHOD_IN_DIRECT, METHOD_OUT_DIRECT, METHOD_NEITHER = 0, 1, 2, 3
SL_INVOKE_ON_CANCEL, SL_INVOKE_ON_SUCCESS, SL_INVOKE_ON_ERROR = 0x20, 0x40, 0x80
STATUS_PENDING = 0x103
STATUS_MORE_PROCESSING_REQUIRED = 0xC0000016
STATUS_SUCCESS = 0
STATUS_INVALID_HANDLE = 0xC0000008
STATUS_INVALID_DEVICE_REQUEST = 0xC0000010
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
FILE_DEVICE_UNKNOWN = 0x22
DO_DEVICE_INITIALIZING = 0x80
USER_MODE = 1


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
        us = Struct(space, "_UNICODE_STRING", name_us)
        name = space.read(us.get("Buffer"), us.get("Length")).decode("utf-16-le")
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
    space = proc.cpu.mem

    def text(us_addr: int) -> str:
        us = Struct(space, "_UNICODE_STRING", us_addr)
        return space.read(us.get("Buffer"), us.get("Length")).decode("utf-16-le")

    m.io_links[text(a[0])] = text(a[1])
    return STATUS_SUCCESS


def attached_top(m, device: int) -> int:
    """IoGetAttachedDevice: the highest device attached above this one."""
    while True:
        above = Struct(m.kspace, "_DEVICE_OBJECT", device).get("AttachedDevice")
        if not above:
            return device
        device = above


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


@routine("IofCompleteRequest", frame=0x58, size=0x400)
def IofCompleteRequest(m, proc, a):
    """(Irp, PriorityBoost): unwind the stack locations upward, calling each completion
    routine a higher driver set (with that driver's device); STATUS_MORE_PROCESSING_
    REQUIRED stops the unwinding.  Then the rest of completion runs in the issuing
    thread, through the special kernel APC embedded in the IRP (IopCompleteRequest)."""
    irp_addr = a[0]
    space = m.kspace
    irp = Struct(space, "_IRP", irp_addr)
    status = irp.get("IoStatus.Status") & 0xFFFFFFFF
    while irp.get("CurrentLocation") <= irp.get("StackCount"):
        location = irp.get("Tail.Overlay.CurrentStackLocation")
        sl = Struct(space, "_IO_STACK_LOCATION", location)
        control = sl.get("Control")
        irp.set("CurrentLocation", irp.get("CurrentLocation") + 1)
        irp.set("Tail.Overlay.CurrentStackLocation", location + IO_STACK_LOCATION_SIZE)
        if control & SL_PENDING_RETURNED:
            irp.set("PendingReturned", 1)
        routine = sl.get("CompletionRoutine")
        wanted = SL_INVOKE_ON_SUCCESS if status < 0x80000000 else SL_INVOKE_ON_ERROR
        if irp.get("Cancel"):
            wanted = SL_INVOKE_ON_CANCEL
        if routine and control & wanted:
            upper = 0
            if irp.get("CurrentLocation") <= irp.get("StackCount"):
                upper = Struct(space, "_IO_STACK_LOCATION",
                               location + IO_STACK_LOCATION_SIZE).get("DeviceObject")
            result = yield Call(routine, (upper, irp_addr, sl.get("Context")), ret=0x1A5)
            if result & 0xFFFFFFFF == STATUS_MORE_PROCESSING_REQUIRED:
                return 0
            status = irp.get("IoStatus.Status") & 0xFFFFFFFF
    thread = irp.get("Tail.Overlay.Thread")
    if not thread:
        free_irp(m, irp_addr)
        return 0
    apc = irp.addr("Tail.Apc")
    yield Call(m.sym("KeInitializeApc"),
               (apc, thread, 0, m.sym("IopCompleteRequest"), 0, 0, 0, 0), ret=0x2B6)
    yield Call(m.sym("KeInsertQueueApc"), (apc, irp.get("Tail.Overlay.OriginalFileObject"),
                                           0, 0), ret=0x2D9)
    return 0


@routine("IopCompleteRequest", frame=0x88, size=0x300)
def IopCompleteRequest(m, proc, a):
    """The IRP's special kernel APC, in the thread that issued it: copy the status block
    to the caller, signal its event (or the file object's), release the IRP.
    (Apc, &NormalRoutine, &NormalContext, &SystemArgument1 = the file object, &...)
    The APC overlays Tail.Overlay, so the file object comes through the argument."""
    irp_addr = a[0] - Struct(m.kspace, "_IRP", 0).offset("Tail.Apc")
    irp = Struct(m.kspace, "_IRP", irp_addr)
    space = proc.cpu.mem  # the issuing thread's address space: the caller's IOSB is there
    iosb = irp.get("UserIosb")
    if iosb:
        space.write_u64(iosb, irp.get("IoStatus.Status") & 0xFFFFFFFF)
        space.write_u64(iosb + 8, irp.get("IoStatus.Information"))
    flags = irp.get("Flags")
    system = irp.get("AssociatedIrp.SystemBuffer")
    if flags & IRP_BUFFERED_IO and system:
        if flags & IRP_INPUT_OPERATION and irp.get("IoStatus.Status") & 0xFFFFFFFF < 0x80000000:
            count = irp.get("IoStatus.Information")
            if count:
                space.write(irp.get("UserBuffer"), m.kspace.read(system, count))
        if flags & IRP_DEALLOCATE_BUFFER:
            Struct(m.kspace, "_POOL_HEADER", system - 0x10).set("PoolType", 0)
    event = irp.get("UserEvent")
    file_obj = space.read_u64(a[3])
    if file_obj:
        Struct(m.kspace, "_FILE_OBJECT", file_obj).set(
            "FinalStatus", irp.get("IoStatus.Status"))
    if not event and file_obj:
        event = Struct(m.kspace, "_FILE_OBJECT", file_obj).addr("Event")
    remove_entry_list(m.kspace, irp.addr("ThreadListEntry"))
    initialize_list_head(m.kspace, irp.addr("ThreadListEntry"))
    free_irp(m, irp_addr)
    if event:
        yield Call(m.sym("KeSetEvent"), (event, 0, 0), ret=0x1C2)
    return 0


def free_irp(m, irp_addr: int) -> None:
    """IoFreeIrp: the IRP's pool block goes back (a later use of it is a use after free)."""
    Struct(m.kspace, "_POOL_HEADER", irp_addr - 0x10).set("PoolType", 0)


def allocate_irp(m, stack_size: int) -> int:
    size = m.catalog.get("_IRP").size + stack_size * IO_STACK_LOCATION_SIZE
    irp_addr = m.pool.allocate(0, size, "Irp ")
    irp = Struct(m.kspace, "_IRP", irp_addr)
    irp.set("Type", IO_TYPE_IRP)
    irp.set("Size", size)
    irp.set("StackCount", stack_size)
    irp.set("CurrentLocation", stack_size + 1)
    irp.set("Tail.Overlay.CurrentStackLocation", irp_addr + size)
    initialize_list_head(m.kspace, irp.addr("ThreadListEntry"))
    return irp_addr


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
    ep = Struct(m.kspace, "_EPROCESS", thread.process.eprocess)
    file_obj = lookup_handle(m, ep.get("ObjectTable"), a[0])
    if file_obj is None:
        return STATUS_INVALID_HANDLE
    # IoGetRelatedDeviceObject: requests go to the top of the device's stack.
    device = attached_top(m, Struct(m.kspace, "_FILE_OBJECT", file_obj).get("DeviceObject"))
    stack_size = Struct(m.kspace, "_DEVICE_OBJECT", device).get("StackSize")
    irp_addr = allocate_irp(m, stack_size)
    irp = Struct(m.kspace, "_IRP", irp_addr)
    irp.set("RequestorMode", USER_MODE)
    irp.set("UserIosb", a[4])
    irp.set("UserEvent", a[1])
    irp.set("UserBuffer", a[8])
    irp.set("Tail.Overlay.Thread", thread.ethread)
    irp.set("Tail.Overlay.OriginalFileObject", file_obj)
    code, in_len, out_len = a[5] & 0xFFFFFFFF, a[7] & 0xFFFFFFFF, a[9] & 0xFFFFFFFF
    flags = IRP_SYNCHRONOUS_API
    if code & 3 != METHOD_NEITHER and max(in_len, out_len):
        # METHOD_BUFFERED (and, for now, the input side of the direct methods): the
        # driver works on a nonpaged copy; completion copies the output back.
        system = m.pool.allocate(0, max(in_len, out_len), "IoSB")
        if in_len:
            m.kspace.write(system, proc.cpu.mem.read(a[6], in_len))
        irp.set("AssociatedIrp.SystemBuffer", system)
        flags |= IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER
        if out_len and code & 3 == METHOD_BUFFERED:
            flags |= IRP_INPUT_OPERATION
    irp.set("Flags", flags)
    sl = Struct(m.kspace, "_IO_STACK_LOCATION",
                irp.get("Tail.Overlay.CurrentStackLocation") - IO_STACK_LOCATION_SIZE)
    sl.set("MajorFunction", IRP_MJ_DEVICE_CONTROL if a[10] else 0x0F)
    sl.set("FileObject", file_obj)
    sl.set("Parameters.DeviceIoControl.IoControlCode", a[5] & 0xFFFFFFFF)
    sl.set("Parameters.DeviceIoControl.InputBufferLength", a[7] & 0xFFFFFFFF)
    sl.set("Parameters.DeviceIoControl.OutputBufferLength", a[9] & 0xFFFFFFFF)
    sl.set("Parameters.DeviceIoControl.Type3InputBuffer", a[6])
    insert_tail_list(m.kspace, Struct(m.kspace, "_ETHREAD", thread.ethread).addr("IrpList"),
                     irp.addr("ThreadListEntry"))
    status = yield Call(m.sym("IopSynchronousServiceTail"), (device, irp_addr, file_obj, 0),
                        ret=0x700)
    return status


@routine("IopSynchronousServiceTail", frame=0xA8, size=0x300)
def IopSynchronousServiceTail(m, proc, a):
    """(DeviceObject, Irp, FileObject, ...): send the IRP; for synchronous I/O that the
    driver pended, wait on the file object's event until completion sets it."""
    file_obj = a[2]
    if file_obj:  # KeClearEvent: each synchronous request waits for its own completion
        Struct(m.kspace, "_FILE_OBJECT", file_obj).set("Event.Header.SignalState", 0)
    status = yield Call(m.sym("IofCallDriver"), (a[0], a[1]), ret=0x1D0)
    if status & 0xFFFFFFFF == STATUS_PENDING and file_obj:
        event = Struct(m.kspace, "_FILE_OBJECT", file_obj).addr("Event")
        yield Call(m.sym("KeWaitForSingleObject"), (event, 0, 0, 0, 0), ret=0x2A1)
        status = Struct(m.kspace, "_FILE_OBJECT", file_obj).get("FinalStatus")
    return status


def resolve_device_path(m, path: str) -> int | None:
    """The device a path names: `\\.\\X` and `\\??\\X` go through the DOS-device links."""
    from machine.ob.object import lookup_object

    if path.startswith("\\\\.\\"):
        path = "\\??\\" + path[4:]
    return lookup_object(m, m.io_links.get(path, path))


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
    name = Struct(space, "_UNICODE_STRING", space.read_u64(a[2] + OBJECT_ATTRIBUTES_NAME))
    path = space.read(name.get("Buffer"), name.get("Length")).decode("utf-16-le")
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
    space.write_u64(a[0], handle)
    return status


@routine("IopParseDevice", frame=0x1D8, size=0x900)
def IopParseDevice(m, proc, a):
    """(Device, FileObject, IoStatusBlock*, Options): send IRP_MJ_CREATE to the top of
    the device's stack."""
    thread = proc.current
    top = attached_top(m, a[0])
    irp_addr = allocate_irp(m, Struct(m.kspace, "_DEVICE_OBJECT", top).get("StackSize"))
    irp = Struct(m.kspace, "_IRP", irp_addr)
    irp.set("RequestorMode", USER_MODE)
    irp.set("UserIosb", a[2])
    irp.set("Tail.Overlay.Thread", thread.ethread)
    irp.set("Tail.Overlay.OriginalFileObject", a[1])
    sl = Struct(m.kspace, "_IO_STACK_LOCATION",
                irp.get("Tail.Overlay.CurrentStackLocation") - IO_STACK_LOCATION_SIZE)
    sl.set("MajorFunction", IRP_MJ_CREATE)
    sl.set("FileObject", a[1])
    sl.set("Parameters.Create.Options", a[3] & 0xFFFFFFFF)
    insert_tail_list(m.kspace, Struct(m.kspace, "_ETHREAD", thread.ethread).addr("IrpList"),
                     irp.addr("ThreadListEntry"))
    status = yield Call(m.sym("IopSynchronousServiceTail"), (top, irp_addr, a[1], 0),
                        ret=0x6F3)
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
    file_obj = a[0]
    device = attached_top(m, Struct(m.kspace, "_FILE_OBJECT", file_obj).get("DeviceObject"))
    for major, ret in ((IRP_MJ_CLEANUP, 0x124), (IRP_MJ_CLOSE, 0x1E7)):
        irp_addr = allocate_irp(m, Struct(m.kspace, "_DEVICE_OBJECT", device).get("StackSize"))
        irp = Struct(m.kspace, "_IRP", irp_addr)
        irp.set("Tail.Overlay.Thread", proc.current.ethread)
        irp.set("Tail.Overlay.OriginalFileObject", file_obj)
        sl = Struct(m.kspace, "_IO_STACK_LOCATION",
                    irp.get("Tail.Overlay.CurrentStackLocation") - IO_STACK_LOCATION_SIZE)
        sl.set("MajorFunction", major)
        sl.set("FileObject", file_obj)
        insert_tail_list(m.kspace, Struct(m.kspace, "_ETHREAD", proc.current.ethread).addr(
            "IrpList"), irp.addr("ThreadListEntry"))
        yield Call(m.sym("IopSynchronousServiceTail"), (device, irp_addr, file_obj, 0),
                   ret=ret)
    dev = Struct(m.kspace, "_DEVICE_OBJECT", Struct(m.kspace, "_FILE_OBJECT", file_obj).get(
        "DeviceObject"))
    dev.set("ReferenceCount", dev.get("ReferenceCount") - 1)
    return 0
