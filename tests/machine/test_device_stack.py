"""A device stack: a filter attached over a device gets the IRP first, passes it down
with a completion routine, and the routine runs with the filter's device as the IRP
completes — all through memory."""

from __future__ import annotations

from machine.events import IOSB_OFFSET
from machine.machine import STEPS_PER_TICK
from machine.scenario import boot_scenario, parse_scenario
from machine.types.view import Struct
from tests.machine.probe import COMPLETE_SUCCESS, PASS_DOWN_WITH_COMPLETION

SCENARIO_TEMPLATE = r'''
[scenario]
name = "stack"
[machine]
cpus = 2
[[driver]]
name = "stacker"
entry = "DriverEntry"
[[driver.global]]
name = "LowerDevice"
[[driver.global]]
name = "UpperDevice"
[[driver.global]]
name = "SeenDevice"
[[driver.global]]
name = "SeenContext"
[[driver.global]]
name = "SeenInformation"
[[driver.global]]
name = "Creates"
[[driver.global]]
name = "CreateMajor"
[[driver.string]]
name = "DeviceName"
value = '\Device\Lower'
[[driver.string]]
name = "LinkName"
value = '\??\Lower'
[[driver.routine]]
name = "DriverEntry"
code = """
    push    rbx
    sub     rsp, 40h
    mov     rbx, rcx
    lea     rax, [CreateClose]
    mov     qword ptr [rbx+70h], rax        ; IRP_MJ_CREATE
    lea     rax, [Dispatch]
    mov     qword ptr [rbx+0E0h], rax
    lea     rax, [LowerDevice]
    mov     qword ptr [rsp+30h], rax
    mov     dword ptr [rsp+28h], 0
    mov     dword ptr [rsp+20h], 0
    mov     r9d, 22h
    lea     r8, [DeviceName]
    xor     edx, edx
    mov     rcx, rbx
    call    nt!IoCreateDevice
    lea     rdx, [DeviceName]
    lea     rcx, [LinkName]
    call    nt!IoCreateSymbolicLink
    lea     rax, [UpperDevice]
    mov     qword ptr [rsp+30h], rax
    mov     dword ptr [rsp+28h], 0
    mov     dword ptr [rsp+20h], 0
    mov     r9d, 22h
    xor     r8d, r8d                        ; unnamed filter device
    xor     edx, edx
    mov     rcx, rbx
    call    nt!IoCreateDevice
    mov     rdx, qword ptr [LowerDevice]
    mov     rcx, qword ptr [UpperDevice]
    call    nt!IoAttachDeviceToDeviceStack
    mov     qword ptr [LowerDevice], rax
    xor     eax, eax
    add     rsp, 40h
    pop     rbx
    ret
"""
[[driver.routine]]
name = "CreateClose"
code = """
%s"""
[[driver.routine]]
name = "Dispatch"
code = """
    cmp     rcx, qword ptr [UpperDevice]
    je      upper
    mov     dword ptr [rdx+30h], 0          ; the lower device completes the request
    mov     qword ptr [rdx+38h], 99h
    sub     rsp, 28h
    mov     rcx, rdx
    xor     edx, edx
    call    nt!IofCompleteRequest
    add     rsp, 28h
    xor     eax, eax
    ret
@@PASS_DOWN@@"""
[[driver.routine]]
name = "OnComplete"
code = """
    mov     qword ptr [SeenDevice], rcx
    mov     qword ptr [SeenContext], r8
    mov     rax, qword ptr [rdx+38h]
    mov     qword ptr [SeenInformation], rax
    xor     eax, eax                        ; STATUS_SUCCESS: completion goes on
    ret
"""
[[event]]
at_tick = 2
action = "start_process"
image = "client.exe"
program = [
    { open = '\\.\Lower' },
    { ioctl = 0x222000, device = '\\.\Lower' },
]
'''
CREATE_COUNTED = """
    lock inc qword ptr [Creates]
    mov     rax, qword ptr [rdx+0B8h]
    mov     al, byte ptr [rax]
    mov     byte ptr [CreateMajor], al""" + COMPLETE_SUCCESS
SCENARIO_TEMPLATE = SCENARIO_TEMPLATE.replace("@@PASS_DOWN@@", PASS_DOWN_WITH_COMPLETION)
SCENARIO = SCENARIO_TEMPLATE % CREATE_COUNTED


def test_a_filter_sees_the_irp_first_and_its_completion_routine_runs_with_its_device():
    m = boot_scenario(parse_scenario(SCENARIO, "stack.toml"))
    upper = m.kspace.read_u64(m.sym("stacker!UpperDevice"))
    lower = m.kspace.read_u64(m.sym("stacker!LowerDevice"))
    up = Struct(m.kspace, "_DEVICE_OBJECT", upper)
    low = Struct(m.kspace, "_DEVICE_OBJECT", lower)
    assert low.get("AttachedDevice") == upper and up.get("StackSize") == 2
    dox = Struct(m.kspace, "_DEVOBJ_EXTENSION", up.get("DeviceObjectExtension"))
    assert dox.get("AttachedTo") == lower and dox.get("DeviceObject") == upper
    m.run(STEPS_PER_TICK * 6)
    read = lambda name: m.kspace.read_u64(m.sym(f"stacker!{name}"))  # noqa: E731
    assert read("SeenDevice") == upper
    assert read("SeenContext") == 0x1234
    assert read("SeenInformation") == 0x99
    client = next(p for p in m.processes if p.image == "client.exe")
    assert client.space.read_u64(client.peb + IOSB_OFFSET + 8) == 0x99
    assert m.bugcheck is None


def test_opening_the_device_sends_irp_mj_create_down_the_stack():
    m = boot_scenario(parse_scenario(SCENARIO, "stack.toml"))
    m.run(STEPS_PER_TICK * 6)
    assert m.kspace.read_u64(m.sym("stacker!Creates")) == 1
    assert m.kspace.read(m.sym("stacker!CreateMajor"), 1) == b"\0"  # IRP_MJ_CREATE
    client = next(p for p in m.processes if p.image == "client.exe")
    table = Struct(m.kspace, "_EPROCESS", client.eprocess).get("ObjectTable")
    from machine.ob.object import lookup_handle

    handle = client.space.read_u64(client.peb + 0x810)
    file_obj = lookup_handle(m, table, handle)
    assert Struct(m.kspace, "_FILE_OBJECT", file_obj).get("DeviceObject") == \
        m.kspace.read_u64(m.sym("stacker!LowerDevice"))


def test_a_driver_without_a_create_routine_refuses_the_open():
    m = boot_scenario(parse_scenario(
        SCENARIO.replace("    mov     qword ptr [rbx+70h], rax        ; IRP_MJ_CREATE\n", ""),
        "stack.toml"))
    m.run(STEPS_PER_TICK * 6)
    client = next(p for p in m.processes if p.image == "client.exe")
    # the open failed with STATUS_INVALID_DEVICE_REQUEST, so the IOCTL had no handle
    assert client.space.read_u64(client.peb + IOSB_OFFSET) == 0xC0000010
    assert m.kspace.read_u64(m.sym("stacker!Creates")) == 0
    assert m.kspace.read_u64(m.sym("stacker!SeenDevice")) == 0
