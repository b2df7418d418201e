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


ABBA = {
    "DriverEntry": """
    sub     rsp, 28h
    lea     rcx, [MutexA]
    xor     edx, edx
    call    nt!KeInitializeMutex
    lea     rcx, [MutexB]
    xor     edx, edx
    call    nt!KeInitializeMutex
    xor     eax, eax
    add     rsp, 28h
    ret
""",
    "TakeBoth": """
    ; rcx = first mutex, rdx = second: take the first, dawdle, then take the second
    push    rbx
    push    rdi
    sub     rsp, 38h
    mov     rbx, rcx
    mov     rdi, rdx
    mov     qword ptr [rsp+20h], 0
    xor     r9d, r9d
    xor     r8d, r8d
    xor     edx, edx
    mov     rcx, rbx
    call    nt!KeWaitForSingleObject
    mov     ecx, 2000
dawdle:
    dec     ecx
    jnz     dawdle
    mov     qword ptr [rsp+20h], 0
    xor     r9d, r9d
    xor     r8d, r8d
    xor     edx, edx
    mov     rcx, rdi
    call    nt!KeWaitForSingleObject
    lock inc qword ptr [Finished]
    add     rsp, 38h
    pop     rdi
    pop     rbx
    ret
""",
    "ThreadAB": """
    sub     rsp, 28h
    lea     rcx, [MutexA]
    lea     rdx, [MutexB]
    call    TakeBoth
ab_park:
    pause
    jmp     ab_park
""",
    "ThreadBA": """
    sub     rsp, 28h
    lea     rcx, [MutexB]
    lea     rdx, [MutexA]
    call    TakeBoth
ba_park:
    pause
    jmp     ba_park
""",
}


def test_abba_deadlock_really_hangs_both_threads_and_memory_shows_the_cycle():
    m = boot_probe("abba", ABBA, {"MutexA": 0x38, "MutexB": 0x38, "Finished": 8})
    a, b = m.sym("abba!MutexA"), m.sym("abba!MutexB")
    t1 = start_system_thread(m, 0x5000, m.sym("abba!ThreadAB"))
    t2 = start_system_thread(m, 0x5004, m.sym("abba!ThreadBA"))
    m.run(200_000)
    assert m.kspace.read_u64(m.sym("abba!Finished")) == 0
    owner = {obj: Struct(m.kspace, "_KMUTANT", obj).get("OwnerThread") for obj in (a, b)}
    assert owner == {a: t1.ethread, b: t2.ethread}
    for thread, waits_on in ((t1, b), (t2, a)):
        kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
        assert kt.get("State") == 5
        block = Struct(m.kspace, "_KWAIT_BLOCK", kt.get("WaitBlockList"))
        assert block.get("Object") == waits_on
    # each thread's MutantListHead holds the mutant it owns
    assert Struct(m.kspace, "_KTHREAD", t1.ethread).get("MutantListHead.Flink") == a + 0x18
    assert Struct(m.kspace, "_KTHREAD", t2.ethread).get("MutantListHead.Flink") == b + 0x18


def test_released_mutex_passes_to_the_waiter():
    routines = dict(ABBA)
    routines["ThreadBA"] = """
    sub     rsp, 28h
    mov     qword ptr [rsp+20h], 0
    xor     r9d, r9d
    xor     r8d, r8d
    xor     edx, edx
    lea     rcx, [MutexA]
    call    nt!KeWaitForSingleObject
    xor     edx, edx
    lea     rcx, [MutexA]
    call    nt!KeReleaseMutex
    lock inc qword ptr [Finished]
rel_park:
    pause
    jmp     rel_park
"""
    m = boot_probe("rel", routines, {"MutexA": 0x38, "MutexB": 0x38, "Finished": 8})
    start_system_thread(m, 0x5000, m.sym("rel!ThreadBA"))
    t2 = start_system_thread(m, 0x5004, m.sym("rel!ThreadAB"))
    m.run(200_000)
    # the first thread took and released A; the second then took A and B and finished
    assert m.kspace.read_u64(m.sym("rel!Finished")) == 2
    assert Struct(m.kspace, "_KMUTANT", m.sym("rel!MutexB")).get("OwnerThread") == t2.ethread
