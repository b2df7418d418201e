"""Drivers looking up processes and threads: the current process and thread, lookups by
client ID and by handle (each taking a reference on the object's header), and what a
reference kept past the process's exit does: the exited process stays on
PsActiveProcessHead, a zombie without a handle table, until the driver lets it go."""

from __future__ import annotations

from commands.session import Session
from kdsim.live import LiveTarget
from machine.events import HANDLE_OFFSET
from machine.machine import STEPS_PER_TICK
from machine.ob.object import OBJECT_HEADER_BODY
from machine.rtl.lists import iterate_list
from machine.scenario import boot_scenario, parse_scenario
from machine.types.view import Struct
from tests.machine.probe import client_file, client_process, scenario_header

RELEASE = 0x222000  # CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS)
BY_HANDLE = 0x222004  # ... 0x801: reference the object behind the handle in the input

DRIVER = r"""
[[driver]]
name = "watcher"
entry = "DriverEntry"
source = '''
global Device: ptr;
global ClientProcess: ptr;
global ClientPid: u64;
global LookupStatus: u64;
global LookedUp: ptr;
global CurrentThread: ptr;
global ThreadStatus: u64;
global LookedUpThread: ptr;
global ThreadCount: u64;
global BadStatus: u64;
global Unused: ptr;
global ExpectedType: ptr;
global AnyStatus: ptr;
global ByHandle: ptr;
global Granted: u64;
global TypedStatus: u64;
global KernelStatus: u64;
global SelfStatus: u64;
global Self: ptr;
global ReleaseCount: u64;
string DeviceName = "\Device\Watcher";
string LinkName = "\??\Watcher";

routine DriverEntry(Driver: *_DRIVER_OBJECT, Registry: ptr): u32 {
    Driver->MajorFunction[IRP_MJ_CREATE] = &OnCreate;
    Driver->MajorFunction[IRP_MJ_CLOSE] = &Complete;
    Driver->MajorFunction[IRP_MJ_CLEANUP] = &Complete;
    Driver->MajorFunction[IRP_MJ_DEVICE_CONTROL] = &OnControl;
    IoCreateDevice(Driver, 0, &DeviceName, FILE_DEVICE_UNKNOWN, 0, 0, &Device);
    IoCreateSymbolicLink(&LinkName, &DeviceName);
    return STATUS_SUCCESS;
}

routine Complete(DeviceObject: ptr, Irp: *_IRP): u32 {
    Irp->IoStatus.Status = STATUS_SUCCESS;
    IofCompleteRequest(Irp, 0);
    return STATUS_SUCCESS;
}

// The first client is remembered: its process by ID (a reference kept), its thread by
// ID (a reference given back at once).
routine OnCreate(DeviceObject: ptr, Irp: *_IRP): u32 {
    if (ClientProcess == 0) {
        ClientProcess = PsGetCurrentProcess();
        ClientPid = PsGetProcessId(ClientProcess);
        LookupStatus = PsLookupProcessByProcessId(ClientPid, &LookedUp);
        CurrentThread = PsGetCurrentThread();
        ThreadStatus = PsLookupThreadByThreadId(PsGetCurrentThreadId(), &LookedUpThread);
        ThreadCount = u64[(u64)LookedUpThread - 0x30];
        ObfDereferenceObject(LookedUpThread);
        BadStatus = PsLookupProcessByProcessId(0x7FFC, &Unused);
    }
    return Complete(DeviceObject, Irp);
}

routine OnControl(DeviceObject: ptr, Irp: *_IRP): u32 {
    let stack = Irp->Tail.Overlay.CurrentStackLocation;
    let code = stack->Parameters.DeviceIoControl.IoControlCode;
    if (code == 0x222000) {
        ObfDereferenceObject(LookedUp);
        ReleaseCount += 1;
    } else if (code == 0x222004) {
        let handle = u64[Irp->AssociatedIrp.SystemBuffer];
        AnyStatus = ObReferenceObjectByHandle(handle, 0, 0, UserMode, &ByHandle, &Granted);
        TypedStatus = ObReferenceObjectByHandle(handle, 0, ExpectedType, UserMode, &Unused, 0);
        KernelStatus = ObReferenceObjectByHandle(handle | 0xFFFFFFFF80000000, 0, 0, UserMode,
                                                 &Unused, 0);
        SelfStatus = ObReferenceObjectByHandle(0xFFFFFFFFFFFFFFFF, 0, ExpectedType,
                                               KernelMode, &Self, 0);
    }
    return Complete(DeviceObject, Irp);
}
'''
"""

# The first client opens the device, asks for the handle lookup and exits; a second one
# (another image) later asks the driver to let the first one go.
EVENTS = r"""
[[event]]
at_tick = 2
action = "start_process"
image = "client.exe"
program = [
    { open = '\\.\Watcher' },
    { ioctl = 0x222004, device = '\\.\Watcher', input = "0400000000000000" },
    { sleep_ms = 100 },
    { exit_process = 0 },
]

[[event]]
at_tick = 14
action = "start_process"
image = "release.exe"
program = [
    { open = '\\.\Watcher' },
    { ioctl = 0x222000, device = '\\.\Watcher' },
    { exit_process = 0 },
]
"""


def boot():
    m = boot_scenario(parse_scenario(scenario_header("watch") + DRIVER + EVENTS, "watch.toml"))
    m.kspace.write_u64(m.sym("watcher!ExpectedType"), m.object_types["Process"])
    return m


def g(m, name: str) -> int:
    return m.kspace.read_u64(m.sym(f"watcher!{name}"))


def header(m, body: int) -> Struct:
    return Struct(m.kspace, "_OBJECT_HEADER", body - OBJECT_HEADER_BODY)


def active(m) -> list[int]:
    off = Struct(m.kspace, "_EPROCESS", 0).offset("ActiveProcessLinks")
    return [e - off for e in iterate_list(m.kspace, m.sym("nt!PsActiveProcessHead"))]


def debugger(m, command: str) -> str:
    return "\n".join(line for res in Session(LiveTarget(m), processor=0).execute(command)
                     for line in res.lines)


def test_lookups_by_id_name_the_current_process_and_thread_and_reference_them():
    m = boot()
    m.run(STEPS_PER_TICK * 3)
    client = client_process(m)
    main = client.threads[0]
    assert g(m, "ClientProcess") == client.eprocess
    assert g(m, "ClientPid") == client.pid
    assert g(m, "LookupStatus") == 0 and g(m, "LookedUp") == client.eprocess
    assert g(m, "CurrentThread") == main.ethread
    assert g(m, "ThreadStatus") == 0 and g(m, "LookedUpThread") == main.ethread
    # The thread lookup's reference was one more than the thread's own ones, and went.
    assert g(m, "ThreadCount") == header(m, main.ethread).get("PointerCount") + 1
    assert g(m, "BadStatus") == 0xC000000D and g(m, "Unused") == 0  # STATUS_INVALID_PARAMETER


def test_reference_by_handle_checks_the_type_and_the_callers_mode():
    m = boot()
    m.run(STEPS_PER_TICK * 3)
    client = client_process(m)
    assert client.space.read_u64(client.peb + HANDLE_OFFSET) == 4  # the handle it sent
    file_obj = client_file(m, client)
    assert g(m, "AnyStatus") == 0 and g(m, "ByHandle") == file_obj
    # The handle's GrantedAccess: GENERIC_READ | GENERIC_WRITE as the File type maps them.
    assert g(m, "Granted") >> 32 == 0x12019F
    assert g(m, "TypedStatus") == 0xC0000024  # STATUS_OBJECT_TYPE_MISMATCH: not a process
    assert g(m, "KernelStatus") == 0xC0000008  # a kernel handle from user mode
    assert g(m, "SelfStatus") == 0 and g(m, "Self") == client.eprocess  # NtCurrentProcess()


def test_a_reference_kept_past_exit_leaves_a_zombie_until_it_is_released():
    m = boot()
    m.run(STEPS_PER_TICK * 12)
    client = client_process(m)
    ep = Struct(m.kspace, "_EPROCESS", client.eprocess)
    process_type = Struct(m.kspace, "_OBJECT_TYPE", m.object_types["Process"])
    processes = process_type.get("TotalNumberOfObjects")
    # Exited: no threads, no handle table, but still listed, held by one reference (the
    # driver's; the Self reference by handle is one more, never released).
    assert ep.get("ActiveThreads") == 0 and ep.get("ObjectTable") == 0
    assert client.threads == [] and client.eprocess in active(m)
    h = header(m, client.eprocess)
    assert (h.get("PointerCount"), h.get("HandleCount")) == (2, 0)
    listing = debugger(m, "!process 0 0 client.exe")
    assert f"PROCESS {client.eprocess:016x}" in listing
    assert "ObjectTable: 00000000  HandleCount: 0." in listing
    assert "PointerCount: 2" in debugger(m, f"!object {client.eprocess:x}")
    # The release client's IOCTL drops the lookup's reference: one is left (the leak by
    # handle), so the zombie stays.
    m.run(STEPS_PER_TICK * 6)
    assert g(m, "ReleaseCount") == 1
    assert h.get("PointerCount") == 1 and client.eprocess in active(m)
    # The last reference goes: the process leaves the list and the machine's records.
    m.kspace.write_u64(m.sym("watcher!LookedUp"), client.eprocess)
    m.at_tick(m.tick_count + 1, _release_again)
    m.run(STEPS_PER_TICK * 4)
    assert client.eprocess not in active(m) and client not in m.processes
    # The two releasing clients came and went; the zombie is one process object fewer.
    assert not {"release.exe", "again.exe"} & {p.image for p in m.processes}
    assert process_type.get("TotalNumberOfObjects") == processes - 1


def _release_again(m) -> None:
    from machine.events import start_process

    start_process(m, {"image": "again.exe", "program": [
        {"open": "\\\\.\\Watcher"}, {"ioctl": RELEASE, "device": "\\\\.\\Watcher"},
        {"exit_process": 0}]})
