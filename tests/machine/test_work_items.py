"""Work items run in a system worker thread at PASSIVE_LEVEL; idle workers wait on the
work queue (WrQueue), their wait blocks pointing at the _KQUEUE."""

from __future__ import annotations

from machine.machine import STEPS_PER_TICK
from machine.types.view import Struct
from tests.machine.probe import boot_probe

ROUTINES = {
    "DriverEntry": """
    sub     rsp, 28h
    lea     rax, [WorkRoutine]
    mov     qword ptr [WorkItem+10h], rax       ; WORK_QUEUE_ITEM.WorkerRoutine
    mov     qword ptr [WorkItem+18h], 5678h     ; .Parameter
    xor     edx, edx                            ; CriticalWorkQueue
    lea     rcx, [WorkItem]
    call    nt!ExQueueWorkItem
    mov     ecx, 4242h                          ; a device object stand-in
    call    nt!IoAllocateWorkItem
    mov     qword ptr [IoItem], rax
    mov     r9d, 9999h                          ; Context
    xor     r8d, r8d
    lea     rdx, [IoWorkRoutine]
    mov     rcx, rax
    call    nt!IoQueueWorkItem
    xor     eax, eax
    add     rsp, 28h
    ret
""",
    "WorkRoutine": """
    mov     qword ptr [WorkParameter], rcx
    mov     rax, cr8
    mov     qword ptr [WorkIrql], rax
    mov     rax, qword ptr gs:[188h]            ; KPCR.Prcb.CurrentThread
    mov     qword ptr [WorkThread], rax
    ret
""",
    "IoWorkRoutine": """
    mov     qword ptr [IoObject], rcx
    mov     qword ptr [IoContext], rdx
    ret
""",
}
GLOBALS = {"WorkItem": 0x20, "IoItem": 8, "WorkParameter": 8, "WorkIrql": 8, "WorkThread": 8,
           "IoObject": 8, "IoContext": 8}


def test_work_items_run_in_a_worker_thread_at_passive_level():
    m = boot_probe("wi", ROUTINES, GLOBALS)
    m.run(STEPS_PER_TICK * 2)
    read = lambda name: m.kspace.read_u64(m.sym(f"wi!{name}"))  # noqa: E731
    assert read("WorkParameter") == 0x5678 and read("WorkIrql") == 0
    worker = m.thread_at(read("WorkThread"))
    start = Struct(m.kspace, "_ETHREAD", worker.ethread).get("StartAddress")
    assert worker.process.pid == 4 and start == m.sym("nt!ExpWorkerThread")
    assert read("IoObject") == 0x4242 and read("IoContext") == 0x9999


def test_idle_workers_wait_on_the_work_queue():
    m = boot_probe("wi", ROUTINES, GLOBALS)
    m.run(STEPS_PER_TICK * 2)
    workers = [t for t in m.threads if Struct(m.kspace, "_ETHREAD", t.ethread).get(
        "StartAddress") == m.sym("nt!ExpWorkerThread")]
    assert len(workers) == 4
    for t in workers:
        kt = Struct(m.kspace, "_KTHREAD", t.ethread)
        assert kt.get("State") == 5 and kt.get("WaitReason") == 15  # WrQueue
        block = Struct(m.kspace, "_KWAIT_BLOCK", kt.get("WaitBlockList"))
        assert block.get("Object") == m.work_queue
        assert Struct(m.kspace, "_DISPATCHER_HEADER", m.work_queue).get("Type") == 4
