"""METHOD_BUFFERED: the driver works on a nonpaged copy of the caller's input; completion
copies IoStatus.Information bytes back to the caller's output buffer."""

from __future__ import annotations

from machine.events import OUTPUT_OFFSET
from machine.machine import STEPS_PER_TICK
from machine.scenario import boot_scenario, parse_scenario
from machine.types.view import Struct
from tests.machine.probe import (
    LOG_MAJOR_AND_COMPLETE,
    MAJOR_LOG_GLOBALS,
    client_process,
    client_program,
    complete_request,
    device_driver,
    major_log,
    scenario_header,
)

CONTROL = """
    sub     rsp, 28h
    mov     rax, qword ptr [rdx+18h]        ; AssociatedIrp.SystemBuffer
    mov     qword ptr [SeenSystemBuffer], rax
    mov     ecx, dword ptr [rdx+10h]
    mov     qword ptr [SeenFlags], rcx
    mov     rcx, qword ptr [rax]            ; the caller's input, copied
    inc     rcx
    mov     qword ptr [rax], rcx            ; the output, in the same buffer
    ; completed with 8 bytes to copy back
""" + complete_request("rdx", 8) + """
    add     rsp, 28h
    ret
"""
SCENARIO = (
    scenario_header("buf")
    + device_driver("buf", "Buf", {0x0: "CreateClose", 0x2: "CreateClose",
                                    0x12: "CreateClose", 0xE: "Control"},
                    {"CreateClose": LOG_MAJOR_AND_COMPLETE, "Control": CONTROL},
                    {"SeenSystemBuffer": 8, "SeenFlags": 8, **MAJOR_LOG_GLOBALS})
    + client_program("Buf", ['{ ioctl = 0x222004, device = {device}, '
                             'input = "0807060504030201", output = 8 }',
                             "{ close = {device} }"]))


def test_a_buffered_ioctl_round_trips_through_the_system_buffer():
    m = boot_scenario(parse_scenario(SCENARIO, "buf.toml"))
    m.run(STEPS_PER_TICK * 6)
    client = client_process(m)
    assert client.space.read_u64(client.peb + OUTPUT_OFFSET) == 0x0102030405060709
    system = m.kspace.read_u64(m.sym("buf!SeenSystemBuffer"))
    assert system >= 0xFFFF800000000000  # a kernel copy, not the caller's buffer
    assert m.kspace.read_u64(m.sym("buf!SeenFlags")) & 0x70 == 0x70  # buffered, dealloc, in
    assert Struct(m.kspace, "_POOL_HEADER", system - 0x10).get("PoolType") == 0  # freed
    assert m.bugcheck is None


def test_closing_the_last_handle_sends_cleanup_then_close():
    m = boot_scenario(parse_scenario(SCENARIO, "buf.toml"))
    m.run(STEPS_PER_TICK * 6)
    # IRP_MJ_CREATE, IRP_MJ_CLEANUP, IRP_MJ_CLOSE
    assert major_log(m, "buf") == bytes([0x00, 0x12, 0x02])
    device = m.kspace.read_u64(m.sym("buf!DeviceObject"))
    assert Struct(m.kspace, "_DEVICE_OBJECT", device).get("ReferenceCount") == 0
