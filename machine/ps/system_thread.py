"""Drivers' system threads: PsCreateSystemThread and thread exit."""

from __future__ import annotations

from machine.ke.native import Call, routine
from machine.ke.threads import TERMINATED
from machine.ke.wait import signal_waiters
from machine.ob.object import insert_handle
from machine.types.view import Struct

STATUS_SUCCESS = 0


@routine("PsCreateSystemThread", frame=0x78, size=0x300)
def PsCreateSystemThread(m, proc, a):
    """(ThreadHandle*, DesiredAccess, ObjectAttributes, ProcessHandle, ClientId*,
    StartRoutine, StartContext): a new thread of the System process (a kernel handle)."""
    from machine.ps.create import create_thread

    system = next(p for p in m.processes if p.pid == 4)
    thread = create_thread(m, system, m.cids.take(), "nt!KiStartSystemThread", system=True,
                           routine=a[5], ready=False)
    thread.start_context = a[6]
    table = Struct(m.kspace, "_EPROCESS", system.eprocess).get("ObjectTable")
    handle = insert_handle(m, table, thread.ethread, access=a[1] & 0xFFFFFFFF)
    proc.cpu.mem.write_u64(a[0], handle | 0xFFFFFFFF80000000)  # a kernel handle
    if a[4]:
        proc.cpu.mem.write_u64(a[4], system.pid)
        proc.cpu.mem.write_u64(a[4] + 8, thread.tid)
    m.make_ready(thread)
    return STATUS_SUCCESS


def exit_thread(m, thread, status: int) -> None:
    """PspExitThread's bookkeeping: terminated, signaled, no longer counted."""
    et = Struct(m.kspace, "_ETHREAD", thread.ethread)
    et.set("ExitStatus", status)
    et.set("Terminated", 1)
    et.set("ExitTime", m.system_time())
    et.set("Tcb.State", TERMINATED)
    et.set("Tcb.Header.SignalState", 1)
    signal_waiters(m, thread.ethread)
    ep = Struct(m.kspace, "_EPROCESS", thread.process.eprocess)
    ep.set("ActiveThreads", ep.get("ActiveThreads") - 1)


@routine("PsTerminateSystemThread", frame=0x38, size=0x100)
def PsTerminateSystemThread(m, proc, a):
    """(ExitStatus): the current system thread ends; it never runs again."""
    thread = proc.current
    exit_thread(m, thread, a[0] & 0xFFFFFFFF)
    new = m.next_ready(proc) or proc.idle
    yield Call(m.sym("KiSwapContext"), (thread.ethread, new.ethread), ret=0xA1)
