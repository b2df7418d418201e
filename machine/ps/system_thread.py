"""Drivers' system threads: PsCreateSystemThread (PsTerminateSystemThread is with the
rest of thread exit, in machine.ps.exit)."""

from __future__ import annotations

from machine.ke.native import routine
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
