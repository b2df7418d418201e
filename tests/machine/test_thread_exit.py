"""Thread exit, observed in memory: the thread object is signaled with the exit status,
the thread leaves scheduling for good but stays on its process's thread list until its
last reference goes; a thread terminated by another exits in its own context from an
APC that interrupts its wait; mutants it owned are abandoned."""

from __future__ import annotations

from commands.session import Session
from commands.stack import call_site
from commands.stackwalk import walk
from kdsim.live import LiveTarget
from machine.machine import STEPS_PER_TICK
from machine.ob.object import OBJECT_HEADER_BODY, insert_handle, lookup_handle
from machine.ps.create import create_event
from machine.ps.usermode import Syscall
from machine.rtl.lists import iterate_list
from machine.types.view import Struct
from tests.machine.probe import boot_probe, start_system_thread
from tests.machine.user_programs import UNSET, delay, run_until, user_process

TERMINATED, WAITING = 4, 5
NT_CURRENT_THREAD = 0xFFFFFFFFFFFFFFFE


def listed(m, head: int, entry_offset: int) -> list[int]:
    return [e - entry_offset for e in iterate_list(m.kspace, head)]


def test_a_user_thread_ending_itself_is_signaled_and_stays_listed_while_a_handle_holds_it():
    m = boot_probe("texit", {})

    def leaver(m, thread, handles, data):
        space = thread.process.space
        yield Syscall("NtDelayExecution", (0, delay(space, data + 0x100, 1)))
        yield Syscall("NtTerminateThread", (NT_CURRENT_THREAD, 0xC0DE))
        space.write_u64(data + 0x18, 1)  # never: the call does not return

    def waiter(m, thread, handles, data):
        space = thread.process.space
        status = yield Syscall("NtWaitForSingleObject", (handles["leaver"], 0, 0))
        space.write_u64(data, status)
        yield Syscall("NtDelayExecution", (0, delay(space, data + 0x108, 4)))
        space.write_u64(data + 8, (yield Syscall("NtClose", (handles["leaver"],))))

    proc, threads, data = user_process(m, "texit.exe", {"leaver": leaver, "waiter": waiter})
    space = proc.space
    leaving = threads["leaver"]
    thread_type = Struct(m.kspace, "_OBJECT_TYPE", m.object_types["Thread"])
    objects = thread_type.get("TotalNumberOfObjects")
    run_until(m, lambda: space.read_u64(data) != UNSET)
    et = Struct(m.kspace, "_ETHREAD", leaving.ethread)
    assert space.read_u64(data) == 0  # the waiter on its handle woke: STATUS_WAIT_0
    assert et.get("Tcb.State") == TERMINATED and et.get("Terminated") == 1
    assert et.get("ExitStatus") == 0xC0DE and et.get("Tcb.Header.SignalState") == 1
    assert et.get("ExitTime") >= et.get("CreateTime")
    ep = Struct(m.kspace, "_EPROCESS", proc.eprocess)
    assert ep.get("ActiveThreads") == 1 and ep.get("Pcb.Header.SignalState") == 0
    # Out of scheduling: not running anywhere, not on the process's scheduling list ...
    for p in m.processors:
        assert Struct(m.kspace, "_KPRCB", p.prcb).get("CurrentThread") != leaving.ethread
    koff = Struct(m.kspace, "_KTHREAD", 0).offset("ThreadListEntry")
    assert leaving.ethread not in listed(m, ep.addr("Pcb.ThreadListHead"), koff)
    # ... but still on its thread list: the handle keeps the object.
    run_until(m, lambda: Struct(m.kspace, "_OBJECT_HEADER",
                                leaving.ethread - OBJECT_HEADER_BODY).get("PointerCount") == 1)
    eoff = Struct(m.kspace, "_ETHREAD", 0).offset("ThreadListEntry")
    assert listed(m, ep.addr("ThreadListHead"), eoff) == [leaving.ethread,
                                                           threads["waiter"].ethread]
    assert space.read_u64(data + 8) == UNSET  # the waiter has not closed its handle yet
    run_until(m, lambda: space.read_u64(data + 8) != UNSET)
    assert space.read_u64(data + 8) == 0
    assert listed(m, ep.addr("ThreadListHead"), eoff) == [threads["waiter"].ethread]
    assert leaving not in m.threads and leaving.ethread not in m.thread_index
    assert thread_type.get("TotalNumberOfObjects") == objects - 1
    assert space.read_u64(data + 0x18) == UNSET
    assert m.bugcheck is None


def test_a_thread_terminated_by_another_exits_in_its_own_context_from_its_wait():
    m = boot_probe("texit", {})

    def victim(m, thread, handles, data):
        table = Struct(m.kspace, "_EPROCESS", thread.process.eprocess).get("ObjectTable")
        event = insert_handle(m, table, create_event(m))  # never signaled
        thread.process.space.write_u64(data + 0x20, event)
        status = yield Syscall("NtWaitForSingleObject", (event, 0, 0))
        thread.process.space.write_u64(data, status)  # never: the wait does not return

    def killer(m, thread, handles, data):
        space = thread.process.space
        yield Syscall("NtDelayExecution", (0, delay(space, data + 0x100, 2)))
        space.write_u64(data + 8, (yield Syscall("NtTerminateThread",
                                                 (handles["victim"], 0xDEAD))))

    proc, threads, data = user_process(m, "tkill.exe", {"victim": victim, "killer": killer})
    space = proc.space
    kt = Struct(m.kspace, "_KTHREAD", threads["victim"].ethread)
    run_until(m, lambda: kt.get("State") == WAITING)
    table = Struct(m.kspace, "_EPROCESS", proc.eprocess).get("ObjectTable")
    header = Struct(m.kspace, "_DISPATCHER_HEADER",
                    lookup_handle(m, table, space.read_u64(data + 0x20)))
    assert header.get("WaitListHead.Flink") == kt.get("WaitBlockList")
    run_until(m, lambda: kt.get("State") == TERMINATED)
    assert space.read_u64(data + 8) == 0  # NtTerminateThread: STATUS_SUCCESS
    assert Struct(m.kspace, "_ETHREAD", threads["victim"].ethread).get("ExitStatus") == 0xDEAD
    assert space.read_u64(data) == UNSET  # its wait never returned to its program
    assert header.get("WaitListHead.Flink") == header.addr("WaitListHead")  # left the wait
    # Its kernel stack shows where it exited: the exit APC's normal routine, delivered
    # to it inside its wait.
    session = Session(LiveTarget(m), processor=0)
    ks = kt.get("KernelStack")
    frames = walk(session.target, session.symbols, m.kspace.read_u64(ks + 0x38), ks + 0x40)
    sites = [call_site(session, f.ip).split("+")[0] for f in frames]
    assert sites[:3] == ["nt!KiSwapContext", "nt!KeTerminateThread", "nt!PspExitThread"]
    assert sites.index("nt!PspExitNormalApc") < sites.index("nt!KiDeliverApc") \
        < sites.index("nt!KeWaitForSingleObject") < sites.index("nt!NtWaitForSingleObject")
    assert kt.get("ApcState.ApcListHead[0].Flink") == kt.addr("ApcState.ApcListHead[0]")
    assert kt.get("ApcQueueable") == 0
    assert m.bugcheck is None


MUTEX_ROUTINES = {
    "DriverEntry": """
    sub     rsp, 28h
    lea     rcx, [Mutex]
    xor     edx, edx
    call    nt!KeInitializeMutex
    xor     eax, eax
    add     rsp, 28h
    ret
""",
    "Owner": """
    sub     rsp, 38h
    mov     qword ptr [rsp+20h], 0
    xor     r9d, r9d
    xor     r8d, r8d
    xor     edx, edx
    lea     rcx, [Mutex]
    call    nt!KeWaitForSingleObject
    mov     qword ptr [OwnerResult], rax
o_hold:
    pause
    cmp     qword ptr [Go], 0
    je      o_hold
    mov     ecx, 77h
    call    nt!PsTerminateSystemThread
""",
    "Waiter": """
    sub     rsp, 38h
    mov     qword ptr [rsp+20h], 0
    xor     r9d, r9d
    xor     r8d, r8d
    xor     edx, edx
    lea     rcx, [Mutex]
    call    nt!KeWaitForSingleObject
    mov     qword ptr [WaiterResult], rax
w_park:
    pause
    jmp     w_park
""",
}
MUTEX_GLOBALS = {"Mutex": 0x38, "OwnerResult": 8, "WaiterResult": 8, "Go": 8}


def test_a_system_thread_exiting_with_a_mutant_abandons_it_to_the_waiter_with_0x80():
    m = boot_probe("mtx", MUTEX_ROUTINES, MUTEX_GLOBALS)
    read = lambda name: m.kspace.read_u64(m.sym(f"mtx!{name}"))  # noqa: E731
    m.kspace.write_u64(m.sym("mtx!WaiterResult"), UNSET)
    owner = start_system_thread(m, 0x9000, m.sym("mtx!Owner"))
    m.run(3000)
    mutant = Struct(m.kspace, "_KMUTANT", m.sym("mtx!Mutex"))
    assert read("OwnerResult") == 0 and mutant.get("OwnerThread") == owner.ethread
    waiter = start_system_thread(m, 0x9004, m.sym("mtx!Waiter"))
    m.run(3000)
    assert Struct(m.kspace, "_KTHREAD", waiter.ethread).get("State") == WAITING
    m.kspace.write_u64(m.sym("mtx!Go"), 1)
    m.run(STEPS_PER_TICK)
    et = Struct(m.kspace, "_ETHREAD", owner.ethread)
    assert read("WaiterResult") == 0x80  # STATUS_ABANDONED_WAIT_0
    assert mutant.get("OwnerThread") == waiter.ethread
    assert mutant.get("Abandoned") == 0  # owned again: no longer abandoned
    head = Struct(m.kspace, "_KTHREAD", waiter.ethread).addr("MutantListHead")
    assert list(iterate_list(m.kspace, head)) == [mutant.addr("MutantListEntry")]
    # The owner (no handle to it) is gone once the reaper dropped its own reference.
    assert owner not in m.threads
    system = next(p for p in m.processes if p.pid == 4)
    eoff = Struct(m.kspace, "_ETHREAD", 0).offset("ThreadListEntry")
    assert owner.ethread not in listed(
        m, Struct(m.kspace, "_EPROCESS", system.eprocess).addr("ThreadListHead"), eoff)
    assert et.get("ExitStatus") == 0x77
    assert m.bugcheck is None


def test_an_abandoned_mutant_with_no_waiter_stays_abandoned_until_someone_owns_it():
    m = boot_probe("mtx", MUTEX_ROUTINES, MUTEX_GLOBALS)
    m.kspace.write_u64(m.sym("mtx!WaiterResult"), UNSET)
    m.kspace.write_u64(m.sym("mtx!Go"), 1)
    owner = start_system_thread(m, 0x9000, m.sym("mtx!Owner"))
    m.run(STEPS_PER_TICK)
    mutant = Struct(m.kspace, "_KMUTANT", m.sym("mtx!Mutex"))
    assert Struct(m.kspace, "_ETHREAD", owner.ethread).get("ExitStatus") == 0x77
    assert mutant.get("Abandoned") == 1 and mutant.get("OwnerThread") == 0
    assert mutant.get("Header.SignalState") == 1
    waiter = start_system_thread(m, 0x9004, m.sym("mtx!Waiter"))
    m.run(3000)
    assert m.kspace.read_u64(m.sym("mtx!WaiterResult")) == 0x80
    assert mutant.get("OwnerThread") == waiter.ethread and mutant.get("Abandoned") == 0
    assert mutant.get("Header.SignalState") == 0


def test_a_thread_exiting_inside_a_guarded_region_is_kernel_apc_pending_during_exit():
    routines = {"Leaker": """
    sub     rsp, 28h
    lea     rcx, [Guard]
    call    nt!KeInitializeGuardedMutex
    lea     rcx, [Guard]
    call    nt!KeAcquireGuardedMutex
    xor     ecx, ecx
    call    nt!PsTerminateSystemThread
"""}
    m = boot_probe("grd", routines, {"Guard": 0x38})
    start_system_thread(m, 0x9000, m.sym("grd!Leaker"))
    m.run(STEPS_PER_TICK)
    assert m.bugcheck is not None and m.bugcheck.code == 0x20  # KERNEL_APC_PENDING_DURING_EXIT
    _apc, disabled, irql, _ = m.bugcheck.params
    assert disabled == 0xFFFF0000 and irql == 0  # SpecialApcDisable -1, at PASSIVE_LEVEL


REFERENCE_ROUTINES = {
    "Quitter": """
q_wait:
    pause
    cmp     qword ptr [Go], 0
    je      q_wait
    ret                                     ; the thread ends
""",
    "Keeper": """
    sub     rsp, 28h
    mov     rcx, qword ptr [Target]
    call    nt!ObfReferenceObject
    mov     qword ptr [Referenced], 1
k_hold:
    pause
    cmp     qword ptr [Release], 0
    je      k_hold
    mov     rcx, qword ptr [Target]
    call    nt!ObfDereferenceObject
    mov     qword ptr [Released], 1
k_again:
    pause
    cmp     qword ptr [Again], 0
    je      k_again
    mov     rcx, qword ptr [Target]
    call    nt!ObfDereferenceObject         ; one too many
k_park:
    pause
    jmp     k_park
""",
}
REFERENCE_GLOBALS = {"Go": 8, "Target": 8, "Referenced": 8, "Release": 8, "Released": 8,
                     "Again": 8}


def test_a_driver_reference_keeps_an_exited_thread_until_it_dereferences_it():
    m = boot_probe("ref", REFERENCE_ROUTINES, REFERENCE_GLOBALS)
    write = lambda name, value: m.kspace.write_u64(m.sym(f"ref!{name}"), value)  # noqa: E731
    read = lambda name: m.kspace.read_u64(m.sym(f"ref!{name}"))  # noqa: E731
    quitter = start_system_thread(m, 0x9000, m.sym("ref!Quitter"))
    write("Target", quitter.ethread)
    start_system_thread(m, 0x9004, m.sym("ref!Keeper"))
    m.run(3000)
    assert read("Referenced") == 1
    write("Go", 1)
    m.run(STEPS_PER_TICK)
    system = next(p for p in m.processes if p.pid == 4)
    head = Struct(m.kspace, "_EPROCESS", system.eprocess).addr("ThreadListHead")
    eoff = Struct(m.kspace, "_ETHREAD", 0).offset("ThreadListEntry")
    header = Struct(m.kspace, "_OBJECT_HEADER", quitter.ethread - OBJECT_HEADER_BODY)
    assert Struct(m.kspace, "_ETHREAD", quitter.ethread).get("Tcb.State") == TERMINATED
    assert quitter.ethread in listed(m, head, eoff) and header.get("PointerCount") == 1
    write("Release", 1)
    m.run(3000)
    assert read("Released") == 1
    assert quitter.ethread not in listed(m, head, eoff) and quitter not in m.threads
    write("Again", 1)
    m.run(3000)
    assert m.bugcheck is not None and m.bugcheck.code == 0x18  # REFERENCE_BY_POINTER
    assert m.bugcheck.params[:2] == (m.object_types["Thread"], quitter.ethread)
