"""IRPs themselves: the constants of wdm.h/ntifs.h the I/O manager works with, allocating
and freeing packets, their stack locations and the issuing thread's IrpList."""

from __future__ import annotations

from machine.rtl.lists import initialize_list_head, insert_tail_list, remove_entry_list
from machine.types.view import Struct

# Major function codes
IRP_MJ_CREATE, IRP_MJ_CLOSE, IRP_MJ_READ, IRP_MJ_WRITE = 0x00, 0x02, 0x03, 0x04
IRP_MJ_DEVICE_CONTROL, IRP_MJ_INTERNAL_DEVICE_CONTROL = 0x0E, 0x0F
IRP_MJ_CLEANUP = 0x12
IRP_MJ_MAXIMUM_FUNCTION = 0x1B
IO_TYPE_DRIVER, IO_TYPE_DEVICE, IO_TYPE_FILE, IO_TYPE_IRP = 4, 3, 5, 6
IO_STACK_LOCATION_SIZE = 0x48

# IRP.Flags
IRP_NOCACHE, IRP_PAGING_IO, IRP_SYNCHRONOUS_API = 0x1, 0x2, 0x4
IRP_BUFFERED_IO, IRP_DEALLOCATE_BUFFER, IRP_INPUT_OPERATION = 0x10, 0x20, 0x40
IRP_CREATE_OPERATION, IRP_READ_OPERATION, IRP_WRITE_OPERATION = 0x80, 0x100, 0x200
IRP_CLOSE_OPERATION, IRP_DEFER_IO_COMPLETION = 0x400, 0x800

# IO_STACK_LOCATION.Control
SL_PENDING_RETURNED = 0x01
SL_INVOKE_ON_CANCEL, SL_INVOKE_ON_SUCCESS, SL_INVOKE_ON_ERROR = 0x20, 0x40, 0x80

# The transfer method of an I/O control code (its low two bits)
METHOD_BUFFERED, METHOD_IN_DIRECT, METHOD_OUT_DIRECT, METHOD_NEITHER = 0, 1, 2, 3

# DEVICE_OBJECT.Flags
DO_BUFFERED_IO, DO_DIRECT_IO, DO_DEVICE_INITIALIZING = 0x04, 0x10, 0x80

# FILE_OBJECT.Flags, and the NtCreateFile options that set them
FO_FILE_OPEN, FO_SYNCHRONOUS_IO, FO_ALERTABLE_IO = 0x1, 0x2, 0x4
FO_NAMED_PIPE, FO_MAILSLOT, FO_HANDLE_CREATED = 0x80, 0x200, 0x40000
FILE_SYNCHRONOUS_IO_ALERT, FILE_SYNCHRONOUS_IO_NONALERT = 0x10, 0x20
# ByteOffset.LowPart values (with HighPart -1) that mean "at the file pointer"
FILE_USE_FILE_POINTER_POSITION = 0xFFFFFFFE

# _LOCK_OPERATION and KPROCESSOR_MODE
IO_READ_ACCESS, IO_WRITE_ACCESS, IO_MODIFY_ACCESS = 0, 1, 2
KERNEL_MODE, USER_MODE = 0, 1

# NTSTATUS values (commands/data/ntstatus.tsv)
STATUS_SUCCESS = 0
STATUS_PENDING = 0x103
STATUS_MORE_PROCESSING_REQUIRED = 0xC0000016
STATUS_ACCESS_VIOLATION = 0xC0000005
STATUS_INVALID_HANDLE = 0xC0000008
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_INVALID_DEVICE_REQUEST = 0xC0000010
STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034
STATUS_INSUFFICIENT_RESOURCES = 0xC000009A
STATUS_CANCELLED = 0xC0000120

# Bug checks (commands/data/bugcheck-codes.tsv)
MULTIPLE_IRP_COMPLETE_REQUESTS = 0x44
CANCEL_STATE_IN_COMPLETED_IRP = 0x48

FILE_DEVICE_UNKNOWN = 0x22


def nt_error(status: int) -> bool:
    """NT_ERROR: severity 3 (0xC...); warnings (0x8...) are not errors."""
    return status & 0xFFFFFFFF >= 0xC0000000


def irp_size(m, stack_size: int) -> int:
    return m.catalog.get("_IRP").size + stack_size * IO_STACK_LOCATION_SIZE


def allocate_irp(m, stack_size: int) -> int:
    """IoAllocateIrp: the packet and its stack locations after it; no location is
    current yet (CurrentLocation = StackCount + 1)."""
    size = irp_size(m, stack_size)
    irp_addr = m.pool.allocate(0, size, "Irp ")
    irp = Struct(m.kspace, "_IRP", irp_addr)
    irp.set("Type", IO_TYPE_IRP)
    irp.set("Size", size)
    irp.set("StackCount", stack_size)
    irp.set("CurrentLocation", stack_size + 1)
    irp.set("Tail.Overlay.CurrentStackLocation", irp_addr + size)
    initialize_list_head(m.kspace, irp.addr("ThreadListEntry"))
    return irp_addr


def free_irp(m, irp_addr: int) -> None:
    """IoFreeIrp: the IRP's pool block goes back (a later use of it is a use after free)."""
    m.pool.free(irp_addr)


def next_stack_location(m, irp_addr: int) -> Struct:
    """IoGetNextIrpStackLocation: the location the next driver called will own."""
    irp = Struct(m.kspace, "_IRP", irp_addr)
    return Struct(m.kspace, "_IO_STACK_LOCATION",
                  irp.get("Tail.Overlay.CurrentStackLocation") - IO_STACK_LOCATION_SIZE)


def first_stack_location(m, irp_addr: int) -> Struct:
    """The location the I/O manager filled in for the top driver: the last one in memory,
    still readable after completion has unwound past it."""
    irp = Struct(m.kspace, "_IRP", irp_addr)
    return Struct(m.kspace, "_IO_STACK_LOCATION",
                  irp_addr + irp.get("Size") - IO_STACK_LOCATION_SIZE)


def queue_irp_to_thread(m, irp_addr: int, ethread: int) -> None:
    """IopQueueThreadIrp: the IRP belongs to the thread until it completes."""
    irp = Struct(m.kspace, "_IRP", irp_addr)
    irp.set("Tail.Overlay.Thread", ethread)
    insert_tail_list(m.kspace, Struct(m.kspace, "_ETHREAD", ethread).addr("IrpList"),
                     irp.addr("ThreadListEntry"))


def unqueue_irp_from_thread(m, irp_addr: int) -> None:
    entry = Struct(m.kspace, "_IRP", irp_addr).addr("ThreadListEntry")
    remove_entry_list(m.kspace, entry)
    initialize_list_head(m.kspace, entry)


def attached_top(m, device: int) -> int:
    """IoGetAttachedDevice: the highest device attached above this one."""
    while True:
        above = Struct(m.kspace, "_DEVICE_OBJECT", device).get("AttachedDevice")
        if not above:
            return device
        device = above


def related_device(m, file_obj: int) -> int:
    """IoGetRelatedDeviceObject: requests go to the top of the file's device stack."""
    return attached_top(m, Struct(m.kspace, "_FILE_OBJECT", file_obj).get("DeviceObject"))
