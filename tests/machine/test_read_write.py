"""NtReadFile and NtWriteFile: IRP_MJ_READ/IRP_MJ_WRITE with the length, byte offset and
key in the stack location, the caller's buffer handed over the way the device asks
(buffered, direct, neither), the file pointer of a synchronous file, and the caller's
status block and event at completion."""

from __future__ import annotations

from machine.events import (
    IO_APC_CONTEXT,
    IO_APC_COUNT,
    IO_APC_IOSB,
    IO_AREA_OFFSET,
    IO_BUFFER,
    IO_EVENT_HANDLE,
    IO_STATUS,
    IOSB_OFFSET,
)
from machine.machine import STEPS_PER_TICK
from machine.ob.object import lookup_handle
from machine.scenario import boot_scenario, parse_scenario
from machine.types.view import Struct
from tests.machine.probe import (
    client_file,
    client_process,
    client_program,
    device_driver,
    pool_in_use,
    scenario_header,
)

DO_BUFFERED_IO, DO_DIRECT_IO = 0x4, 0x10
STATUS_INVALID_PARAMETER = 0xC000000D

# Where the driver reaches the caller's buffer: the MDL mapped at a system address, the
# system buffer, or the caller's own pointer.  rcx = Irp -> rax.
BUFFER_OF = """
    sub     rsp, 38h
    mov     rax, qword ptr [rcx+8]          ; Irp->MdlAddress
    test    rax, rax
    jz      bo_not_direct
    mov     qword ptr [SeenMdl], rax
    push    rsi
    push    rdi
    mov     rsi, rax                        ; keep the MDL and its first two PFNs
    lea     rdi, [MdlCopy]
    mov     ecx, 40h
    rep     movsb
    pop     rdi
    pop     rsi
    mov     rcx, rax
    mov     qword ptr [rsp+28h], 10h        ; NormalPagePriority
    mov     dword ptr [rsp+20h], 0          ; BugCheckOnFailure
    xor     r9d, r9d                        ; RequestedAddress
    mov     r8d, 1                          ; MmCached
    xor     edx, edx                        ; KernelMode
    call    nt!MmMapLockedPagesSpecifyCache
    mov     qword ptr [SeenMapped], rax
    mov     rcx, qword ptr [SeenMdl]
    movzx   edx, word ptr [rcx+0Ah]
    mov     qword ptr [SeenMdlFlags], rdx
    jmp     bo_done
bo_not_direct:
    mov     rax, qword ptr [rcx+18h]        ; AssociatedIrp.SystemBuffer
    test    rax, rax
    jnz     bo_done
    mov     rax, qword ptr [rcx+70h]        ; Irp->UserBuffer
bo_done:
    add     rsp, 38h
    ret
"""
RECORD = """
    mov     rsi, qword ptr [rdx+0B8h]       ; the current stack location
    mov     eax, dword ptr [rsi+8]          ; Parameters.Read/Write.Length
    mov     qword ptr [SeenLength], rax
    mov     eax, dword ptr [rsi+10h]        ; .Key
    mov     qword ptr [SeenKey], rax
    mov     rax, qword ptr [rsi+18h]        ; .ByteOffset
    mov     qword ptr [SeenOffset], rax
    mov     rcx, qword ptr [Requests]
    lea     r8, [OffsetLog]
    mov     qword ptr [r8+rcx*8], rax
    inc     qword ptr [Requests]
    mov     eax, dword ptr [rdx+10h]        ; Irp->Flags
    mov     qword ptr [SeenFlags], rax
    mov     rax, qword ptr [rdx+18h]
    mov     qword ptr [SeenSystemBuffer], rax
    mov     rax, qword ptr [rdx+70h]
    mov     qword ptr [SeenUserBuffer], rax
    mov     rcx, rdx
    call    BufferOf
"""
COMPLETE = """
    mov     dword ptr [rbx+30h], 0          ; STATUS_SUCCESS
    mov     rax, qword ptr [SeenLength]
    mov     qword ptr [rbx+38h], rax        ; Information: all of it
    mov     rcx, rbx
    xor     edx, edx
    call    nt!IofCompleteRequest
    xor     eax, eax
    add     rsp, 20h
    pop     rdi
    pop     rsi
    pop     rbx
    ret
"""
ROUTINES = {
    "BufferOf": BUFFER_OF,
    # A read fills the buffer with (byte offset + i) & 0xFF.
    "Read": """
    push    rbx
    push    rsi
    push    rdi
    sub     rsp, 20h
    mov     rbx, rdx
""" + RECORD + """
    mov     rcx, qword ptr [SeenLength]
    mov     rdx, qword ptr [SeenOffset]
    xor     r8d, r8d
rd_next:
    cmp     r8, rcx
    jae     rd_done
    lea     r9, [rdx+r8]
    mov     byte ptr [rax+r8], r9b
    inc     r8
    jmp     rd_next
rd_done:
""" + COMPLETE,
    # A write keeps (up to 0x100 bytes of) what it was given.
    "Write": """
    push    rbx
    push    rsi
    push    rdi
    sub     rsp, 20h
    mov     rbx, rdx
""" + RECORD + """
    mov     rsi, rax
    lea     rdi, [Written]
    mov     rcx, qword ptr [SeenLength]
    cmp     rcx, 100h
    jbe     wr_copy
    mov     ecx, 100h
wr_copy:
    rep     movsb
""" + COMPLETE,
}
GLOBALS = {"SeenLength": 8, "SeenKey": 8, "SeenOffset": 8, "SeenFlags": 8,
           "SeenSystemBuffer": 8, "SeenUserBuffer": 8, "SeenMdl": 8, "SeenMapped": 8,
           "SeenMdlFlags": 8, "MdlCopy": 0x40, "Requests": 8, "OffsetLog": 0x40,
           "Written": 0x100}


def machine(flags: int, steps: list[str], overlapped: bool = False):
    text = (scenario_header("rw", seed=3)
            + device_driver("rw", "Rw", {0x0: "CreateClose", 0x2: "CreateClose",
                                          0x3: "Read", 0x4: "Write", 0x12: "CreateClose"},
                            ROUTINES, GLOBALS, device_flags=flags)
            + client_program("Rw", steps, overlapped=overlapped))
    m = boot_scenario(parse_scenario(text, "rw.toml"))
    m.run(STEPS_PER_TICK * 6)
    assert m.bugcheck is None
    return m, client_process(m)


def seen(m, name: str) -> int:
    return m.kspace.read_u64(m.sym(f"rw!{name}"))


def test_a_buffered_read_comes_back_through_the_system_buffer():
    m, proc = machine(DO_BUFFERED_IO,
                      ['{ read = {device}, length = 0x20, offset = 0x100 }'])
    buffer = proc.peb + IO_AREA_OFFSET + IO_BUFFER
    assert proc.space.read(buffer, 0x20) == bytes(range(0x20))  # (0x100 + i) & 0xFF
    iosb = proc.peb + IOSB_OFFSET
    assert proc.space.read_u64(iosb) == 0 and proc.space.read_u64(iosb + 8) == 0x20
    assert seen(m, "SeenLength") == 0x20 and seen(m, "SeenOffset") == 0x100
    # IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER | IRP_INPUT_OPERATION | IRP_READ_OPERATION
    # | IRP_DEFER_IO_COMPLETION
    assert seen(m, "SeenFlags") == 0x970
    assert seen(m, "SeenSystemBuffer") >= 0xFFFF800000000000
    assert seen(m, "SeenUserBuffer") == buffer
    assert pool_in_use(m, "IoSB") == 0 and pool_in_use(m, "Irp ") == 0
    # a synchronous file's pointer moves past what was read
    assert Struct(m.kspace, "_FILE_OBJECT", client_file(m, proc)).get(
        "CurrentByteOffset") == 0x120


def test_a_buffered_write_hands_the_driver_a_copy_of_the_data():
    data = bytes(range(0x41, 0x51))
    m, proc = machine(DO_BUFFERED_IO, [f'{{ write = {{device}}, data = "{data.hex()}" }}'])
    assert m.kspace.read(m.sym("rw!Written"), len(data)) == data
    assert seen(m, "SeenSystemBuffer") >= 0xFFFF800000000000
    # IRP_BUFFERED_IO | IRP_DEALLOCATE_BUFFER | IRP_WRITE_OPERATION | IRP_DEFER_IO_COMPLETION
    assert seen(m, "SeenFlags") == 0xA30
    assert proc.space.read_u64(proc.peb + IOSB_OFFSET + 8) == len(data)
    assert pool_in_use(m, "IoSB") == 0


def test_a_synchronous_file_reads_on_from_its_file_pointer():
    m, proc = machine(DO_BUFFERED_IO, ['{ read = {device}, length = 0x10 }',
                                       '{ read = {device}, length = 0x10 }'])
    assert seen(m, "Requests") == 2
    log = m.sym("rw!OffsetLog")
    assert (m.kspace.read_u64(log), m.kspace.read_u64(log + 8)) == (0, 0x10)
    buffer = proc.peb + IO_AREA_OFFSET + IO_BUFFER
    assert proc.space.read(buffer, 0x10) == bytes(range(0x10, 0x20))
    assert Struct(m.kspace, "_FILE_OBJECT", client_file(m, proc)).get(
        "CurrentByteOffset") == 0x20


def test_a_direct_write_reads_the_callers_pages_through_an_mdl():
    data = bytes(range(0x80, 0xC0))
    m, proc = machine(DO_DIRECT_IO, [f'{{ write = {{device}}, data = "{data.hex()}" }}'])
    assert m.kspace.read(m.sym("rw!Written"), len(data)) == data
    assert seen(m, "SeenSystemBuffer") == 0 and seen(m, "SeenMdl")
    # locked (MDL_PAGES_LOCKED) for reading only: no MDL_WRITE_OPERATION; then mapped
    assert seen(m, "SeenMdlFlags") & 0x83 == 0x3
    assert pool_in_use(m, "Mdl ") == 0


def test_an_asynchronous_file_needs_a_byte_offset():
    m, proc = machine(DO_BUFFERED_IO, ['{ read = {device}, length = 0x10 }'],
                      overlapped=True)
    area = proc.peb + IO_AREA_OFFSET
    assert proc.space.read_u64(area + IO_STATUS) == STATUS_INVALID_PARAMETER
    assert seen(m, "Requests") == 0


def test_an_asynchronous_read_the_driver_completes_at_once_signals_the_event():
    m, proc = machine(DO_BUFFERED_IO,
                      ['{ read = {device}, length = 0x10, offset = 0x30, event = true }'],
                      overlapped=True)
    area = proc.peb + IO_AREA_OFFSET
    assert proc.space.read_u64(area + IO_STATUS) == 0  # done in the call
    assert proc.space.read_u64(proc.peb + IOSB_OFFSET + 8) == 0x10
    table = Struct(m.kspace, "_EPROCESS", proc.eprocess).get("ObjectTable")
    event = lookup_handle(m, table, proc.space.read_u64(area + IO_EVENT_HANDLE))
    assert Struct(m.kspace, "_DISPATCHER_HEADER", event).get("SignalState") == 1
    assert proc.space.read(area + IO_BUFFER, 0x10) == bytes(range(0x30, 0x40))
    # no file pointer on an asynchronous file
    fo = Struct(m.kspace, "_FILE_OBJECT", client_file(m, proc))
    assert fo.get("CurrentByteOffset") == 0 and not fo.get("Flags") & 0x2
    # the client went on to its idle wait (UserRequest) at PASSIVE_LEVEL
    kt = Struct(m.kspace, "_KTHREAD", proc.threads[0].ethread)
    assert kt.get("State") == 5 and kt.get("WaitReason") == 6


def test_the_callers_completion_routine_runs_as_a_user_apc_at_its_next_alertable_wait():
    m, proc = machine(DO_BUFFERED_IO,
                      ['{ read = {device}, length = 0x10, offset = 0, apc = 0x1234 }',
                       '{ sleep_ms = 200 }', '{ sleep_ms = 10, alertable = true }'],
                      overlapped=True)
    area = proc.peb + IO_AREA_OFFSET
    thread = proc.threads[0]
    # Completed at once, but the routine waits for an alertable wait: the IRP carries
    # the APC (IopUserCompletion frees it) on the thread's user-mode APC list.
    assert proc.space.read_u64(area + IO_APC_COUNT) == 0
    head = Struct(m.kspace, "_KTHREAD", thread.ethread).addr("ApcState.ApcListHead[1]")
    entry = Struct(m.kspace, "_KAPC", 0).offset("ApcListEntry")
    apc = Struct(m.kspace, "_KAPC", m.kspace.read_u64(head) - entry)
    assert apc.get("NormalContext") == 0x1234
    assert apc.get("SystemArgument1") == proc.peb + IOSB_OFFSET
    assert apc.get("KernelRoutine") == m.sym("nt!IopUserCompletion")
    assert pool_in_use(m, "Irp ") == 1
    m.run(STEPS_PER_TICK * 20)  # the alertable sleep delivers it
    assert m.bugcheck is None
    assert proc.space.read_u64(area + IO_APC_COUNT) == 1
    assert proc.space.read_u64(area + IO_APC_CONTEXT) == 0x1234
    assert proc.space.read_u64(area + IO_APC_IOSB) == proc.peb + IOSB_OFFSET
    assert pool_in_use(m, "Irp ") == 0

