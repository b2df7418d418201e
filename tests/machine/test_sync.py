"""Dispatcher objects: a waiting thread's wait block points at the object, and setting
the object wakes it — all visible in memory."""

from __future__ import annotations

from machine.types.view import Struct
from tests.machine.probe import boot_probe, start_system_thread

ROUTINES = {
    "DriverEntry": """
    sub     rsp, 28h
    lea     rcx, [Event]
    mov     edx, 1                  ; SynchronizationEvent
    xor     r8d, r8d                ; not signaled
    call    nt!KeInitializeEvent
    xor     eax, eax
    add     rsp, 28h
    ret
""",
    "Waiter": """
    sub     rsp, 38h
    mov     qword ptr [rsp+20h], 0  ; no timeout
    xor     r9d, r9d                ; not alertable
    xor     r8d, r8d                ; KernelMode
    xor     edx, edx                ; Executive
    lea     rcx, [Event]
    call    nt!KeWaitForSingleObject
    mov     qword ptr [WaitResult], rax
    lock inc qword ptr [Woken]
park:
    pause
    jmp     park
""",
    "Setter": """
    sub     rsp, 28h
    xor     r8d, r8d
    xor     edx, edx
    lea     rcx, [Event]
    call    nt!KeSetEvent
set_park:
    pause
    jmp     set_park
""",
}
GLOBALS = {"Event": 24, "Woken": 8, "WaitResult": 8}


def test_wait_block_points_at_the_event_and_set_event_wakes_the_waiter():
    m = boot_probe("sync", ROUTINES, GLOBALS)
    event = m.sym("sync!Event")
    waiter = start_system_thread(m, 0x4000, m.sym("sync!Waiter"))
    m.run(2000)
    kt = Struct(m.kspace, "_KTHREAD", waiter.ethread)
    assert kt.get("State") == 5  # Waiting
    assert kt.get("WaitReason") == 0 and kt.get("WaitMode") == 0  # Executive, KernelMode
    wb = kt.get("WaitBlockList")
    assert wb == kt.addr("WaitBlock")
    assert Struct(m.kspace, "_KWAIT_BLOCK", wb).get("Object") == event
    assert Struct(m.kspace, "_KWAIT_BLOCK", wb).get("Thread") == waiter.ethread
    header = Struct(m.kspace, "_DISPATCHER_HEADER", event)
    assert header.get("WaitListHead.Flink") == wb  # the event's wait list holds the block
    assert m.kspace.read_u64(m.sym("sync!Woken")) == 0
    start_system_thread(m, 0x4004, m.sym("sync!Setter"))
    m.run(4000)
    assert m.kspace.read_u64(m.sym("sync!Woken")) == 1
    assert m.kspace.read_u64(m.sym("sync!WaitResult")) == 0  # STATUS_WAIT_0
    assert header.get("SignalState") == 0  # a synchronization event is consumed
    assert header.get("WaitListHead.Flink") == header.addr("WaitListHead")  # list empty
    assert kt.get("State") in (1, 2)
