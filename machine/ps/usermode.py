"""Threads in user mode.  User-mode code is not simulated instruction by instruction yet:
a user thread follows a small program of system calls (a generator yielding `Syscall`s),
and each call enters the kernel the way `syscall` does — a `_KTRAP_FRAME` at the top of
the kernel stack holding the user context, then KiSystemCall64 calling the service.

User APCs reach the program the way they reach user code: a return to user mode at
ntdll!KiUserApcDispatcher.  A thread's program declares the APC routines its thread may
be asked to run by yielding `UserRoutine(address, body)` (user code at that address, no
system call); when an APC for that address is delivered, body(UserApc) runs — its
`Syscall`s are the routine's — and then NtContinue resumes the interrupted call, whose
status the program gets.  An APC naming an undeclared address runs no calls."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

from machine.ke.native import Call, TrapReturn, routine
from machine.ke.trapframe import USER_CS, USER_SS, save_context
from machine.ke.userapc import user_apc_dispatcher
from machine.types.view import Struct

NTDLL_SYSCALL_STUBS = 0x9D000  # rva of ntdll's system call stubs
STUB_SIZE = 0x20
IRQL_GT_ZERO_AT_SYSTEM_SERVICE = 0x4A
# The argument area a service is called with: home slots and up to 10 stack arguments.
SERVICE_ARGUMENTS = 0x70
SERVICES = ("NtWaitForSingleObject", "NtDeviceIoControlFile", "NtDelayExecution",
            "NtCreateFile", "NtClose", "NtReadFile", "NtWriteFile", "NtCancelIoFile",
            "NtTerminateThread", "NtTerminateProcess", "NtTestAlert", "NtQueueApcThread",
            "NtContinue")


@dataclass(frozen=True)
class Syscall:
    service: str
    args: tuple[int, ...] = ()


@dataclass(frozen=True)
class UserApc:
    """A user APC as KiUserApcDispatcher finds it: the routine, its three arguments and
    the saved context (on the user stack) that NtContinue resumes."""

    routine: int
    context: int
    argument1: int
    argument2: int
    context_record: int


@dataclass(frozen=True)
class UserRoutine:
    """User code at `address`: body(UserApc) yields the system calls it makes."""

    address: int
    body: Callable[[UserApc], Generator]


def user_stack_top(tid: int) -> int:
    return 0x0000000800000000 + tid * 0x100000 - 0xC08


def stub_address(m, service: str) -> int:
    """Where the user thread sits in ntdll while a system call is in progress."""
    return m.layout.ntdll_base + NTDLL_SYSCALL_STUBS + SERVICES.index(service) * STUB_SIZE + 0x14


def user_step(m, proc, thread) -> None:
    """Run the thread's user program up to its next system call and enter the kernel."""
    if not thread.started_user:
        thread.user_program = user_runtime(m, thread, thread.user_program)
    program = thread.user_program
    try:
        if thread.started_user:
            req = program.send(apc_at_dispatcher(m, thread) or thread.pending_status)
        else:
            req = next(program)
    except StopIteration:
        thread.user_program = idle_program(m, thread)
        thread.started_user = False
        return
    thread.started_user = True
    cpu = proc.cpu
    tf = thread.trap_frame
    rip = stub_address(m, req.service)
    save_context(cpu.mem, tf, cpu.regs, rip, thread.saved_user_rsp, 0x246, USER_CS, USER_SS,
                 0, proc.irql, 1)
    thread.user_mode = False
    thread.syscall = req
    cpu.regs[4] = tf
    cpu.rip = m.native_base["KiSystemCall64"]
    m.enter_trap_native(proc, "KiSystemCall64", tf)


def apc_at_dispatcher(m, thread) -> UserApc | None:
    """The user APC the thread is about to run, when it is back in user mode at
    KiUserApcDispatcher: the dispatcher's arguments are in the context at rsp."""
    if thread.saved_user_rip != user_apc_dispatcher(m):
        return None
    record = thread.saved_user_rsp
    ctx = Struct(thread.process.space, "_CONTEXT", record)
    return UserApc(ctx.get("P4Home"), ctx.get("P1Home"), ctx.get("P2Home"),
                   ctx.get("P3Home"), record)


def user_runtime(m, thread, program):
    """What ntdll does around a thread's program: it runs the program, its APC routines
    when the kernel delivers APCs (then NtContinue), and the idle loop when the program
    is over.  Yields the system calls; is sent their statuses, or a UserApc."""
    routines: dict[int, Callable[[UserApc], Generator]] = {}

    def run(body):
        value, started = None, False
        while True:
            try:
                req = body.send(value) if started else next(body)
            except StopIteration:
                return
            started = True
            if isinstance(req, UserRoutine):
                routines[req.address] = req.body
                value = None
                continue
            value = yield req
            while isinstance(value, UserApc):
                apc = value
                handler = routines.get(apc.routine)
                if handler is not None:
                    yield from run(handler(apc))
                value = yield Syscall("NtContinue", (apc.context_record, 1))

    if program is not None:
        yield from run(program)
    yield from run(idle_program(m, thread))


def idle_program(m, thread):
    """What a user thread does when its program is over: wait on an event forever."""
    from machine.ob.object import insert_handle
    from machine.ps.create import create_event

    ep = Struct(m.kspace, "_EPROCESS", thread.process.eprocess)
    handle = insert_handle(m, ep.get("ObjectTable"), create_event(m))
    while True:
        yield Syscall("NtWaitForSingleObject", (handle, 0, 0))


@routine("KiSystemCall64", trap=True, size=0x400, error_code=True,
         below_trap_frame=SERVICE_ARGUMENTS,
         labels=(("KiSystemServiceCopyEnd", 0x300),))
def KiSystemCall64(m, proc, frame):
    tf = frame.extra["tf"]
    thread = proc.current
    req = thread.syscall
    Struct(m.kspace, "_KTHREAD", thread.ethread).set("TrapFrame", tf)
    service = m.sym(req.service)
    # The service's arguments go below the trap frame (KiSystemServiceCopyEnd's copy).
    status = yield Call(service, req.args, ret=0x325)
    proc = m.processor_of(thread)
    if proc.irql != 0:
        from machine.ke.bugcheck import crash

        # Returning to user mode above PASSIVE_LEVEL.
        crash(m, proc, IRQL_GT_ZERO_AT_SYSTEM_SERVICE, (service, proc.irql, 0, 0))
    thread.pending_status = status & 0xFFFFFFFF
    # The service's status goes back in rax (a user APC delivered now saves it in the
    # context NtContinue resumes).
    Struct(m.kspace, "_KTRAP_FRAME", tf).set("Rax", thread.pending_status)
    if Struct(m.kspace, "_KTHREAD", thread.ethread).get("ApcState.UserApcPending"):
        yield Call(m.sym("KiInitiateUserApc"), (tf,), ret=0x3A0)
    yield TrapReturn(tf)


@routine("KiStartUserThread", frame=0x38, size=0x80)
def KiStartUserThread(m, proc, a):
    """Leave the kernel for the thread's first instruction in user mode."""
    thread = proc.current
    m.set_irql(proc, 0)
    tf = thread.trap_frame
    cpu = proc.cpu
    save_context(cpu.mem, tf, [0] * 16, thread.user_start, user_stack_top(thread.tid), 0x246,
                 USER_CS, USER_SS, 0, 0, 1)
    thread.saved_user_rsp = user_stack_top(thread.tid)
    yield TrapReturn(tf)


@routine("KiStartSystemThread", frame=0x28, size=0x40)
def KiStartSystemThread(m, proc, a):
    thread = proc.current
    m.set_irql(proc, 0)  # a new thread is switched in at DISPATCH_LEVEL: start at PASSIVE
    yield Call(m.sym("PspSystemThreadStartup"), (thread.ethread,), ret=0x28)


@routine("PspSystemThreadStartup", frame=0x38, size=0x80)
def PspSystemThreadStartup(m, proc, a):
    thread = proc.current
    start = Struct(m.kspace, "_ETHREAD", thread.ethread).get("StartAddress")
    yield Call(start, (thread.start_context,), ret=0x55)
    # The start routine returned: the thread exits.
    yield Call(m.sym("PsTerminateSystemThread"), (0,), ret=0x6D)
