"""User-mode APCs: queued by NtQueueApcThread, delivered on the way back to user mode.

Delivery is KiInitializeUserApc's: the user context in the trap frame is saved as a
`_CONTEXT` on the user stack (under a `_MACHINE_FRAME`), the APC's routine and arguments
go in the context's home slots (P1Home NormalContext, P2Home SystemArgument1, P3Home
SystemArgument2, P4Home NormalRoutine), and the trap frame returns to
ntdll!KiUserApcDispatcher with rsp at the context.  The dispatcher calls the routine and
then NtContinue(context, TRUE), which puts the saved context back in the trap frame and
lets the next queued user APC in.  User code is not simulated: machine.ps.usermode
runs the routine as the thread's program would (see user_runtime there).
"""

from __future__ import annotations

from machine.ex.pool import tag_value
from machine.ke.apc import USER_MODE, poll_alert, queue_pool_apc
from machine.ke.bugcheck import CONTEXT_FULL
from machine.ke.native import Call, routine
from machine.ke.trapframe import SAVED
from machine.mm.paging import PageFault
from machine.mm.physical import PAGE_SIZE
from machine.types.view import Struct

# ntdll's user APC dispatcher (the machine's own placement in its ntdll image, next to
# the system call stubs; see machine.ps.usermode).
KI_USER_APC_DISPATCHER_RVA = 0xA0C30
MACHINE_FRAME_SIZE = 0x28
STACK_ROUND = 0xF
APC_TAG = "Psap"  # NtQueueApcThread's APCs ('pasP' in Windows' source)
STATUS_SUCCESS = 0
STATUS_ALERTED = 0x101
STATUS_ACCESS_VIOLATION = 0xC0000005
STATUS_INVALID_HANDLE = 0xC0000008
NT_CURRENT_THREAD = 0xFFFFFFFFFFFFFFFE


def user_apc_dispatcher(m) -> int:
    return m.layout.ntdll_base + KI_USER_APC_DISPATCHER_RVA


def _commit_user_stack(space, low: int, high: int) -> None:
    """The stack pages the context goes on exist (user stacks grow on demand)."""
    for page in range(low & ~(PAGE_SIZE - 1), high, PAGE_SIZE):
        if not space.get_pte(page) & 1:
            space.map_new(page, PAGE_SIZE, user=True)


def initialize_user_apc(m, proc, tf: int, normal: int, context: int, arg1: int,
                        arg2: int) -> None:
    """KiInitializeUserApc: save the trap frame's user context on the user stack and
    send the thread to KiUserApcDispatcher when it returns to user mode."""
    space = proc.cpu.mem
    trap = Struct(space, "_KTRAP_FRAME", tf)
    rsp = trap.get("Rsp")
    machine_frame = (rsp - MACHINE_FRAME_SIZE) & ~STACK_ROUND
    size = m.catalog.get("_CONTEXT").size
    record = machine_frame - size
    _commit_user_stack(space, record, rsp)
    space.write(record, bytes(size + MACHINE_FRAME_SIZE))
    ctx = Struct(space, "_CONTEXT", record)
    ctx.set("ContextFlags", CONTEXT_FULL)
    for name, _index in SAVED:
        ctx.set(name, trap.get(name))
    for name in ("Rip", "Rsp", "EFlags", "SegCs", "SegSs"):
        ctx.set(name, trap.get(name))
    for name in ("SegDs", "SegEs", "SegGs"):
        ctx.set(name, 0x2B)
    ctx.set("SegFs", 0x53)
    ctx.set("P1Home", context)
    ctx.set("P2Home", arg1)
    ctx.set("P3Home", arg2)
    ctx.set("P4Home", normal)
    frame = Struct(space, "_MACHINE_FRAME", machine_frame)
    frame.set("Rip", trap.get("Rip"))
    frame.set("Rsp", rsp)
    trap.set("Rsp", record)
    trap.set("Rip", user_apc_dispatcher(m))


@routine("NtContinue", frame=0x48, size=0x180)
def NtContinue(m, proc, a):
    """(ContextRecord, TestAlert): the thread returns to user mode with this context;
    the result is the context's rax, what the interrupted code sees."""
    thread = proc.current
    space = proc.cpu.mem
    trap = Struct(m.kspace, "_KTRAP_FRAME",
                  Struct(m.kspace, "_KTHREAD", thread.ethread).get("TrapFrame"))
    ctx = Struct(space, "_CONTEXT", a[0])
    try:
        values = {name: ctx.get(name) for name, _index in SAVED}
        rip, rsp, eflags = ctx.get("Rip"), ctx.get("Rsp"), ctx.get("EFlags")
    except PageFault:
        return STATUS_ACCESS_VIOLATION
    for name, value in values.items():
        trap.set(name, value)
    trap.set("Rip", rip)
    trap.set("Rsp", rsp)
    trap.set("EFlags", eflags | 0x200)  # user code always runs with interrupts enabled
    if a[1] & 0xFF:
        poll_alert(m, thread.ethread, USER_MODE)
    return values["Rax"]


@routine("NtTestAlert", frame=0x28, size=0x60)
def NtTestAlert(m, proc, a):
    """STATUS_ALERTED if the thread was alerted; else queued user APCs become pending
    and run as the call returns to user mode."""
    return STATUS_ALERTED if poll_alert(m, proc.current.ethread, USER_MODE) else STATUS_SUCCESS


@routine("NtQueueApcThread", frame=0x68, size=0x200)
def NtQueueApcThread(m, proc, a):
    """(ThreadHandle, ApcRoutine, ApcArgument1, ApcArgument2, ApcArgument3): a user APC
    for the thread: ApcRoutine(ApcArgument1, ApcArgument2, ApcArgument3)."""
    from machine.ob.object import handle_object_of_type

    thread = proc.current
    if a[0] == NT_CURRENT_THREAD:
        target = thread.ethread
    else:
        target = handle_object_of_type(m, thread, a[0], "Thread")
        if target is None:
            return STATUS_INVALID_HANDLE
    if Struct(m.kspace, "_KTHREAD", target).get("SystemThread"):
        return STATUS_INVALID_HANDLE  # system threads never return to user mode
    apc = yield Call(m.sym("ExAllocatePoolWithTag"),
                     (0, m.catalog.get("_KAPC").size, tag_value(APC_TAG)), ret=0x8A)
    yield Call(m.sym("KeInitializeApc"),
               (apc, target, 0, m.sym("PspQueueApcSpecialApc"), 0, a[1], USER_MODE, a[2]),
               ret=0xE1)
    status = yield from queue_pool_apc(m, apc, a[3], a[4], 0, ret=0x10F, free_ret=0x135)
    return status


@routine("PspQueueApcSpecialApc", frame=0x28, size=0x60)
def PspQueueApcSpecialApc(m, proc, a):
    """The kernel routine of NtQueueApcThread's APCs: the APC's memory goes back."""
    yield Call(m.sym("ExFreePool"), (a[0],), ret=0x1D)
