"""METHOD_BUFFERED: the driver works on a nonpaged copy of the caller's input; completion
copies IoStatus.Information bytes back to the caller's output buffer."""

from __future__ import annotations

from machine.events import OUTPUT_OFFSET
from machine.machine import STEPS_PER_TICK
from machine.scenario import boot_scenario, parse_scenario
from machine.types.view import Struct

SCENARIO = r'''
[scenario]
name = "buf"
[machine]
cpus = 2
[[driver]]
name = "buf"
entry = "DriverEntry"
[[driver.global]]
name = "DeviceObject"
[[driver.global]]
name = "SeenSystemBuffer"
[[driver.global]]
name = "SeenFlags"
[[driver.global]]
name = "MajorLog"
[[driver.global]]
name = "MajorCount"
[[driver.string]]
name = "DeviceName"
value = '\Device\Buf'
[[driver.string]]
name = "LinkName"
value = '\??\Buf'
[[driver.routine]]
name = "DriverEntry"
code = """
    push    rbx
    sub     rsp, 40h
    mov     rbx, rcx
    lea     rax, [CreateClose]
    mov     qword ptr [rbx+70h], rax
    mov     qword ptr [rbx+80h], rax        ; IRP_MJ_CLOSE
    mov     qword ptr [rbx+100h], rax       ; IRP_MJ_CLEANUP
    lea     rax, [Control]
    mov     qword ptr [rbx+0E0h], rax
    lea     rax, [DeviceObject]
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
    xor     eax, eax
    add     rsp, 40h
    pop     rbx
    ret
"""
[[driver.routine]]
name = "CreateClose"
code = """
    mov     rax, qword ptr [rdx+0B8h]
    movzx   ecx, byte ptr [rax]             ; MajorFunction
    mov     rax, qword ptr [MajorCount]
    lea     r8, [MajorLog]
    mov     byte ptr [r8+rax], cl
    inc     qword ptr [MajorCount]
    sub     rsp, 28h
    mov     dword ptr [rdx+30h], 0
    mov     qword ptr [rdx+38h], 0
    mov     rcx, rdx
    xor     edx, edx
    call    nt!IofCompleteRequest
    xor     eax, eax
    add     rsp, 28h
    ret
"""
[[driver.routine]]
name = "Control"
code = """
    sub     rsp, 28h
    mov     rax, qword ptr [rdx+18h]        ; AssociatedIrp.SystemBuffer
    mov     qword ptr [SeenSystemBuffer], rax
    mov     ecx, dword ptr [rdx+10h]
    mov     qword ptr [SeenFlags], rcx
    mov     rcx, qword ptr [rax]            ; the caller's input, copied
    inc     rcx
    mov     qword ptr [rax], rcx            ; the output, in the same buffer
    mov     dword ptr [rdx+30h], 0
    mov     qword ptr [rdx+38h], 8          ; 8 bytes to copy back
    mov     rcx, rdx
    xor     edx, edx
    call    nt!IofCompleteRequest
    xor     eax, eax
    add     rsp, 28h
    ret
"""
[[event]]
at_tick = 2
action = "start_process"
image = "client.exe"
program = [
    { open = '\\.\Buf' },
    { ioctl = 0x222004, device = '\\.\Buf', input = "0807060504030201", output = 8 },
    { close = '\\.\Buf' },
]
'''


def test_a_buffered_ioctl_round_trips_through_the_system_buffer():
    m = boot_scenario(parse_scenario(SCENARIO, "buf.toml"))
    m.run(STEPS_PER_TICK * 6)
    client = next(p for p in m.processes if p.image == "client.exe")
    assert client.space.read_u64(client.peb + OUTPUT_OFFSET) == 0x0102030405060709
    system = m.kspace.read_u64(m.sym("buf!SeenSystemBuffer"))
    assert system >= 0xFFFF800000000000  # a kernel copy, not the caller's buffer
    assert m.kspace.read_u64(m.sym("buf!SeenFlags")) & 0x70 == 0x70  # buffered, dealloc, in
    assert Struct(m.kspace, "_POOL_HEADER", system - 0x10).get("PoolType") == 0  # freed
    assert m.bugcheck is None


def test_closing_the_last_handle_sends_cleanup_then_close():
    m = boot_scenario(parse_scenario(SCENARIO, "buf.toml"))
    m.run(STEPS_PER_TICK * 6)
    count = m.kspace.read_u64(m.sym("buf!MajorCount"))
    log = m.kspace.read(m.sym("buf!MajorLog"), count)
    assert log == bytes([0x00, 0x12, 0x02])  # IRP_MJ_CREATE, IRP_MJ_CLEANUP, IRP_MJ_CLOSE
    device = m.kspace.read_u64(m.sym("buf!DeviceObject"))
    assert Struct(m.kspace, "_DEVICE_OBJECT", device).get("ReferenceCount") == 0
