"""Device objects going away and being found by name: IoDeleteDevice (at once when no
file is open on the device, else when the last one closes), IoGetDeviceObjectPointer
(an IRP_MJ_CREATE to the device's stack, a referenced file object and the top of the
stack) and IoDetachDevice — all read back from the objects in memory."""

from __future__ import annotations

from machine.machine import STEPS_PER_TICK
from machine.ob.object import OBJECT_HEADER_BODY, lookup_object, type_of
from machine.scenario import boot_scenario, parse_scenario
from machine.types.view import Struct
from tests.machine.probe import client_process, pool_in_use, scenario_header

DOE_DELETE_PENDING = 0x2

# keeper: \Device\Keeper (its creates and closes counted) and \Device\KeeperSpare; an
# IOCTL deletes one of them.
KEEPER = r"""
[[driver]]
name = "keeper"
entry = "DriverEntry"
source = '''
global Device: ptr;
global Spare: ptr;
global Creates: u64;
global Closes: u64;
string DeviceName = "\Device\Keeper";
string LinkName = "\??\Keeper";
string SpareName = "\Device\KeeperSpare";

routine DriverEntry(Driver: *_DRIVER_OBJECT, Registry: ptr): u32 {
    Driver->MajorFunction[IRP_MJ_CREATE] = &OnCreate;
    Driver->MajorFunction[IRP_MJ_CLEANUP] = &Complete;
    Driver->MajorFunction[IRP_MJ_CLOSE] = &OnClose;
    Driver->MajorFunction[IRP_MJ_DEVICE_CONTROL] = &OnControl;
    IoCreateDevice(Driver, 0x10, &DeviceName, FILE_DEVICE_UNKNOWN, 0, 0, &Device);
    IoCreateSymbolicLink(&LinkName, &DeviceName);
    IoCreateDevice(Driver, 0, &SpareName, FILE_DEVICE_UNKNOWN, 0, 0, &Spare);
    return STATUS_SUCCESS;
}

routine Complete(DeviceObject: ptr, Irp: *_IRP): u32 {
    Irp->IoStatus.Status = STATUS_SUCCESS;
    IofCompleteRequest(Irp, 0);
    return STATUS_SUCCESS;
}

routine OnCreate(DeviceObject: ptr, Irp: *_IRP): u32 {
    Creates += 1;
    return Complete(DeviceObject, Irp);
}

routine OnClose(DeviceObject: ptr, Irp: *_IRP): u32 {
    Closes += 1;
    return Complete(DeviceObject, Irp);
}

routine OnControl(DeviceObject: ptr, Irp: *_IRP): u32 {
    let stack = Irp->Tail.Overlay.CurrentStackLocation;
    if (stack->Parameters.DeviceIoControl.IoControlCode == 0x222000) {
        IoDeleteDevice(Device);
    } else {
        IoDeleteDevice(Spare);
    }
    return Complete(DeviceObject, Irp);
}
'''
"""

FINDER = r"""
[[driver]]
name = "finder"
entry = "DriverEntry"
source = '''
global Filter: ptr;
global Retries: u64;
global Delay: i64 = -100000;  // 10 ms
global FileObject: ptr;
global Found: ptr;
global Status: u64;
global Lower: ptr;
global AgainFile: ptr;
global AgainFound: ptr;
global MissingStatus: u64;
global MissingFile: ptr;
string TargetName = "\Device\Keeper";
string MissingName = "\Device\NoSuchDevice";

routine DriverEntry(Driver: *_DRIVER_OBJECT, Registry: ptr): u32 {
    // Boot drivers load on several worker threads at once: wait for keeper's device.
    Status = IoGetDeviceObjectPointer(&TargetName, 0x80, &FileObject, &Found);
    while (Status != STATUS_SUCCESS) {
        Retries += 1;
        KeDelayExecutionThread(KernelMode, 0, &Delay);
        Status = IoGetDeviceObjectPointer(&TargetName, 0x80, &FileObject, &Found);
    }
    IoCreateDevice(Driver, 0, NULL, FILE_DEVICE_UNKNOWN, 0, 0, &Filter);
    Lower = IoAttachDeviceToDeviceStack(Filter, Found);
    Driver->MajorFunction[IRP_MJ_CREATE] = &PassDown;
    IoGetDeviceObjectPointer(&TargetName, 0x80, &AgainFile, &AgainFound);
    IoDetachDevice(Lower);
    MissingStatus = IoGetDeviceObjectPointer(&MissingName, 0x80, &MissingFile, &Unused);
    return STATUS_SUCCESS;
}

global Unused: ptr;

routine PassDown(DeviceObject: ptr, Irp: *_IRP): u32 {
    let stack = Irp->Tail.Overlay.CurrentStackLocation;
    let next = (*_IO_STACK_LOCATION)((u64)stack - sizeof(_IO_STACK_LOCATION));
    next->MajorFunction = stack->MajorFunction;
    next->FileObject = stack->FileObject;
    next->Parameters.Create.Options = stack->Parameters.Create.Options;
    return IofCallDriver(Lower, Irp);
}
'''
"""
# finder, loaded after keeper, finds \Device\Keeper by name, attaches a filter device over
# it, finds it again (now the filter is the top of the stack) and detaches.

CLIENT = r"""
[[event]]
at_tick = 2
action = "start_process"
image = "client.exe"
program = [
    { open = '\\.\Keeper' },
    { ioctl = 0x222000, device = '\\.\Keeper' },
    { sleep_ms = 100 },
    { close = '\\.\Keeper' },
    { exit_process = 0 },
]
"""


def boot(events: str = "", finder: bool = False):
    drivers = KEEPER + (FINDER if finder else "")
    return boot_scenario(parse_scenario(scenario_header("devdel") + drivers + events,
                                        "devdel.toml"))


def g(m, name: str) -> int:
    return m.kspace.read_u64(m.sym(name))


def devices_of(m, driver_symbol: str) -> list[int]:
    """A driver's DeviceObject/NextDevice list, from its driver object."""
    device = g(m, driver_symbol)
    drv = Struct(m.kspace, "_DEVICE_OBJECT", device).get("DriverObject")
    out, at = [], Struct(m.kspace, "_DRIVER_OBJECT", drv).get("DeviceObject")
    while at:
        out.append(at)
        at = Struct(m.kspace, "_DEVICE_OBJECT", at).get("NextDevice")
    return out


def extension_flags(m, device: int) -> int:
    dox = Struct(m.kspace, "_DEVICE_OBJECT", device).get("DeviceObjectExtension")
    return Struct(m.kspace, "_DEVOBJ_EXTENSION", dox).get("ExtensionFlags")


def test_get_device_object_pointer_opens_the_device_and_returns_the_top_of_its_stack():
    m = boot(finder=True)
    m.run(STEPS_PER_TICK * 2)
    keeper, filt = g(m, "keeper!Device"), g(m, "finder!Filter")
    assert g(m, "finder!Status") == 0 and g(m, "finder!Found") == keeper
    f = Struct(m.kspace, "_FILE_OBJECT", g(m, "finder!FileObject"))
    assert type_of(m, f.address) == "File" and f.get("DeviceObject") == keeper
    h = Struct(m.kspace, "_OBJECT_HEADER", f.address - OBJECT_HEADER_BODY)
    assert (h.get("PointerCount"), h.get("HandleCount")) == (1, 0)  # referenced, no handle
    # The second lookup went through the filter (its create passed down): the top it
    # names is the filter, over the same device.
    assert g(m, "finder!Lower") == keeper and g(m, "finder!AgainFound") == filt
    assert Struct(m.kspace, "_FILE_OBJECT", g(m, "finder!AgainFile")).get("DeviceObject") \
        == keeper
    assert g(m, "keeper!Creates") == 2
    assert Struct(m.kspace, "_DEVICE_OBJECT", keeper).get("ReferenceCount") == 2
    # Detached again: nothing above the device, the filter attached to nothing.
    assert Struct(m.kspace, "_DEVICE_OBJECT", keeper).get("AttachedDevice") == 0
    dox = Struct(m.kspace, "_DEVICE_OBJECT", filt).get("DeviceObjectExtension")
    assert Struct(m.kspace, "_DEVOBJ_EXTENSION", dox).get("AttachedTo") == 0
    assert g(m, "finder!MissingStatus") == 0xC0000034 and g(m, "finder!MissingFile") == 0


def test_deleting_an_unopened_device_unlinks_names_and_frees_it_at_once():
    m = boot('''
[[event]]
at_tick = 2
action = "start_process"
image = "client.exe"
program = [{ open = '\\\\.\\Keeper' }, { ioctl = 0x222004, device = '\\\\.\\Keeper' }]
''')
    spare = g(m, "keeper!Spare")
    device_type = Struct(m.kspace, "_OBJECT_TYPE", m.object_types["Device"])
    count, blocks = device_type.get("TotalNumberOfObjects"), pool_in_use(m, "Devi")
    assert spare in devices_of(m, "keeper!Device")
    assert lookup_object(m, "\\Device\\KeeperSpare") == spare
    m.run(STEPS_PER_TICK * 3)
    assert spare not in devices_of(m, "keeper!Device")
    assert lookup_object(m, "\\Device\\KeeperSpare") is None
    assert device_type.get("TotalNumberOfObjects") == count - 1
    assert pool_in_use(m, "Devi") == blocks - 1


def test_deleting_an_open_device_waits_for_its_last_file_to_close():
    m = boot(CLIENT)
    keeper = g(m, "keeper!Device")
    device_type = Struct(m.kspace, "_OBJECT_TYPE", m.object_types["Device"])
    count, blocks = device_type.get("TotalNumberOfObjects"), pool_in_use(m, "Devi")
    m.run(STEPS_PER_TICK * 3)
    # Deleted while the client's file is open: delete pending and nameless, but still on
    # its driver's list and allocated.
    assert client_process(m).threads  # the client sleeps with its file open
    assert extension_flags(m, keeper) & DOE_DELETE_PENDING
    assert lookup_object(m, "\\Device\\Keeper") is None
    assert keeper in devices_of(m, "keeper!Spare")
    assert Struct(m.kspace, "_DEVICE_OBJECT", keeper).get("ReferenceCount") == 1
    assert device_type.get("TotalNumberOfObjects") == count
    # The client closes its handle: IRP_MJ_CLOSE reaches the device, then it goes.
    m.run(STEPS_PER_TICK * 8)
    assert g(m, "keeper!Closes") == 1
    assert devices_of(m, "keeper!Spare") == [g(m, "keeper!Spare")]
    assert device_type.get("TotalNumberOfObjects") == count - 1
    assert pool_in_use(m, "Devi") == blocks - 1
