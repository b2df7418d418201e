"""Direct I/O: the caller's buffer described by an MDL whose PFN array holds the frames
the process's page tables map it to, locked while a driver has the IRP; the driver maps
those frames at a system address (MmMapLockedPagesSpecifyCache) and writes the caller's
memory through it.  Completion unlocks, unmaps and frees the MDL."""

from __future__ import annotations

from machine.events import INPUT_OFFSET, IO_AREA_OFFSET, IO_BUFFER, IOSB_OFFSET, OUTPUT_OFFSET
from machine.machine import STEPS_PER_TICK
from machine.mm.paging import PTE_PRESENT
from machine.scenario import boot_scenario, parse_scenario
from machine.types.view import Struct
from tests.machine.probe import (
    TIMER_DPC_GLOBALS,
    boot_probe,
    client_process,
    client_program,
    complete_pending_irp,
    complete_request,
    device_driver,
    init_timer_dpc,
    pend_until_timer,
    pool_in_use,
    scenario_header,
    start_system_thread,
)
from tests.machine.test_read_write import DO_DIRECT_IO
from tests.machine.test_read_write import machine as rw_machine

MDL_MAPPED_TO_SYSTEM_VA, MDL_PAGES_LOCKED, MDL_SOURCE_IS_NONPAGED_POOL = 0x1, 0x2, 0x4
MDL_ALLOCATED_FIXED_SIZE, MDL_WRITE_OPERATION = 0x8, 0x80
IOCTL_BUFFERED, IOCTL_IN_DIRECT, IOCTL_OUT_DIRECT = 0x222004, 0x222005, 0x222006

CONTROL = """
    push    rbx
    push    rsi
    push    rdi
    sub     rsp, 30h
    mov     rbx, rdx
    mov     rsi, qword ptr [rdx+0B8h]
    mov     eax, dword ptr [rbx+10h]
    mov     qword ptr [SeenFlags], rax
    cmp     dword ptr [rsi+18h], 222004h
    je      ctl_buffered
    mov     rcx, qword ptr [rbx+8]          ; Irp->MdlAddress
    mov     qword ptr [SeenMdl], rcx
    mov     qword ptr [rsp+28h], 10h        ; NormalPagePriority
    mov     dword ptr [rsp+20h], 0
    xor     r9d, r9d
    mov     r8d, 1                          ; MmCached
    xor     edx, edx                        ; KernelMode
    call    nt!MmMapLockedPagesSpecifyCache
    mov     qword ptr [SeenMapped], rax
    mov     rcx, qword ptr [rbx+18h]        ; the input, in the system buffer
    mov     qword ptr [SeenSystemBuffer], rcx
    mov     rdx, qword ptr [rcx]
    mov     qword ptr [SeenInput], rdx
    cmp     dword ptr [rsi+18h], 222005h
    jne     ctl_out
    mov     rdx, qword ptr [rax]            ; METHOD_IN_DIRECT: read the caller's buffer
    mov     qword ptr [SeenData], rdx
    jmp     ctl_complete
ctl_out:
    mov     rdx, 4F49544345524944h          ; METHOD_OUT_DIRECT: write "DIRECTIO" into it
    mov     qword ptr [rax], rdx            ; and complete it later:
""" + pend_until_timer("rbx", "rsi") + """
    jmp     ctl_return
ctl_buffered:
    mov     rcx, qword ptr [rbx+18h]
    mov     rdx, 4847464544434241h          ; "ABCDEFGH"
    mov     qword ptr [rcx], rdx
ctl_complete:
""" + complete_request("rbx", 8) + """
ctl_return:
    add     rsp, 30h
    pop     rdi
    pop     rsi
    pop     rbx
    ret
"""
GLOBALS = {"SeenFlags": 8, "SeenMdl": 8, "SeenMapped": 8, "SeenSystemBuffer": 8,
           "SeenInput": 8, "SeenData": 8, "PendingIrp": 8, **TIMER_DPC_GLOBALS}


def ioctl_machine(steps: list[str]):
    text = (scenario_header("direct", seed=7)
            + device_driver("direct", "Direct", {0x0: "CreateClose", 0x2: "CreateClose",
                                                  0xE: "Control", 0x12: "CreateClose"},
                            {"Control": CONTROL, "CompleteDpc": complete_pending_irp(0x10)},
                            GLOBALS, init_timer_dpc("CompleteDpc"))
            + client_program("Direct", steps))
    return boot_scenario(parse_scenario(text, "direct.toml"))


def seen(m, name: str) -> int:
    return m.kspace.read_u64(m.sym(f"direct!{name}"))


def frame_of(space, va: int) -> int:
    """The frame the page tables map va to."""
    return space.translate(va) >> 12


def test_an_out_direct_ioctl_writes_the_callers_frames_through_a_system_mapping():
    m = ioctl_machine([f'{{ ioctl = {IOCTL_OUT_DIRECT:#x}, device = {{device}}, '
                       'input = "0102030405060708", output = 16 }'])
    m.run(STEPS_PER_TICK * 4)  # dispatched and pended; the timer has not fired
    assert m.bugcheck is None
    proc = client_process(m)
    output = proc.peb + OUTPUT_OFFSET
    irp = Struct(m.kspace, "_IRP", seen(m, "PendingIrp"))
    mdl_addr = irp.get("MdlAddress")
    assert mdl_addr == seen(m, "SeenMdl")
    mdl = Struct(m.kspace, "_MDL", mdl_addr)
    assert mdl.get("StartVa") == output & ~0xFFF and mdl.get("ByteOffset") == output & 0xFFF
    assert mdl.get("ByteCount") == 16 and mdl.get("Process") == proc.eprocess
    assert mdl.get("Size") == 0x30 + 8  # one PFN
    pfn = m.kspace.read_u64(mdl_addr + 0x30)
    assert pfn == frame_of(proc.space, output)
    assert mdl.get("MdlFlags") == (MDL_MAPPED_TO_SYSTEM_VA | MDL_PAGES_LOCKED
                                   | MDL_ALLOCATED_FIXED_SIZE | MDL_WRITE_OPERATION)
    mapped = seen(m, "SeenMapped")
    assert mapped == mdl.get("MappedSystemVa") and mapped >= 0xFFFF800000000000
    assert frame_of(m.kspace, mapped) == pfn  # the same frame, at a second address
    assert proc.space.read(output, 8) == b"DIRECTIO"  # written through the system address
    ep = Struct(m.kspace, "_EPROCESS", proc.eprocess)
    assert ep.get("NumberOfLockedPages") == 1
    # the input went to a system buffer; no copy back for a direct request
    assert seen(m, "SeenInput") == 0x0807060504030201
    assert seen(m, "SeenFlags") == 0x30  # IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER
    m.run(STEPS_PER_TICK * 10)  # the DPC completes it
    assert m.bugcheck is None
    assert proc.space.read_u64(proc.peb + IOSB_OFFSET + 8) == 0x10
    assert not m.kspace.get_pte(mapped) & PTE_PRESENT  # unmapped with the unlock
    assert ep.get("NumberOfLockedPages") == 0
    assert pool_in_use(m, "Mdl ") == 0 and pool_in_use(m, "IoSB") == 0
    assert proc.space.read(output, 8) == b"DIRECTIO"


def test_an_in_direct_ioctl_locks_the_buffer_for_reading_and_the_driver_reads_it():
    m = ioctl_machine([
        f'{{ ioctl = {IOCTL_BUFFERED:#x}, device = {{device}}, output = 8 }}',
        f'{{ ioctl = {IOCTL_IN_DIRECT:#x}, device = {{device}}, input = "11", output = 8 }}'])
    m.run(STEPS_PER_TICK * 6)
    assert m.bugcheck is None
    proc = client_process(m)
    # the buffered IOCTL left "ABCDEFGH" in the output buffer; the direct one read it
    assert seen(m, "SeenData").to_bytes(8, "little") == b"ABCDEFGH"
    assert seen(m, "SeenInput") & 0xFF == 0x11
    assert proc.space.read(proc.peb + INPUT_OFFSET, 1) == b"\x11"
    assert pool_in_use(m, "Mdl ") == 0


def test_a_direct_read_across_a_page_boundary_has_one_pfn_per_page():
    m, proc = rw_machine(DO_DIRECT_IO, ['{ read = {device}, length = 0x200, offset = 0 }'])
    buffer = proc.peb + IO_AREA_OFFSET + IO_BUFFER
    copy = m.sym("rw!MdlCopy")  # the MDL header and PFN array as the driver saw them
    mdl = Struct(m.kspace, "_MDL", copy)
    assert mdl.get("ByteCount") == 0x200 and mdl.get("ByteOffset") == buffer & 0xFFF
    assert mdl.get("Size") == 0x30 + 2 * 8
    pfns = (m.kspace.read_u64(copy + 0x30), m.kspace.read_u64(copy + 0x38))
    assert pfns == (frame_of(proc.space, buffer), frame_of(proc.space, buffer + 0x100))
    assert m.kspace.read_u64(m.sym("rw!SeenMdlFlags")) & 0x83 == 0x83  # write op, mapped
    assert proc.space.read(buffer, 0x200) == bytes(range(0x100)) * 2
    assert proc.space.read_u64(proc.peb + IOSB_OFFSET + 8) == 0x200
    assert pool_in_use(m, "Mdl ") == 0


NONPAGED_MDL = """
    push    rbx
    push    rsi
    sub     rsp, 38h
    xor     ecx, ecx                        ; NonPagedPool
    mov     edx, 1800h
    mov     r8d, 74736554h                  ; 'Test'
    call    nt!ExAllocatePoolWithTag
    mov     rbx, rax
    mov     qword ptr [Buffer], rax
    lea     rcx, [rbx+10h]                  ; 0x1000 bytes from +0x10: two pages
    mov     edx, 1000h
    xor     r8d, r8d
    xor     r9d, r9d
    mov     qword ptr [rsp+20h], 0          ; no IRP
    call    nt!IoAllocateMdl
    mov     rsi, rax
    mov     qword ptr [Mdl], rax
    mov     rcx, rax
    call    nt!MmBuildMdlForNonPagedPool
    push    rsi
    push    rdi
    lea     rdi, [MdlCopy]
    mov     ecx, 40h
    rep     movsb
    pop     rdi
    pop     rsi
    mov     rcx, rsi                        ; map it a second time, write, unmap
    mov     qword ptr [rsp+28h], 10h
    mov     dword ptr [rsp+20h], 0
    xor     r9d, r9d
    mov     r8d, 1
    xor     edx, edx
    call    nt!MmMapLockedPagesSpecifyCache
    mov     qword ptr [SecondVa], rax
    mov     byte ptr [rax], 58h             ; 'X'
    movzx   ecx, word ptr [rsi+0Ah]
    mov     qword ptr [FlagsMapped], rcx
    mov     rdx, rsi
    mov     rcx, rax
    call    nt!MmUnmapLockedPages
    movzx   ecx, word ptr [rsi+0Ah]
    mov     qword ptr [FlagsUnmapped], rcx
    mov     rcx, rsi
    cmp     qword ptr [UnlockIt], 0
    je      free_it
    call    nt!MmUnlockPages                ; never locked: a driver bug
free_it:
    call    nt!IoFreeMdl
    mov     qword ptr [Done], 1
    add     rsp, 38h
    pop     rsi
    pop     rbx
    ret
"""


def nonpaged_machine(unlock: bool):
    m = boot_probe("npmdl", {"Run": NONPAGED_MDL},
                   {"Buffer": 8, "Mdl": 8, "MdlCopy": 0x40, "UnlockIt": 8, "Done": 8,
                    "SecondVa": 8, "FlagsMapped": 8, "FlagsUnmapped": 8})
    m.kspace.write_u64(m.sym("npmdl!UnlockIt"), int(unlock))
    start_system_thread(m, 0x7000, m.sym("npmdl!Run"))
    m.run(STEPS_PER_TICK * 2)
    return m


def test_an_mdl_built_for_nonpaged_pool_names_the_pools_frames():
    m = nonpaged_machine(unlock=False)
    assert m.bugcheck is None and m.kspace.read_u64(m.sym("npmdl!Done")) == 1
    buffer = m.kspace.read_u64(m.sym("npmdl!Buffer"))
    copy = m.sym("npmdl!MdlCopy")
    mdl = Struct(m.kspace, "_MDL", copy)
    assert mdl.get("MdlFlags") == MDL_SOURCE_IS_NONPAGED_POOL | MDL_ALLOCATED_FIXED_SIZE
    assert mdl.get("MappedSystemVa") == buffer + 0x10 and mdl.get("Process") == 0
    assert mdl.get("StartVa") == (buffer + 0x10) & ~0xFFF
    pfns = (m.kspace.read_u64(copy + 0x30), m.kspace.read_u64(copy + 0x38))
    assert pfns == (frame_of(m.kspace, buffer + 0x10), frame_of(m.kspace, buffer + 0x1010))
    # a second mapping of the same frames: written through it, then gone
    second = m.kspace.read_u64(m.sym("npmdl!SecondVa"))
    assert second & 0xFFF == 0x10 and second & ~0xFFF != buffer
    assert m.kspace.read(buffer + 0x10, 1) == b"X"
    assert m.kspace.read_u64(m.sym("npmdl!FlagsMapped")) & MDL_MAPPED_TO_SYSTEM_VA
    assert not m.kspace.read_u64(m.sym("npmdl!FlagsUnmapped")) & MDL_MAPPED_TO_SYSTEM_VA
    assert not m.kspace.get_pte(second) & PTE_PRESENT
    assert pool_in_use(m, "Mdl ") == 0  # IoFreeMdl gave it back


def test_unlocking_pages_that_were_never_locked_is_process_has_locked_pages():
    m = nonpaged_machine(unlock=True)
    assert m.bugcheck is not None and m.bugcheck.code == 0x76
    assert m.bugcheck.params[:2] == (1, m.kspace.read_u64(m.sym("npmdl!Mdl")))
