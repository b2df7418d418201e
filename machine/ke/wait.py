"""Waiting and switching threads: KeWaitForSingleObject down to KiSwapContext."""

from __future__ import annotations

from machine.ke.native import Block, Call, Pause, routine
from machine.ke.processor import DISPATCH_LEVEL
from machine.ke.threads import WAITING
from machine.rtl.lists import insert_tail_list
from machine.types.view import Struct

WAIT_BLOCK_SIZE = 0x30
# _KOBJECTS values of the dispatcher objects waits understand
EVENT_SYNCHRONIZATION, MUTANT_OBJECT, SEMAPHORE_OBJECT, TIMER_SYNCHRONIZATION = 1, 2, 5, 9
THREAD_NOT_MUTEX_OWNER = 0x11
STATUS_SUCCESS = 0
STATUS_ABANDONED = 0x80  # STATUS_ABANDONED_WAIT_0: the mutant's owner exited holding it
STATUS_USER_APC = 0xC0
STATUS_KERNEL_APC = 0x100
STATUS_ALERTED = 0x101
STATUS_TIMEOUT = 0x102
WAIT_ANY = 1
KWAIT_BLOCK_STATE_WAITING = 4  # WaitBlockActive
TIMER_WAIT_BLOCK = 3  # the wait block a thread's own timer uses
KERNEL_MODE, USER_MODE = 0, 1
DELAY_EXECUTION = 4  # _KWAIT_REASON DelayExecution


@routine("KiSwapContext", frame=0x38, size=0x120)
def KiSwapContext(m, proc, a):
    new = m.thread_at(a[1])
    yield Block(next_thread=new, at=0x76)
    return 0


@routine("KiSwapThread", frame=0xA8, size=0x600)
def KiSwapThread(m, proc, a):
    old = m.thread_at(a[0])
    new = m.next_ready(proc) or proc.idle
    yield Call(m.sym("KiSwapContext"), (old.ethread, new.ethread), ret=0x500)
    return Struct(m.kspace, "_KTHREAD", old.ethread).get("WaitStatus")


@routine("KiCommitThreadWait", frame=0x88, size=0x200)
def KiCommitThreadWait(m, proc, a):
    status = yield Call(m.sym("KiSwapThread"), (a[0], proc.prcb), ret=0x14F)
    return status


@routine("KeWaitForSingleObject", frame=0x58, size=0x300)
def KeWaitForSingleObject(m, proc, a):
    """(Object, WaitReason, WaitMode, Alertable, Timeout*): a timeout (100 ns units,
    negative = relative) waits on the thread's timer too and ends with STATUS_TIMEOUT; a
    zero timeout only tests the object."""
    from machine.ke.bugcheck import crash

    obj, reason, mode, alertable = a[0], a[1] & 0xFF, a[2] & 0xFF, a[3] & 0xFF
    thread = proc.current
    if proc.irql >= DISPATCH_LEVEL:
        # IRQL_NOT_LESS_OR_EQUAL: waiting is not allowed at DISPATCH_LEVEL or above.
        crash(m, proc, 0xA, (obj, proc.irql, 0, m.native_base["KeWaitForSingleObject"]))
    due = due_time(m, proc.cpu.mem.read_u64(a[4])) if a[4] else None
    wait_irql = proc.irql
    while True:
        if signaled_for(m, obj, thread):
            return satisfy_wait(m, obj, thread)
        alert = alert_status(m, thread, mode, alertable)
        if alert is not None:
            return alert
        if due == 0:
            return STATUS_TIMEOUT
        begin_wait(m, proc, thread, obj, reason, mode, alertable)
        if due is not None:
            arm_thread_timer(m, proc, thread, due)
        status = yield Call(m.sym("KiCommitThreadWait"), (thread.ethread, 0, 0, 0),
                            ret=0x233)
        # Resumed on whatever processor switched us in, at the IRQL of that switch: back
        # to the IRQL the wait began at.
        proc = m.processor_of(thread)
        m.set_irql(proc, wait_irql)
        if due is not None:
            _cancel_thread_timer(m, thread)
        if status != STATUS_KERNEL_APC:
            return status
        # Woken to run a kernel APC: let it be delivered, then wait again.
        yield Pause(at=0x2A0)


def due_time(m, timeout: int) -> int:
    """A wait's timeout as the absolute system time it ends at (0: do not wait), so a
    wait resumed after a kernel APC keeps its deadline."""
    from machine.ke.timer import interrupt_time
    from machine.machine import BOOT_SYSTEM_TIME

    if timeout >> 63:  # relative
        return BOOT_SYSTEM_TIME + interrupt_time(m) + ((1 << 64) - timeout)
    return timeout


def arm_thread_timer(m, proc, thread, due: int) -> None:
    """Set the thread's own timer for `due` and add its wait block (the last of the
    thread's four) to the wait being set up: the timer's expiry ends the wait with
    STATUS_TIMEOUT."""
    from machine.ke.timer import set_timer

    timer = Struct(m.kspace, "_KTHREAD", thread.ethread).addr("Timer")
    set_timer(m, proc, timer, due, 0, 0)
    queue_wait_block(m, thread, TIMER_WAIT_BLOCK, timer, STATUS_TIMEOUT)


def _cancel_thread_timer(m, thread) -> None:
    from machine.ke.timer import cancel

    cancel(m, Struct(m.kspace, "_KTHREAD", thread.ethread).addr("Timer"))


def alert_status(m, thread, mode: int, alertable: int) -> int | None:
    """The status a wait ends with at once because of an alert or a user APC (Windows'
    TestForAlertPending), or None: an alertable wait ends for an alert, or — waiting
    from user mode — for a queued user APC, which becomes pending for delivery; a
    non-alertable user-mode wait still ends for a user APC that is already pending."""
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    if alertable:
        if kt.get(f"Alerted[{mode}]"):
            kt.set(f"Alerted[{mode}]", 0)
            return STATUS_ALERTED
        head = kt.addr(f"ApcState.ApcListHead[{USER_MODE}]")
        if mode != KERNEL_MODE and m.kspace.read_u64(head) != head:
            kt.set("ApcState.UserApcPending", 1)
            return STATUS_USER_APC
        if kt.get(f"Alerted[{KERNEL_MODE}]"):
            kt.set(f"Alerted[{KERNEL_MODE}]", 0)
            return STATUS_ALERTED
    elif mode != KERNEL_MODE and kt.get("ApcState.UserApcPending"):
        return STATUS_USER_APC
    return None


def begin_wait(m, proc, thread, obj: int, reason: int, mode: int, alertable: int,
               block: int = 0, key: int = 0) -> None:
    """Put the thread's wait block `block` on the object's wait list; `key` is the
    status a wake through this block gives."""
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    kt.set("WaitBlockList", queue_wait_block(m, thread, block, obj, key))
    kt.set("State", WAITING)
    kt.set("WaitReason", reason)
    kt.set("WaitMode", mode)
    kt.set("Alertable", alertable)
    kt.set("WaitIrql", proc.irql)
    kt.set("WaitTime", m.tick_count)
    kt.set("WaitStatus", 0)


def queue_wait_block(m, thread, block: int, obj: int, key: int) -> int:
    """Fill in the thread's wait block `block` for a wait on the dispatcher object and
    put it at the tail of the object's wait list; its address."""
    wb = Struct(m.kspace, "_KTHREAD", thread.ethread).addr(f"WaitBlock[{block}]")
    w = Struct(m.kspace, "_KWAIT_BLOCK", wb)
    w.set("WaitType", WAIT_ANY)
    w.set("BlockState", KWAIT_BLOCK_STATE_WAITING)
    w.set("WaitKey", key)
    w.set("Thread", thread.ethread)
    w.set("Object", obj)
    head = Struct(m.kspace, "_DISPATCHER_HEADER", obj).addr("WaitListHead")
    insert_tail_list(m.kspace, head, wb)
    return wb


def unwait(m, thread, status: int) -> None:
    """End a thread's wait with a status: its wait blocks (the object's, and its timer's
    for a timed wait) leave their objects' lists and the thread becomes Ready."""
    from machine.rtl.lists import initialize_list_head, remove_entry_list

    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    for block in range(TIMER_WAIT_BLOCK + 1):
        w = Struct(m.kspace, "_KWAIT_BLOCK", kt.addr(f"WaitBlock[{block}]"))
        if w.get("BlockState") == KWAIT_BLOCK_STATE_WAITING:
            remove_entry_list(m.kspace, w.address)
            initialize_list_head(m.kspace, w.address)
            w.set("BlockState", 0)
    kt.set("WaitStatus", status)
    kt.set("WaitBlockList", 0)
    m.make_ready(thread)


@routine("KiIdleLoop", frame=0x38, size=0x200)
def KiIdleLoop(m, proc, a):
    idle = proc.idle
    while True:
        # The idle loop polls with interrupts enabled at PASSIVE_LEVEL, so pending DPCs
        # and the clock are taken here (Windows' idle loop drains DPCs itself).
        m.set_irql(proc, 0)
        new = m.next_ready(proc)
        if new is None:
            yield Pause(at=0x2E)
            continue
        yield Call(m.sym("KiSwapContext"), (idle.ethread, new.ethread), ret=0x9E)


@routine("NtWaitForSingleObject", frame=0x48, size=0x100)
def NtWaitForSingleObject(m, proc, a):
    """(Handle, Alertable, Timeout) from user mode: a UserRequest wait."""
    from machine.ob.object import handle_object

    thread = proc.current
    obj = handle_object(m, thread, a[0])
    if obj is None:
        return 0xC0000008  # STATUS_INVALID_HANDLE
    timeout = 0
    if a[2]:  # captured into this frame: the kernel never waits on user memory
        timeout = proc.cpu.regs[4] + 0x30
        proc.cpu.mem.write_u64(timeout, proc.cpu.mem.read_u64(a[2]))
    status = yield Call(m.sym("KeWaitForSingleObject"), (obj, 6, 1, a[1] & 0xFF, timeout),
                        ret=0x6A)
    return status


def signaled_for(m, obj: int, thread) -> bool:
    """Whether a wait by `thread` on the object is satisfied now."""
    header = Struct(m.kspace, "_DISPATCHER_HEADER", obj)
    if header.get("Type") == MUTANT_OBJECT:
        owner = Struct(m.kspace, "_KMUTANT", obj).get("OwnerThread")
        return header.get("SignalState") > 0 or owner == thread.ethread
    return header.get("SignalState") > 0


def satisfy_wait(m, obj: int, thread) -> int:
    """What satisfying a wait does to the object: a synchronization event resets, a
    semaphore counts down, a mutant counts down and records its owner.  Returns the
    wait's status: STATUS_ABANDONED for the new owner of an abandoned mutant (which is
    no longer abandoned once owned), else STATUS_SUCCESS."""
    header = Struct(m.kspace, "_DISPATCHER_HEADER", obj)
    kind = header.get("Type")
    if kind in (EVENT_SYNCHRONIZATION, TIMER_SYNCHRONIZATION):
        header.set("SignalState", 0)
    elif kind == SEMAPHORE_OBJECT:
        header.set("SignalState", header.get("SignalState") - 1)
    elif kind == MUTANT_OBJECT:
        mutant = Struct(m.kspace, "_KMUTANT", obj)
        if mutant.get("OwnerThread") != thread.ethread:
            mutant.set("OwnerThread", thread.ethread)
            head = Struct(m.kspace, "_KTHREAD", thread.ethread).addr("MutantListHead")
            insert_tail_list(m.kspace, head, mutant.addr("MutantListEntry"))
        header.set("SignalState", header.get("SignalState") - 1)
        if header.get("SignalState") == 0 and mutant.get("Abandoned"):
            mutant.set("Abandoned", 0)
            return STATUS_ABANDONED
    return STATUS_SUCCESS


def signal_waiters(m, obj: int) -> int:
    """Satisfy waits on a signaled dispatcher object: every waiter of a notification
    object, the first waiter of a synchronization object (which resets it).  Woken
    threads become Ready with their wait status; returns how many were woken."""
    header = Struct(m.kspace, "_DISPATCHER_HEADER", obj)
    head = header.addr("WaitListHead")
    woken = 0
    entry = m.kspace.read_u64(head)
    while entry != head and header.get("SignalState") > 0:
        nxt = m.kspace.read_u64(entry)
        wb = Struct(m.kspace, "_KWAIT_BLOCK", entry)
        thread = m.thread_at(wb.get("Thread"))
        status = satisfy_wait(m, obj, thread)
        unwait(m, thread, wb.get("WaitKey") | status)
        woken += 1
        entry = nxt
    return woken


@routine("KeSetEvent", frame=0x58, size=0x200)
def KeSetEvent(m, proc, a):
    """(Event, Increment, Wait) -> previous signal state."""
    header = Struct(m.kspace, "_DISPATCHER_HEADER", a[0])
    previous = header.get("SignalState")
    header.set("SignalState", 1)
    signal_waiters(m, a[0])
    return previous


@routine("KeResetEvent", frame=0x28, size=0x60)
def KeResetEvent(m, proc, a):
    header = Struct(m.kspace, "_DISPATCHER_HEADER", a[0])
    previous = header.get("SignalState")
    header.set("SignalState", 0)
    return previous


@routine("KeInitializeEvent", frame=0, size=0x40)
def KeInitializeEvent(m, proc, a):
    """(Event, Type, State)"""
    init_header(proc.cpu.mem, a[0], a[1] & 0xFF, m.catalog.get("_KEVENT").size,
                1 if a[2] & 0xFF else 0)
    return 0


def init_header(space, obj: int, kind: int, size: int, signal_state: int) -> None:
    from machine.rtl.lists import initialize_list_head

    header = Struct(space, "_DISPATCHER_HEADER", obj)
    header.set("Type", kind)
    header.set("Size", size // 4)
    header.set("SignalState", signal_state)
    initialize_list_head(space, header.addr("WaitListHead"))


@routine("KeInitializeMutex", frame=0x28, size=0x80)
def KeInitializeMutex(m, proc, a):
    """(Mutex, Level): a free mutant."""
    init_header(proc.cpu.mem, a[0], MUTANT_OBJECT, m.catalog.get("_KMUTANT").size, 1)
    mutant = Struct(proc.cpu.mem, "_KMUTANT", a[0])
    mutant.set("OwnerThread", 0)
    mutant.set("ApcDisable", 1)
    return 0


@routine("KeReleaseMutex", frame=0x48, size=0x180)
def KeReleaseMutex(m, proc, a):
    """(Mutex, Wait) -> previous signal state."""
    from machine.ke.bugcheck import crash
    from machine.rtl.lists import initialize_list_head, remove_entry_list

    mutant = Struct(m.kspace, "_KMUTANT", a[0])
    header = Struct(m.kspace, "_DISPATCHER_HEADER", a[0])
    previous = header.get("SignalState")
    if mutant.get("OwnerThread") != proc.current.ethread:
        crash(m, proc, THREAD_NOT_MUTEX_OWNER, (a[0], proc.current.ethread,
                                                mutant.get("OwnerThread"), 0))
    header.set("SignalState", previous + 1)
    if previous + 1 > 0:
        remove_entry_list(m.kspace, mutant.addr("MutantListEntry"))
        initialize_list_head(m.kspace, mutant.addr("MutantListEntry"))
        mutant.set("OwnerThread", 0)
        signal_waiters(m, a[0])
    return previous


@routine("KeInitializeSemaphore", frame=0x28, size=0x80)
def KeInitializeSemaphore(m, proc, a):
    """(Semaphore, Count, Limit)"""
    init_header(proc.cpu.mem, a[0], SEMAPHORE_OBJECT, m.catalog.get("_KSEMAPHORE").size,
                a[1] & 0xFFFFFFFF)
    Struct(proc.cpu.mem, "_KSEMAPHORE", a[0]).set("Limit", a[2] & 0xFFFFFFFF)
    return 0


@routine("KeReleaseSemaphore", frame=0x48, size=0x180)
def KeReleaseSemaphore(m, proc, a):
    """(Semaphore, Increment, Adjustment, Wait) -> previous count."""
    header = Struct(m.kspace, "_DISPATCHER_HEADER", a[0])
    previous = header.get("SignalState")
    header.set("SignalState", previous + (a[2] & 0xFFFFFFFF))
    signal_waiters(m, a[0])
    return previous


def rundown_mutants(m, thread) -> None:
    """KeRundownThread: every mutant the exiting thread owns is released as abandoned;
    the next thread to own it gets STATUS_ABANDONED from its wait."""
    from machine.rtl.lists import initialize_list_head, iterate_list, remove_entry_list

    head = Struct(m.kspace, "_KTHREAD", thread.ethread).addr("MutantListHead")
    off = Struct(m.kspace, "_KMUTANT", 0).offset("MutantListEntry")
    for entry in list(iterate_list(m.kspace, head)):
        remove_entry_list(m.kspace, entry)
        initialize_list_head(m.kspace, entry)
        mutant = Struct(m.kspace, "_KMUTANT", entry - off)
        mutant.set("OwnerThread", 0)
        mutant.set("Abandoned", 1)
        mutant.set("Header.SignalState", 1)
        signal_waiters(m, mutant.address)


@routine("KeDelayExecutionThread", frame=0x58, size=0x300)
def KeDelayExecutionThread(m, proc, a):
    """(WaitMode, Alertable, Interval*): wait on the thread's own timer alone;
    STATUS_SUCCESS when it expires, STATUS_USER_APC or STATUS_ALERTED when an alertable
    delay ends early."""
    mode, alertable = a[0] & 0xFF, a[1] & 0xFF
    thread = proc.current
    due = due_time(m, proc.cpu.mem.read_u64(a[2]))
    timer = Struct(m.kspace, "_KTHREAD", thread.ethread).addr("Timer")
    wait_irql = proc.irql
    while True:
        alert = alert_status(m, thread, mode, alertable)
        if alert is not None:
            return alert
        begin_wait(m, proc, thread, timer, DELAY_EXECUTION, mode, alertable,
                   block=TIMER_WAIT_BLOCK, key=STATUS_TIMEOUT)
        from machine.ke.timer import set_timer

        set_timer(m, proc, timer, due, 0, 0)
        status = yield Call(m.sym("KiCommitThreadWait"), (thread.ethread, 0, 0, 0), ret=0x1E9)
        proc = m.processor_of(thread)
        m.set_irql(proc, wait_irql)
        _cancel_thread_timer(m, thread)  # whatever ended the wait, the timer must not fire
        if status == STATUS_TIMEOUT:
            return STATUS_SUCCESS
        if status != STATUS_KERNEL_APC:
            return status
        yield Pause(at=0x2B0)  # a kernel APC runs, then the delay goes on


@routine("NtDelayExecution", frame=0x48, size=0x100)
def NtDelayExecution(m, proc, a):
    """(Alertable, DelayInterval*) from user mode: the interval is captured into this
    routine's frame, as the kernel never waits on a pointer into user memory."""
    local = proc.cpu.regs[4] + 0x20
    proc.cpu.mem.write_u64(local, proc.cpu.mem.read_u64(a[1]))
    status = yield Call(m.sym("KeDelayExecutionThread"), (USER_MODE, a[0] & 0xFF, local),
                        ret=0x5E)
    return status
