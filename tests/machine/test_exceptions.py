"""Kernel exceptions nobody handles: the bugcheck depends on where they happen, and the
exception record and context are in memory for the debugger."""

from __future__ import annotations

from machine.types.view import Struct
from tests.machine.probe import boot_probe, create_system_thread_code


def entry(routine: str) -> str:
    """DriverEntry: a System thread runs `routine`, its StartContext the DriverObject."""
    return ("    sub     rsp, 48h\n" + create_system_thread_code(routine, "rcx")
            + "    xor     eax, eax\n    add     rsp, 48h\n    ret\n")


ROUTINES = {
    "NullDeref": """
    push    rbx
    sub     rsp, 20h
    mov     rbx, qword ptr [NullPointer]
    mov     eax, dword ptr [rbx+10h]        ; reads address 0x10
    add     rsp, 20h
    pop     rbx
    ret
""",
    "JustReturn": """
    mov     eax, 1234h
    ret
""",
    "Breakpoint": """
    int     3
    ret
""",
}
GLOBALS = {"ThreadHandle": 8, "NullPointer": 8}


def machine(routine: str):
    return boot_probe("thr", dict(ROUTINES, DriverEntry=entry(routine)), GLOBALS)


def test_a_null_dereference_in_a_driver_system_thread_is_0x7e_with_record_and_context():
    m = machine("NullDeref")
    assert m.bugcheck is not None  # the thread ran during boot
    status, fault, record, context = m.bugcheck.params
    assert m.bugcheck.code == 0x7E and status == 0xC0000005
    assert m.sym("thr!NullDeref") < fault < m.sym("thr!NullDeref") + 0x20
    er = Struct(m.kspace, "_EXCEPTION_RECORD", record)
    assert er.get("ExceptionCode") & 0xFFFFFFFF == 0xC0000005
    assert er.get("ExceptionAddress") == fault
    assert er.get("ExceptionInformation[0]") == 0 and er.get("ExceptionInformation[1]") == 0x10
    ctx = Struct(m.kspace, "_CONTEXT", context)
    assert ctx.get("Rip") == fault and ctx.get("Rbx") == 0


def test_a_system_thread_whose_routine_returns_terminates():
    m = machine("JustReturn")
    assert m.bugcheck is None
    t = next(t for t in m.threads
             if Struct(m.kspace, "_ETHREAD", t.ethread).get("StartAddress") ==
             m.sym("thr!JustReturn"))
    et = Struct(m.kspace, "_ETHREAD", t.ethread)
    assert et.get("Tcb.State") == 4 and et.get("Terminated") == 1  # Terminated
    assert et.get("Tcb.Header.SignalState") == 1
    handle = m.kspace.read_u64(m.sym("thr!ThreadHandle"))
    assert handle & 0xFFFFFFFF80000000 == 0xFFFFFFFF80000000  # a kernel handle


def test_an_int3_with_no_debugger_in_a_system_thread_is_0x7e_with_the_breakpoint_status():
    m = machine("Breakpoint")
    assert m.bugcheck.code == 0x7E and m.bugcheck.params[0] == 0x80000003
