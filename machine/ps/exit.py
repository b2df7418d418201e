"""Thread and process exit: NtTerminateThread, NtTerminateProcess and PspExitThread.

A thread always exits in its own context.  Terminating another thread queues it a kernel
APC whose normal routine runs the exit (a thread waiting at PASSIVE_LEVEL leaves its wait
for it).  The exiting thread cancels its I/O; the last thread of a process also runs the
process down (every handle closed, the process object signaled).  The thread then
abandons the mutants it owns, runs down its APCs, signals its thread object and switches
away for good as Terminated.  Its object outlives it while references remain: a system
worker (the reaper) drops the thread's own reference once its last context switch is
over, and the last reference deletes it — taking it off its process's thread list and
dropping its reference to the process, whose last reference takes the process off
PsActiveProcessHead.  A process whose object someone still references stays listed, a
zombie with no handle table.  Kernel stacks of deleted threads are kept mapped.
"""

from __future__ import annotations

from machine.ex.pool import tag_value
from machine.ke.apc import queue_pool_apc
from machine.ke.native import Call, Pause, routine
from machine.ke.processor import DISPATCH_LEVEL
from machine.ke.threads import TERMINATED
from machine.ke.wait import rundown_mutants, signal_waiters
from machine.ob.object import (
    delete_handle_table,
    dereference,
    free_pool_block,
    handle_object,
    register_delete_procedure,
    type_of,
)
from machine.rtl.lists import initialize_list_head, iterate_list, remove_entry_list
from machine.types.view import Struct

STATUS_SUCCESS = 0
STATUS_PENDING = 0x103
STATUS_INVALID_HANDLE = 0xC0000008
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_ACCESS_DENIED = 0xC0000022
STATUS_OBJECT_TYPE_MISMATCH = 0xC0000024
STATUS_CANT_TERMINATE_SELF = 0xC00000DB
KERNEL_APC_PENDING_DURING_EXIT = 0x20
NT_CURRENT_PROCESS = 0xFFFFFFFFFFFFFFFF  # NtCurrentProcess(): (HANDLE)-1
NT_CURRENT_THREAD = 0xFFFFFFFFFFFFFFFE  # NtCurrentThread(): (HANDLE)-2
KERNEL_MODE, USER_MODE = 0, 1
EXIT_APC_TAG = "PsEx"  # the exit APC's pool tag ('xEsP' in Windows' source)
# The machine's own reaper record: a WORK_QUEUE_ITEM followed by the thread it reaps
# (Windows keeps one static work item and chains threads through ETHREAD.ReaperLink).
REAPER_TAG = "PsRp"
WORK_ITEM_SIZE = 0x20


def _handle_object(m, thread, handle: int, type_name: str) -> tuple[int, int]:
    """(object, 0) for a handle in the caller's process table, or (0, error status)."""
    body = handle_object(m, thread, handle)
    if body is None:
        return 0, STATUS_INVALID_HANDLE
    if type_of(m, body) != type_name:
        return 0, STATUS_OBJECT_TYPE_MISMATCH
    return body, STATUS_SUCCESS


def thread_list(m, eprocess: int) -> list[int]:
    """The ETHREADs on a process's ThreadListHead, in list order."""
    off = Struct(m.kspace, "_ETHREAD", 0).offset("ThreadListEntry")
    head = Struct(m.kspace, "_EPROCESS", eprocess).addr("ThreadListHead")
    return [entry - off for entry in iterate_list(m.kspace, head)]


@routine("NtTerminateThread", frame=0x48, size=0x180)
def NtTerminateThread(m, proc, a):
    """(ThreadHandle, ExitStatus): NULL means this thread unless it is the last one."""
    thread = proc.current
    handle, status = a[0], a[1] & 0xFFFFFFFF
    if handle == 0:
        if Struct(m.kspace, "_EPROCESS", thread.process.eprocess).get("ActiveThreads") == 1:
            return STATUS_CANT_TERMINATE_SELF
        target = thread.ethread
    elif handle == NT_CURRENT_THREAD:
        target = thread.ethread
    else:
        target, error = _handle_object(m, thread, handle, "Thread")
        if error:
            return error
    result = yield Call(m.sym("PspTerminateThreadByPointer"),
                        (target, status, int(target == thread.ethread)), ret=0x12C)
    return result


@routine("NtTerminateProcess", frame=0x58, size=0x280)
def NtTerminateProcess(m, proc, a):
    """(ProcessHandle, ExitStatus): every thread of the process terminates, the caller
    last; a NULL handle terminates the caller's other threads only."""
    thread = proc.current
    handle, status = a[0], a[1] & 0xFFFFFFFF
    if handle in (0, NT_CURRENT_PROCESS):
        eprocess = thread.process.eprocess
    else:
        eprocess, error = _handle_object(m, thread, handle, "Process")
        if error:
            return error
    ep = Struct(m.kspace, "_EPROCESS", eprocess)
    if ep.get("UniqueProcessId") in (0, 4):
        return STATUS_ACCESS_DENIED  # the Idle and System processes cannot be terminated
    if not ep.get("ProcessDelete"):
        # The first termination request decides the process's exit status.
        ep.set("ProcessDelete", 1)
        ep.set("ExitStatus", status)
    for ethread in thread_list(m, eprocess):
        if ethread != thread.ethread and ethread in m.thread_index:
            yield Call(m.sym("PspTerminateThreadByPointer"), (ethread, status, 0), ret=0x1B0)
    if eprocess == thread.process.eprocess and handle != 0:
        yield Call(m.sym("PspTerminateThreadByPointer"), (thread.ethread, status, 1),
                   ret=0x1F4)
    return STATUS_SUCCESS


@routine("PspTerminateThreadByPointer", frame=0x78, size=0x300)
def PspTerminateThreadByPointer(m, proc, a):
    """(Thread, ExitStatus, DirectTerminate): exit now when the thread is the caller,
    else queue it the exit APC."""
    ethread, status = a[0], a[1] & 0xFFFFFFFF
    et = Struct(m.kspace, "_ETHREAD", ethread)
    if a[2] & 0xFF and ethread == proc.current.ethread:
        et.set("Terminated", 1)
        yield Call(m.sym("PspExitThread"), (status,), ret=0x6E)
    if et.get("Tcb.SystemThread"):
        return STATUS_ACCESS_DENIED  # system threads end only by themselves
    apc = yield Call(m.sym("ExAllocatePoolWithTag"),
                     (0, m.catalog.get("_KAPC").size, tag_value(EXIT_APC_TAG)), ret=0xB9)
    if et.get("Terminated"):
        # Someone asked first: that request's APC does the exit.
        yield Call(m.sym("ExFreePool"), (apc,), ret=0xD5)
        return STATUS_SUCCESS
    et.set("Terminated", 1)
    yield Call(m.sym("KeInitializeApc"),
               (apc, ethread, 0, m.sym("PsExitSpecialApc"), m.sym("PspExitApcRundown"),
                m.sym("PspExitNormalApc"), KERNEL_MODE, status), ret=0x15A)
    result = yield from queue_pool_apc(m, apc, apc, 0, 2, ret=0x187, free_ret=0x1A9)
    return result


@routine("PsExitSpecialApc", frame=0x28, size=0x80)
def PsExitSpecialApc(m, proc, a):
    """The exit APC's kernel routine: the normal routine does the exit."""
    return 0


@routine("PspExitNormalApc", frame=0x38, size=0x100)
def PspExitNormalApc(m, proc, a):
    """(ExitStatus, Apc, _) at PASSIVE_LEVEL in the thread that is to exit."""
    yield Call(m.sym("ExFreePool"), (a[1],), ret=0x2C)
    yield Call(m.sym("PspExitThread"), (a[0] & 0xFFFFFFFF,), ret=0x4B)


@routine("PspExitApcRundown", frame=0x28, size=0x60)
def PspExitApcRundown(m, proc, a):
    """(Apc): an exit APC still queued when its thread exits anyway is freed."""
    yield Call(m.sym("ExFreePool"), (a[0],), ret=0x1D)


@routine("PsTerminateSystemThread", frame=0x38, size=0x100)
def PsTerminateSystemThread(m, proc, a):
    """(ExitStatus): the current system thread ends; it never runs again."""
    thread = proc.current
    if not Struct(m.kspace, "_KTHREAD", thread.ethread).get("SystemThread"):
        return STATUS_INVALID_PARAMETER
    yield Call(m.sym("PspTerminateThreadByPointer"), (thread.ethread, a[0] & 0xFFFFFFFF, 1),
               ret=0xA1)


@routine("PspExitThread", frame=0x98, size=0x700)
def PspExitThread(m, proc, a):
    """(ExitStatus): the current thread exits; this routine never returns."""
    from machine.ke.apc import flush_apc_queue

    status = a[0] & 0xFFFFFFFF
    thread = proc.current
    et = Struct(m.kspace, "_ETHREAD", thread.ethread)
    ep = Struct(m.kspace, "_EPROCESS", thread.process.eprocess)
    et.set("Terminated", 1)
    et.set("ExitStatus", status)
    et.set("ExitTime", m.system_time())
    ep.set("ActiveThreads", ep.get("ActiveThreads") - 1)
    ep.set("LastThreadExitStatus", status)
    last = ep.get("ActiveThreads") == 0
    # The thread's pending IRPs are cancelled (and waited for) before it goes.
    yield Call(m.sym("IoCancelThreadIo"), (thread.ethread,), ret=0x1C4)
    if last:
        if ep.get("ExitStatus") == STATUS_PENDING:
            ep.set("ExitStatus", status)  # nobody terminated the process: its last thread
        yield Call(m.sym("PspExitProcess"), (1, thread.process.eprocess), ret=0x2A8)
    proc = m.processor_of(thread)
    rundown_mutants(m, thread)  # KeRundownThread: owned mutants are abandoned
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    kt.set("ApcQueueable", 0)  # KeDisableApcQueuingThread
    disabled = kt.get("CombinedApcDisable")
    if disabled:
        # A critical or guarded region left open: the thread's APCs could never run.
        first = kt.get("ApcState.ApcListHead[0].Flink")
        pending = first if first != kt.addr("ApcState.ApcListHead[0]") else 0
        yield Call(m.sym("KeBugCheckEx"), (KERNEL_APC_PENDING_DURING_EXIT, pending, disabled,
                                           proc.irql, 0), ret=0x3C0)
    for mode in (USER_MODE, KERNEL_MODE):
        for apc_addr in flush_apc_queue(m, thread.ethread, mode):
            rundown = Struct(m.kspace, "_KAPC", apc_addr).get("RundownRoutine")
            if rundown:
                yield Call(rundown, (apc_addr,), ret=0x44E)
            elif mode == USER_MODE:
                # User APCs are pool blocks (NtQueueApcThread's); kernel ones without a
                # rundown routine belong to their owner (an IRP's, a driver's).
                yield Call(m.sym("ExFreePool"), (apc_addr,), ret=0x47A)
    yield Call(m.sym("KeTerminateThread"), (0,), ret=0x5F0)


@routine("PspExitProcess", frame=0x68, size=0x300)
def PspExitProcess(m, proc, a):
    """(LastThreadExit, Process): in the process's last thread: its handles are closed,
    then the process object is signaled."""
    eprocess = a[1]
    ep = Struct(m.kspace, "_EPROCESS", eprocess)
    ep.set("ProcessExiting", 1)
    ep.set("ProcessDelete", 1)
    yield Call(m.sym("ObKillProcess"), (eprocess,), ret=0x1A6)
    ep.set("ExitTime", m.system_time())
    ep.set("Pcb.Header.SignalState", 1)  # KeSetProcess: waiters on the process wake
    signal_waiters(m, eprocess)
    dereference(m, eprocess)  # the reference a running process holds on itself
    return 0


@routine("KeTerminateThread", frame=0x58, size=0x200)
def KeTerminateThread(m, proc, a):
    """The end of PspExitThread: the thread object is signaled, the thread leaves its
    process's scheduling list, the reaper is queued, and the processor switches away
    from the thread for good."""
    thread = proc.current
    item = yield Call(m.sym("ExAllocatePoolWithTag"),
                      (0, WORK_ITEM_SIZE + 8, tag_value(REAPER_TAG)), ret=0x36)
    proc = m.processor_of(thread)
    m.set_irql(proc, DISPATCH_LEVEL)  # no preemption between here and the last switch
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    kt.set("Header.SignalState", 1)
    signal_waiters(m, thread.ethread)
    entry = kt.addr("ThreadListEntry")  # KPROCESS.ThreadListHead: threads that may run
    remove_entry_list(m.kspace, entry)
    initialize_list_head(m.kspace, entry)
    kt.set("State", TERMINATED)
    w = Struct(m.kspace, "_WORK_QUEUE_ITEM", item)
    w.set("WorkerRoutine", m.sym("PspReaper"))
    w.set("Parameter", item)
    m.kspace.write_u64(item + WORK_ITEM_SIZE, thread.ethread)
    from machine.ex.worker import insert_queue

    insert_queue(m, m.work_queue, item)
    new = m.next_ready(proc) or proc.idle
    yield Call(m.sym("KiSwapContext"), (thread.ethread, new.ethread), ret=0x1A1)


@routine("PspReaper", frame=0x48, size=0x180)
def PspReaper(m, proc, a):
    """(ReaperItem) in a system worker: once the exited thread's last context switch is
    over (KeWaitForContextSwap), drop the reference the thread held on itself."""
    item = a[0]
    ethread = m.kspace.read_u64(item + WORK_ITEM_SIZE)
    yield Call(m.sym("ExFreePool"), (item,), ret=0x2E)
    while Struct(m.kspace, "_KTHREAD", ethread).get("Running"):
        yield Pause(at=0x60)
    dereference(m, ethread)
    return 0


def delete_thread(m, ethread: int) -> None:
    """PspThreadDelete: the thread leaves its process's thread list and the machine's
    records, and drops its reference to the process."""
    et = Struct(m.kspace, "_ETHREAD", ethread)
    entry = et.addr("ThreadListEntry")
    remove_entry_list(m.kspace, entry)
    initialize_list_head(m.kspace, entry)
    rec = m.thread_index.pop(ethread, None)
    if rec is not None:
        rec.process.threads[:] = [t for t in rec.process.threads if t is not rec]
        m.threads[:] = [t for t in m.threads if t is not rec]
    dereference(m, et.get("Tcb.Process"))


def delete_process(m, eprocess: int) -> None:
    """PspProcessDelete: the process leaves PsActiveProcessHead and the machine's records."""
    ep = Struct(m.kspace, "_EPROCESS", eprocess)
    links = ep.addr("ActiveProcessLinks")
    if m.kspace.read_u64(links) not in (0, links):
        remove_entry_list(m.kspace, links)
        initialize_list_head(m.kspace, links)
    table = ep.get("ObjectTable")
    if table:
        ep.set("ObjectTable", 0)
        delete_handle_table(m, table)
    name_info = ep.get("SeAuditProcessCreationInfo.ImageFileName")
    if name_info:  # the full image path (an OBJECT_NAME_INFORMATION and its buffer)
        ep.set("SeAuditProcessCreationInfo.ImageFileName", 0)
        free_pool_block(m, Struct(m.kspace, "_UNICODE_STRING", name_info).get("Buffer"))
        free_pool_block(m, name_info)
    m.processes[:] = [p for p in m.processes if p.eprocess != eprocess]


register_delete_procedure("Thread", delete_thread)
register_delete_procedure("Process", delete_process)
