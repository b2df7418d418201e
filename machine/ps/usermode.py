"""Threads in user mode.  User-mode code is not simulated instruction by instruction yet:
a user thread follows a small program of system calls (a generator yielding `Syscall`s),
and each call enters the kernel the way `syscall` does — a `_KTRAP_FRAME` at the top of
the kernel stack holding the user context, then KiSystemCall64 calling the service."""

from __future__ import annotations

from dataclasses import dataclass

from machine.ke.native import Call, TrapReturn, routine
from machine.ke.trapframe import USER_CS, USER_SS, save_context
from machine.types.view import Struct

NTDLL_SYSCALL_STUBS = 0x9D000  # rva of ntdll's system call stubs
STUB_SIZE = 0x20
IRQL_GT_ZERO_AT_SYSTEM_SERVICE = 0x4A
SERVICES = ("NtWaitForSingleObject", "NtDeviceIoControlFile", "NtDelayExecution",
            "NtCreateFile", "NtClose", "NtReadFile", "NtWriteFile", "NtCancelIoFile",
            "NtTerminateThread", "NtTerminateProcess", "NtTestAlert", "NtQueueApcThread")


@dataclass(frozen=True)
class Syscall:
    service: str
    args: tuple[int, ...] = ()


def user_stack_top(tid: int) -> int:
    return 0x0000000800000000 + tid * 0x100000 - 0xC08


def stub_address(m, service: str) -> int:
    """Where the user thread sits in ntdll while a system call is in progress."""
    return m.layout.ntdll_base + NTDLL_SYSCALL_STUBS + SERVICES.index(service) * STUB_SIZE + 0x14


def user_step(m, proc, thread) -> None:
    """Run the thread's user program up to its next system call and enter the kernel."""
    program = thread.user_program
    try:
        req = program.send(thread.pending_status) if thread.started_user else next(program)
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


def idle_program(m, thread):
    """What a user thread does when its program is over: wait on an event forever."""
    from machine.ob.object import insert_handle
    from machine.ps.create import create_event

    ep = Struct(m.kspace, "_EPROCESS", thread.process.eprocess)
    handle = insert_handle(m, ep.get("ObjectTable"), create_event(m))
    while True:
        yield Syscall("NtWaitForSingleObject", (handle, 0, 0))


@routine("KiSystemCall64", trap=True, size=0x400, error_code=True,
         labels=(("KiSystemServiceCopyEnd", 0x300),))
def KiSystemCall64(m, proc, frame):
    tf = frame.extra["tf"]
    thread = proc.current
    req = thread.syscall
    Struct(m.kspace, "_KTHREAD", thread.ethread).set("TrapFrame", tf)
    service = m.sym(req.service)
    status = yield Call(service, req.args, ret=0x325)
    proc = m.processor_of(thread)
    if proc.irql != 0:
        from machine.ke.bugcheck import crash

        # Returning to user mode above PASSIVE_LEVEL.
        crash(m, proc, IRQL_GT_ZERO_AT_SYSTEM_SERVICE, (service, proc.irql, 0, 0))
    thread.pending_status = status & 0xFFFFFFFF
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
