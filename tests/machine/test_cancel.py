"""Cancelling IRPs: a driver holding a read sets Irp->CancelRoutine; NtCancelIoFile (or
IoCancelIrp, or IoCancelThreadIo at thread exit) sets Irp->Cancel and calls the routine
with the cancel spin lock (nt!IopCancelSpinLock) held at DISPATCH_LEVEL; the routine
releases it and completes the IRP with STATUS_CANCELLED through the normal path."""

from __future__ import annotations

from machine.events import (
    IO_AREA_OFFSET,
    IO_CANCEL_IOSB,
    IO_STATUS,
    IOSB_OFFSET,
)
from machine.machine import STEPS_PER_TICK
from machine.scenario import boot_scenario, parse_scenario
from machine.types.view import Struct
from tests.machine.probe import (
    client_file,
    client_process,
    client_program,
    device_driver,
    pool_in_use,
    scenario_header,
    start_system_thread,
)

STATUS_PENDING, STATUS_CANCELLED = 0x103, 0xC0000120
LOCK_QUEUE_IO_CANCEL_LOCK = 7

ROUTINES = {
    # Keep every read, cancellable unless NoCancelRoutine is set.
    "PendRead": """
    mov     qword ptr [PendingIrp], rdx
    mov     rax, qword ptr [rdx+0B8h]
    or      byte ptr [rax+3], 1             ; IoMarkIrpPending
    cmp     qword ptr [NoCancelRoutine], 0
    jne     pend_done
    lea     rcx, [OnCancel]
    xchg    qword ptr [rdx+68h], rcx        ; IoSetCancelRoutine
pend_done:
    mov     eax, 103h
    ret
""",
    "OnCancel": """
    push    rbx
    sub     rsp, 20h
    mov     rbx, rdx
    mov     qword ptr [CancelDevice], rcx
    mov     qword ptr [CancelIrp], rdx
    mov     rax, cr8
    mov     qword ptr [CancelIrql], rax
    mov     rax, qword ptr [nt!IopCancelSpinLock]
    mov     qword ptr [CancelLock], rax
    movzx   eax, byte ptr [rbx+44h]         ; Irp->Cancel
    mov     qword ptr [CancelFlag], rax
    mov     rax, qword ptr [rbx+68h]        ; Irp->CancelRoutine, taken by IoCancelIrp
    mov     qword ptr [CancelRoutineLeft], rax
    movzx   ecx, byte ptr [rbx+45h]         ; Irp->CancelIrql
    call    nt!IoReleaseCancelSpinLock
    mov     rax, cr8
    mov     qword ptr [IrqlAfterRelease], rax
    mov     dword ptr [rbx+30h], 0C0000120h ; STATUS_CANCELLED
    mov     qword ptr [rbx+38h], 0
    mov     rcx, rbx
    xor     edx, edx
    call    nt!IofCompleteRequest
    inc     qword ptr [Cancels]
    add     rsp, 20h
    pop     rbx
    ret
""",
    # A system thread that tries to cancel the held IRP.
    "TryCancel": """
    sub     rsp, 28h
    mov     rcx, qword ptr [PendingIrp]
    call    nt!IoCancelIrp
    movzx   eax, al
    mov     qword ptr [CancelResult], rax
    mov     rax, qword ptr [nt!IopCancelSpinLock]
    mov     qword ptr [LockAfter], rax
    mov     qword ptr [TriedCancel], 1
    add     rsp, 28h
    ret
""",
    # Thread exit in miniature: a kernel APC to TargetThread whose normal routine runs
    # IoCancelThreadIo in that thread, at PASSIVE_LEVEL.
    "QueueExit": """
    sub     rsp, 48h
    lea     rcx, [ExitApc]
    mov     rdx, qword ptr [TargetThread]
    xor     r8d, r8d                        ; OriginalApcEnvironment
    lea     r9, [ExitKernel]
    mov     qword ptr [rsp+20h], 0          ; RundownRoutine
    lea     rax, [ExitNormal]
    mov     qword ptr [rsp+28h], rax        ; NormalRoutine
    mov     qword ptr [rsp+30h], 0          ; KernelMode
    mov     qword ptr [rsp+38h], 0          ; NormalContext
    call    nt!KeInitializeApc
    lea     rcx, [ExitApc]
    xor     edx, edx
    xor     r8d, r8d
    xor     r9d, r9d
    call    nt!KeInsertQueueApc
    add     rsp, 48h
    ret
""",
    "ExitKernel": "    ret\n",
    "ExitNormal": """
    sub     rsp, 28h
    mov     rcx, qword ptr gs:[188h]        ; KeGetCurrentThread
    mov     qword ptr [ExitThread], rcx
    call    nt!IoCancelThreadIo
    mov     qword ptr [ExitDone], 1
    add     rsp, 28h
    ret
""",
    # The driver finally completes the IRP it kept.
    "CompleteLate": """
    sub     rsp, 28h
    mov     rcx, qword ptr [PendingIrp]
    mov     dword ptr [rcx+30h], 0C0000120h
    mov     qword ptr [rcx+38h], 0
    xor     edx, edx
    call    nt!IofCompleteRequest
    mov     qword ptr [CompletedLate], 1
    add     rsp, 28h
    ret
""",
}
GLOBALS = {name: 8 for name in (
    "PendingIrp", "NoCancelRoutine", "CancelDevice", "CancelIrp", "CancelIrql", "CancelLock",
    "CancelFlag", "CancelRoutineLeft", "IrqlAfterRelease", "Cancels", "CancelResult",
    "LockAfter", "TriedCancel", "TargetThread", "ExitThread", "ExitDone", "CompletedLate")}
GLOBALS["ExitApc"] = 0x58


def machine(steps: list[str], cancellable: bool = True, overlapped: bool = True):
    text = (scenario_header("canceller", seed=4)
            + device_driver("canceller", "Canceller",
                            {0x0: "CreateClose", 0x2: "CreateClose", 0x3: "PendRead",
                             0x12: "CreateClose"}, ROUTINES, GLOBALS)
            + client_program("Canceller", steps, overlapped=overlapped))
    m = boot_scenario(parse_scenario(text, "canceller.toml"))
    m.kspace.write_u64(m.sym("canceller!NoCancelRoutine"), int(not cancellable))
    m.run(STEPS_PER_TICK * 5)
    assert m.bugcheck is None
    return m, client_process(m)


def read(m, name: str) -> int:
    return m.kspace.read_u64(m.sym(f"canceller!{name}"))


def irp_list_empty(m, thread) -> bool:
    et = Struct(m.kspace, "_ETHREAD", thread.ethread)
    return et.get("IrpList.Flink") == et.addr("IrpList")


def cancel_queue_entries(m) -> set[int]:
    return {Struct(m.kspace, "_KPRCB", p.prcb).addr(f"LockQueue[{LOCK_QUEUE_IO_CANCEL_LOCK}]")
            for p in m.processors}


def run_system_thread(m, routine: str, ticks: int = 2) -> None:
    start_system_thread(m, 0x7000, m.sym(f"canceller!{routine}"))
    m.run(STEPS_PER_TICK * ticks)
    assert m.bugcheck is None


PEND_THEN_CANCEL = ['{ read = {device}, length = 0x10, offset = 0 }', '{ cancel = {device} }']


def test_nt_cancel_io_file_runs_the_cancel_routine_under_the_cancel_lock():
    m, proc = machine(PEND_THEN_CANCEL)
    area = proc.peb + IO_AREA_OFFSET
    assert proc.space.read_u64(area + IO_STATUS) == STATUS_PENDING  # the read went pending
    assert read(m, "Cancels") == 1
    assert read(m, "CancelIrp") == read(m, "PendingIrp")
    assert read(m, "CancelDevice") == read(m, "DeviceObject")
    assert read(m, "CancelIrql") == 2  # DISPATCH_LEVEL, with the lock held:
    assert read(m, "CancelLock") in cancel_queue_entries(m)  # a processor's queue entry
    assert read(m, "CancelFlag") == 1 and read(m, "CancelRoutineLeft") == 0
    assert read(m, "IrqlAfterRelease") == 1  # back to the APC_LEVEL NtCancelIoFile runs at
    assert m.kspace.read_u64(m.sym("nt!IopCancelSpinLock")) == 0
    # the cancelled read completed through the normal path, to the caller's status block
    assert proc.space.read_u64(proc.peb + IOSB_OFFSET) == STATUS_CANCELLED
    assert proc.space.read_u64(area + IO_CANCEL_IOSB) == 0  # NtCancelIoFile: success
    assert irp_list_empty(m, proc.threads[0])
    assert pool_in_use(m, "Irp ") == 0


def test_io_cancel_irp_without_a_cancel_routine_returns_false():
    m, proc = machine(['{ read = {device}, length = 0x10, offset = 0 }'], cancellable=False)
    run_system_thread(m, "TryCancel")
    assert read(m, "TriedCancel") == 1 and read(m, "CancelResult") == 0
    assert read(m, "LockAfter") == 0  # released again
    irp = Struct(m.kspace, "_IRP", read(m, "PendingIrp"))
    assert irp.get("Cancel") == 1  # marked, for the driver to notice
    et = Struct(m.kspace, "_ETHREAD", proc.threads[0].ethread)
    assert et.get("IrpList.Flink") == irp.addr("ThreadListEntry")  # still outstanding
    assert read(m, "Cancels") == 0


def test_io_cancel_irp_from_another_thread_completes_to_the_issuing_thread():
    m, proc = machine(['{ read = {device}, length = 0x10, offset = 0 }'])
    run_system_thread(m, "TryCancel")
    assert read(m, "CancelResult") == 1 and read(m, "Cancels") == 1
    assert read(m, "CancelIrql") == 2 and read(m, "IrqlAfterRelease") == 0
    assert proc.space.read_u64(proc.peb + IOSB_OFFSET) == STATUS_CANCELLED
    assert irp_list_empty(m, proc.threads[0])


def test_a_cancelled_synchronous_read_fails_through_the_file_objects_final_status():
    m, proc = machine(['{ read = {device}, length = 0x10 }'], overlapped=False)
    thread = proc.threads[0]
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    assert kt.get("State") == 5 and kt.get("WaitReason") == 0  # waiting for the read
    run_system_thread(m, "TryCancel")
    assert read(m, "CancelResult") == 1
    fo = client_file(m, proc)
    assert Struct(m.kspace, "_FILE_OBJECT", fo).get("FinalStatus") & 0xFFFFFFFF == \
        STATUS_CANCELLED
    # the waiter got the failure as NtReadFile's status; a synchronous request that
    # fails leaves the caller's status block alone (it still holds the open's success)
    assert proc.space.read_u64(proc.peb + IO_AREA_OFFSET + IO_STATUS) == STATUS_CANCELLED
    assert proc.space.read_u64(proc.peb + IOSB_OFFSET) == 0
    assert irp_list_empty(m, thread)


def exit_client_thread(m, proc, ticks: int) -> None:
    m.kspace.write_u64(m.sym("canceller!TargetThread"), proc.threads[0].ethread)
    run_system_thread(m, "QueueExit", ticks)


def test_io_cancel_thread_io_cancels_the_threads_irps_and_waits_for_them():
    m, proc = machine(['{ read = {device}, length = 0x10, offset = 0 }'])
    exit_client_thread(m, proc, ticks=12)
    assert read(m, "ExitThread") == proc.threads[0].ethread
    assert read(m, "ExitDone") == 1
    assert read(m, "Cancels") == 1 and read(m, "CancelIrql") == 2
    assert proc.space.read_u64(proc.peb + IOSB_OFFSET) == STATUS_CANCELLED
    assert irp_list_empty(m, proc.threads[0])
    assert pool_in_use(m, "Irp ") == 0


def test_io_cancel_thread_io_gives_up_on_an_irp_that_is_never_completed():
    m, proc = machine(['{ read = {device}, length = 0x10, offset = 0 }'], cancellable=False)
    exit_client_thread(m, proc, ticks=100)
    assert read(m, "ExitDone") == 0  # still looking every 100 ms
    exit_done_after = 47 * 7 + 10  # ticks: 3000/64 looks of 100 ms (6.4 ticks) each
    m.run(STEPS_PER_TICK * exit_done_after)
    assert m.bugcheck is None and read(m, "ExitDone") == 1
    irp = Struct(m.kspace, "_IRP", read(m, "PendingIrp"))
    assert irp_list_empty(m, proc.threads[0])
    assert irp.get("Tail.Overlay.Thread") == 0 and irp.get("Cancel") == 1
    assert pool_in_use(m, "Irp ") == 1  # disassociated, not freed: the driver still has it
    run_system_thread(m, "CompleteLate")  # completion has no thread to go to: dropped
    assert read(m, "CompletedLate") == 1 and pool_in_use(m, "Irp ") == 0


def test_a_thread_that_exits_with_a_read_outstanding_has_it_cancelled_first():
    m, proc = machine(['{ read = {device}, length = 0x10, offset = 0 }',
                       '{ exit_thread = 0 }'])
    m.run(STEPS_PER_TICK * 12)
    assert m.bugcheck is None
    assert read(m, "Cancels") == 1 and read(m, "CancelIrql") == 2
    # completed to the exiting thread before it went (its status block says so)
    assert proc.space.read_u64(proc.peb + IOSB_OFFSET) == STATUS_CANCELLED
    assert pool_in_use(m, "Irp ") == 0 and not proc.threads
