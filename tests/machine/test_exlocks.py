"""Fast mutexes and ERESOURCEs: owners and waiters in memory, ownership passed on release."""

from __future__ import annotations

from machine.types.view import Struct
from tests.machine.probe import boot_probe, start_system_thread

HOLD = """
    sub     rsp, 28h
    mov     dl, 1
    lea     rcx, [Resource]
    call    nt!{acquire}
    lock inc qword ptr [Holding]
hold_{tag}:
    cmp     qword ptr [Release], 0
    je      hold_{tag}
    lea     rcx, [Resource]
    call    nt!ExReleaseResourceLite
{tag}_park:
    pause
    jmp     {tag}_park
"""
ROUTINES = {
    "DriverEntry": """
    sub     rsp, 28h
    lea     rcx, [Resource]
    call    nt!ExInitializeResourceLite
    lea     rcx, [Mutex]
    call    nt!KeInitializeGuardedMutex
    xor     eax, eax
    add     rsp, 28h
    ret
""",
    "Exclusive": HOLD.format(acquire="ExAcquireResourceExclusiveLite", tag="x"),
    "Shared1": HOLD.format(acquire="ExAcquireResourceSharedLite", tag="s1"),
    "Shared2": HOLD.format(acquire="ExAcquireResourceSharedLite", tag="s2"),
    "MutexHolder": """
    sub     rsp, 28h
    lea     rcx, [Mutex]
    call    nt!ExAcquireFastMutex
    lock inc qword ptr [MutexHeld]
mh_wait:
    cmp     qword ptr [Release], 0
    je      mh_wait
    lea     rcx, [Mutex]
    call    nt!ExReleaseFastMutex
mh_park:
    pause
    jmp     mh_park
""",
    "MutexWaiter": """
    sub     rsp, 28h
    lea     rcx, [Mutex]
    call    nt!ExAcquireFastMutex
    lock inc qword ptr [MutexHeld]
mw_park:
    pause
    jmp     mw_park
""",
}
GLOBALS = {"Resource": 0x68, "Mutex": 0x38, "Holding": 8, "Release": 8, "MutexHeld": 8}


def test_shared_waiters_queue_behind_an_exclusive_owner_then_share():
    m = boot_probe("lk", ROUTINES, GLOBALS, cpus=2)
    res = m.sym("lk!Resource")
    owner = start_system_thread(m, 0xC000, m.sym("lk!Exclusive"))
    m.run(3000)
    waiters = [start_system_thread(m, 0xC004 + 4 * i, m.sym(f"lk!Shared{i + 1}"))
               for i in range(2)]
    m.run(6000)
    r = Struct(m.kspace, "_ERESOURCE", res)
    assert r.get("OwnerEntry.OwnerThread") == owner.ethread
    assert r.get("Flag") & 0x80 and r.get("NumberOfSharedWaiters") == 2
    for t in waiters:
        kt = Struct(m.kspace, "_KTHREAD", t.ethread)
        assert kt.get("State") == 5 and kt.get("WaitReason") == 27  # WrResource
        block = Struct(m.kspace, "_KWAIT_BLOCK", kt.get("WaitBlockList"))
        assert block.get("Object") == r.get("SharedWaiters")
    assert m.kspace.read_u64(m.sym("nt!ExpSystemResourcesList")) == r.addr(
        "SystemResourcesList")
    m.kspace.write_u64(m.sym("lk!Release"), 1)
    m.run(20000)
    assert m.kspace.read_u64(m.sym("lk!Holding")) == 3
    assert not r.get("Flag") & 0x80 and r.get("NumberOfSharedWaiters") == 0


def test_a_fast_mutex_passes_to_its_waiter_on_release():
    m = boot_probe("lk", ROUTINES, GLOBALS, cpus=2)
    mutex = Struct(m.kspace, "_FAST_MUTEX", m.sym("lk!Mutex"))
    holder = start_system_thread(m, 0xC000, m.sym("lk!MutexHolder"))
    m.run(3000)
    waiter = start_system_thread(m, 0xC004, m.sym("lk!MutexWaiter"))
    m.run(6000)
    assert mutex.get("Owner") == holder.ethread and mutex.get("Count") == 0
    kt = Struct(m.kspace, "_KTHREAD", waiter.ethread)
    assert kt.get("State") == 5 and kt.get("WaitReason") == 34  # WrFastMutex
    m.kspace.write_u64(m.sym("lk!Release"), 1)
    m.run(20000)
    assert mutex.get("Owner") == waiter.ethread
    assert m.kspace.read_u64(m.sym("lk!MutexHeld")) == 2


QUEUED = """
    sub     rsp, 28h
    lea     rdx, [Handle{n}]
    lea     rcx, [QLock]
    call    nt!KeAcquireInStackQueuedSpinLock
    mov     rax, qword ptr [Order]
    lea     rcx, [rax+1]
    mov     qword ptr [Order], rcx
    mov     qword ptr [Got{n}], rcx             ; 1 for the first to get it, then 2, 3
    mov     rax, cr8
    mov     qword ptr [Irql{n}], rax
    mov     ecx, 3000
q{n}_hold:
    dec     ecx
    jnz     q{n}_hold
    lea     rcx, [Handle{n}]
    call    nt!KeReleaseInStackQueuedSpinLock
q{n}_park:
    pause
    jmp     q{n}_park
"""


def test_queued_spin_lock_waiters_get_the_lock_in_arrival_order():
    routines = {f"Queued{n}": QUEUED.format(n=n) for n in (1, 2, 3)}
    globals_ = {"QLock": 8, "Order": 8}
    for n in (1, 2, 3):
        globals_.update({f"Handle{n}": 0x18, f"Got{n}": 8, f"Irql{n}": 8})
    m = boot_probe("ql", routines, globals_, cpus=3)
    for n in (1, 2, 3):  # start them a little apart, on three processors
        t = start_system_thread(m, 0xD000 + 4 * n, m.sym(f"ql!Queued{n}"))
        Struct(m.kspace, "_KTHREAD", t.ethread).set("Affinity.Mask", 1 << (n - 1))
        m.run(300)
    m.run(40_000)
    read = lambda name: m.kspace.read_u64(m.sym(f"ql!{name}"))  # noqa: E731
    assert [read(f"Got{n}") for n in (1, 2, 3)] == [1, 2, 3]
    assert all(read(f"Irql{n}") == 2 for n in (1, 2, 3))
    assert read("QLock") == 0  # free again, the last holder saw no successor
