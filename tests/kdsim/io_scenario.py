"""A machine for the I/O and object command tests: a driver whose device has an unnamed
filter device attached above it; the filter passes requests down with a completion
routine and the lower device keeps reads and IOCTLs pending.  client.exe opens the device
for asynchronous I/O, issues a read (signalling an event) and an IOCTL, and ends up
waiting on its idle event: a file handle, two event handles and two pending IRPs."""

from __future__ import annotations

from commands.session import Session
from kdsim.live import LiveTarget
from machine.machine import STEPS_PER_TICK
from machine.scenario import boot_scenario, parse_scenario
from tests.machine.probe import (
    PASS_DOWN_WITH_COMPLETION,
    client_program,
    device_driver,
    scenario_header,
)

ATTACH_FILTER = """
    lea     rax, [UpperDevice]
    mov     qword ptr [rsp+30h], rax
    mov     dword ptr [rsp+28h], 0
    mov     dword ptr [rsp+20h], 0
    mov     r9d, 22h
    xor     r8d, r8d                        ; the filter device has no name
    mov     edx, 20h                        ; a device extension
    mov     rcx, rbx
    call    nt!IoCreateDevice
    mov     rdx, qword ptr [DeviceObject]
    mov     rcx, qword ptr [UpperDevice]
    call    nt!IoAttachDeviceToDeviceStack
    mov     qword ptr [LowerDevice], rax
"""
ROUTINES = {
    "Dispatch": """
    cmp     rcx, qword ptr [UpperDevice]
    je      upper
    lock inc qword ptr [Pended]
    mov     qword ptr [PendingIrp], rdx
    mov     rax, qword ptr [rdx+0B8h]
    or      byte ptr [rax+3], 1             ; IoMarkIrpPending
    mov     eax, 103h                       ; STATUS_PENDING
    ret
""" + PASS_DOWN_WITH_COMPLETION,
    "OnComplete": """
    xor     eax, eax
    ret
""",
}
GLOBALS = {"UpperDevice": 8, "LowerDevice": 8, "PendingIrp": 8, "Pended": 8}
STEPS = ['{ read = {device}, length = 0x10, offset = 0, event = true }',
         '{ ioctl = 0x222004, device = {device} }']


def scenario_text() -> str:
    return (scenario_header("stacked", seed=3)
            + device_driver("stacked", "Stacked",
                            {0x0: "CreateClose", 0x2: "CreateClose", 0x3: "Dispatch",
                             0xE: "Dispatch", 0x12: "CreateClose"},
                            ROUTINES, GLOBALS, entry_tail=ATTACH_FILTER)
            + client_program("Stacked", STEPS, overlapped=True))


def build():
    """(machine, session) with the client's two requests pending."""
    m = boot_scenario(parse_scenario(scenario_text(), "stacked.toml"))
    m.run(STEPS_PER_TICK * 8)
    assert m.bugcheck is None
    assert m.kspace.read_u64(m.sym("stacked!Pended")) == 2
    return m, Session(LiveTarget(m), processor=0)
