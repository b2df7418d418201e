"""Exception dispatch in kernel mode: the trap handler's exception becomes an
`_EXCEPTION_RECORD` and a `_CONTEXT` in KiExceptionDispatch's frame, and
KiDispatchException looks for a handler.  Kernel code in kdsim has no exception
handlers yet, so the exception is unhandled and the machine stops with the bugcheck for
where it happened:

- at DISPATCH_LEVEL or above (a DPC, an ISR): KMODE_EXCEPTION_NOT_HANDLED (0x1E);
- in a system thread (not inside a system call): SYSTEM_THREAD_EXCEPTION_NOT_HANDLED
  (0x7E: code, address, exception record, context record);
- during a system call: SYSTEM_SERVICE_EXCEPTION (0x3B: code, address, context record);
- otherwise: KMODE_EXCEPTION_NOT_HANDLED (0x1E: code, address, parameters 0 and 1).
"""

from __future__ import annotations

from machine.ke.bugcheck import CONTEXT_FULL, CONTEXT_GPRS
from machine.ke.native import Call, routine
from machine.ke.processor import DISPATCH_LEVEL
from machine.types.view import Struct

EXCEPTION_RECORD_AT = 0x30  # in KiExceptionDispatch's frame
CONTEXT_AT = 0xD0
KMODE_EXCEPTION_NOT_HANDLED = 0x1E
SYSTEM_SERVICE_EXCEPTION = 0x3B
SYSTEM_THREAD_EXCEPTION_NOT_HANDLED = 0x7E
TRAP_GPRS = {"Rax": "Rax", "Rcx": "Rcx", "Rdx": "Rdx", "Rbx": "Rbx", "Rbp": "Rbp",
             "Rsi": "Rsi", "Rdi": "Rdi", "R8": "R8", "R9": "R9", "R10": "R10", "R11": "R11"}


@routine("KiExceptionDispatch", frame=0x5E8, size=0x300)
def KiExceptionDispatch(m, proc, a):
    """(ExceptionCode, NumberParameters, Parameter0, Parameter1, TrapFrame)"""
    space = proc.cpu.mem
    frame = proc.cpu.regs[4]
    tf = Struct(space, "_KTRAP_FRAME", a[4])
    record = frame + EXCEPTION_RECORD_AT
    er = Struct(space, "_EXCEPTION_RECORD", record)
    space.write(record, bytes(m.catalog.get("_EXCEPTION_RECORD").size))
    er.set("ExceptionCode", a[0] & 0xFFFFFFFF)
    er.set("ExceptionAddress", tf.get("Rip"))
    er.set("NumberParameters", a[1])
    er.set("ExceptionInformation[0]", a[2])
    er.set("ExceptionInformation[1]", a[3])
    context = frame + CONTEXT_AT
    space.write(context, bytes(m.catalog.get("_CONTEXT").size))
    ctx = Struct(space, "_CONTEXT", context)
    ctx.set("ContextFlags", CONTEXT_FULL)
    for field, trap_field in TRAP_GPRS.items():
        ctx.set(field, tf.get(trap_field))
    for i, name in enumerate(CONTEXT_GPRS):  # r12-r15 still hold the faulting code's values
        if name in ("R12", "R13", "R14", "R15"):
            ctx.set(name, proc.cpu.regs[i])
    for field in ("Rip", "Rsp", "EFlags", "SegCs", "SegSs"):
        ctx.set(field, tf.get(field))
    for seg in ("SegDs", "SegEs", "SegGs"):
        ctx.set(seg, 0x2B)
    ctx.set("SegFs", 0x53)
    yield Call(m.sym("KiDispatchException"), (record, 0, a[4], tf.get("SegCs") & 1, 1),
               ret=0x2B2)


@routine("KiDispatchException", frame=0x5A8, size=0x700)
def KiDispatchException(m, proc, a):
    """(ExceptionRecord, ExceptionFrame, TrapFrame, PreviousMode, FirstChance)"""
    space = proc.cpu.mem
    er = Struct(space, "_EXCEPTION_RECORD", a[0])
    code = er.get("ExceptionCode") & 0xFFFFFFFF
    address = er.get("ExceptionAddress")
    context = a[0] - EXCEPTION_RECORD_AT + CONTEXT_AT
    thread = proc.current
    in_service = any(f.spec.name == "KiSystemCall64" for f in thread.native)
    if proc.irql >= DISPATCH_LEVEL:  # e.g. in a DPC: not the thread's own code
        params = (KMODE_EXCEPTION_NOT_HANDLED, code, address,
                  er.get("ExceptionInformation[0]"), er.get("ExceptionInformation[1]"))
    elif in_service:
        params = (SYSTEM_SERVICE_EXCEPTION, code, address, context, 0)
    elif Struct(m.kspace, "_KTHREAD", thread.ethread).get("SystemThread"):
        params = (SYSTEM_THREAD_EXCEPTION_NOT_HANDLED, code, address, a[0], context)
    else:
        params = (KMODE_EXCEPTION_NOT_HANDLED, code, address,
                  er.get("ExceptionInformation[0]"), er.get("ExceptionInformation[1]"))
    yield Call(m.sym("KeBugCheckEx"), params, ret=0x3E6)
