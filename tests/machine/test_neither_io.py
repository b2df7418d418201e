"""Neither I/O: no system buffer, no MDL.  A METHOD_NEITHER IOCTL gives the driver the
caller's input pointer in Parameters.DeviceIoControl.Type3InputBuffer and its output
pointer in Irp->UserBuffer; a read or write on a device with neither DO_BUFFERED_IO nor
DO_DIRECT_IO gets the caller's buffer in Irp->UserBuffer.  Those are user addresses of
the calling process: valid only in its context."""

from __future__ import annotations

from machine.events import INPUT_OFFSET, IO_AREA_OFFSET, IO_BUFFER, IOSB_OFFSET, OUTPUT_OFFSET
from machine.machine import STEPS_PER_TICK
from machine.scenario import boot_scenario, parse_scenario
from tests.machine.probe import (
    TIMER_DPC_GLOBALS,
    client_process,
    client_program,
    complete_request,
    device_driver,
    init_timer_dpc,
    pend_until_timer,
    scenario_header,
)
from tests.machine.test_read_write import machine as rw_machine

IOCTL_NEITHER, IOCTL_NEITHER_LATER = 0x222003, 0x222007
CONTROL = """
    push    rbx
    sub     rsp, 20h
    mov     rbx, rdx
    mov     rax, qword ptr [rdx+0B8h]
    mov     rcx, qword ptr [rax+20h]        ; Parameters.DeviceIoControl.Type3InputBuffer
    mov     qword ptr [SeenType3Input], rcx
    mov     rcx, qword ptr [rdx+70h]        ; Irp->UserBuffer
    mov     qword ptr [SeenUserBuffer], rcx
    mov     rcx, qword ptr [rdx+18h]
    mov     qword ptr [SeenSystemBuffer], rcx
    mov     rcx, qword ptr [rdx+8]
    mov     qword ptr [SeenMdl], rcx
    mov     ecx, dword ptr [rdx+10h]
    mov     qword ptr [SeenFlags], rcx
    cmp     dword ptr [rax+18h], 222007h
    je      later
    mov     rcx, qword ptr [SeenType3Input] ; the caller's memory, read and written in place
    mov     rcx, qword ptr [rcx]
    not     rcx
    mov     rdx, qword ptr [SeenUserBuffer]
    mov     qword ptr [rdx], rcx
""" + complete_request("rbx", 8) + """
    add     rsp, 20h
    pop     rbx
    ret
later:                                      ; keep the IRP and write its buffer from a DPC
""" + pend_until_timer("rbx", "rax") + """
    add     rsp, 20h
    pop     rbx
    ret
"""
LATE_DPC = """
    mov     rax, qword ptr [PendingIrp]
    mov     rax, qword ptr [rax+70h]        ; a user address, in whatever process runs now
    mov     qword ptr [rax], 1
    ret
"""
GLOBALS = {"SeenType3Input": 8, "SeenUserBuffer": 8, "SeenSystemBuffer": 8, "SeenMdl": 8,
           "SeenFlags": 8, "PendingIrp": 8, **TIMER_DPC_GLOBALS}


def machine(ioctl: int):
    text = (scenario_header("neither", seed=9)
            + device_driver("neither", "Neither", {0x0: "CreateClose", 0x2: "CreateClose",
                                                    0xE: "Control", 0x12: "CreateClose"},
                            {"Control": CONTROL, "LateDpc": LATE_DPC}, GLOBALS,
                            init_timer_dpc("LateDpc"))
            + client_program("Neither", [f'{{ ioctl = {ioctl:#x}, device = {{device}}, '
                                         'input = "0011223344556677", output = 8 }']))
    m = boot_scenario(parse_scenario(text, "neither.toml"))
    m.run(STEPS_PER_TICK * 6)
    return m, client_process(m)


def seen(m, name: str) -> int:
    return m.kspace.read_u64(m.sym(f"neither!{name}"))


def test_a_method_neither_ioctl_passes_the_callers_pointers_untouched():
    m, proc = machine(IOCTL_NEITHER)
    assert m.bugcheck is None
    assert seen(m, "SeenType3Input") == proc.peb + INPUT_OFFSET
    assert seen(m, "SeenUserBuffer") == proc.peb + OUTPUT_OFFSET
    assert seen(m, "SeenSystemBuffer") == 0 and seen(m, "SeenMdl") == 0
    assert seen(m, "SeenFlags") == 0  # nothing to copy back or free
    # the driver wrote the caller's output buffer itself, in the caller's context
    assert proc.space.read_u64(proc.peb + OUTPUT_OFFSET) == 0x8899AABBCCDDEEFF
    assert proc.space.read_u64(proc.peb + IOSB_OFFSET + 8) == 8


def test_a_neither_pointer_used_from_a_dpc_is_outside_the_callers_context():
    m, proc = machine(IOCTL_NEITHER_LATER)
    m.run(STEPS_PER_TICK * 10)
    # The DPC runs in an arbitrary thread (here: a processor's idle thread, whose address
    # space has no user half): the user address is not mapped at DISPATCH_LEVEL.
    assert m.bugcheck is not None and m.bugcheck.code == 0xD1
    assert m.bugcheck.params[0] == proc.peb + OUTPUT_OFFSET


def test_a_read_on_a_device_without_buffering_flags_gets_the_callers_pointer():
    m, proc = rw_machine(0, ['{ read = {device}, length = 0x18, offset = 8 }'])
    buffer = proc.peb + IO_AREA_OFFSET + IO_BUFFER
    seen_rw = lambda name: m.kspace.read_u64(m.sym(f"rw!{name}"))  # noqa: E731
    assert seen_rw("SeenUserBuffer") == buffer
    assert seen_rw("SeenSystemBuffer") == 0 and seen_rw("SeenMdl") == 0
    assert seen_rw("SeenFlags") == 0x900  # IRP_READ_OPERATION | IRP_DEFER_IO_COMPLETION
    assert proc.space.read(buffer, 0x18) == bytes(range(8, 0x20))


def test_a_write_on_a_device_without_buffering_flags_reads_the_callers_memory():
    data = bytes(range(0x20, 0x30))
    m, proc = rw_machine(0, [f'{{ write = {{device}}, data = "{data.hex()}", offset = 0 }}'])
    assert m.kspace.read_u64(m.sym("rw!SeenUserBuffer")) == proc.peb + IO_AREA_OFFSET + IO_BUFFER
    assert m.kspace.read(m.sym("rw!Written"), len(data)) == data
