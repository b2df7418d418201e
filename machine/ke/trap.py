"""Exception handlers behind the IDT: the CPU has saved the interrupted context in a
`_KTRAP_FRAME`; the handler resolves the fault or stops the machine with the bugcheck
Windows raises for it."""

from __future__ import annotations

from machine.ke.native import Call, TrapReturn, routine
from machine.ke.processor import DISPATCH_LEVEL
from machine.types.view import Struct

IRQL_NOT_LESS_OR_EQUAL = 0xA
PAGE_FAULT_IN_NONPAGED_AREA = 0x50
DRIVER_IRQL_NOT_LESS_OR_EQUAL = 0xD1
DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION = 0xD6
ATTEMPTED_WRITE_TO_READONLY_MEMORY = 0xBE
DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS = 0xCE
PF_PRESENT, PF_WRITE = 0x1, 0x2  # page-fault error code bits
STATUS_ACCESS_VIOLATION = 0xC0000005
STATUS_BREAKPOINT = 0x80000003
STATUS_ILLEGAL_INSTRUCTION = 0xC000001D
STATUS_INTEGER_DIVIDE_BY_ZERO = 0xC0000094
USER_SPACE_END = 0x0000800000000000


def in_nt(m, address: int) -> bool:
    nt = m.modules[0]
    return nt.base <= address < nt.base + nt.size


@routine("KiPageFault", trap=True, size=0x500, error_code=True)
def KiPageFault(m, proc, frame):
    tf = frame.extra["tf"]
    trap = Struct(proc.cpu.mem, "_KTRAP_FRAME", tf)
    error = trap.get("ErrorCode")
    va, write = proc.cpu.cr2, error & PF_WRITE
    trap.set("FaultAddress", va)
    rip = trap.get("Rip")
    from machine.mm.fault import mm_access_fault

    if mm_access_fault(m, proc, va, bool(write)):
        yield TrapReturn(tf)
        return
    # Imported here: machine.io.unload declares an nt routine, and nt's routines are laid
    # out in the order machine/routines.py imports them.
    from machine.io.unload import unloaded_image_at

    if unloaded_image_at(m, va) is not None:
        # Code or data of a driver that has been unloaded: something it left queued
        # (a timer, a DPC, a callback) still points into it.
        code = DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS
        params = (va, 1 if write else 0, rip, 0)
    elif write and error & PF_PRESENT and va >= USER_SPACE_END:
        # A write to a present kernel page without write access: code or read-only
        # data (a driver patching its own code).  P3 is the trap frame; P4 is reserved.
        code = ATTEMPTED_WRITE_TO_READONLY_MEMORY
        params = (va, proc.cpu.mem.get_pte(va), tf, 0)
    elif m.pool.is_special(va):
        # Driver Verifier's special pool: the access ran past (or before) a block.
        code = DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION
        params = (va, 1 if write else 0, rip, 0)
    elif proc.irql >= DISPATCH_LEVEL and m.pool.is_paged(va):
        # Pageable memory touched where the memory manager may not wait for it.
        code = IRQL_NOT_LESS_OR_EQUAL if in_nt(m, rip) else DRIVER_IRQL_NOT_LESS_OR_EQUAL
        params = (va, proc.irql, 1 if write else 0, rip)
    elif proc.irql >= DISPATCH_LEVEL:
        code = IRQL_NOT_LESS_OR_EQUAL if in_nt(m, rip) else DRIVER_IRQL_NOT_LESS_OR_EQUAL
        params = (va, proc.irql, 1 if write else 0, rip)
    elif va < USER_SPACE_END:
        # A user-range address (NULL included) that is not there: an access violation,
        # for exception dispatch to handle — or not.
        access = 8 if trap.get("ErrorCode") & 0x10 else (1 if write else 0)
        yield Call(m.sym("KiExceptionDispatch"),
                   (STATUS_ACCESS_VIOLATION, 2, access, va, tf), ret=0x3B3)
        return
    else:
        code = PAGE_FAULT_IN_NONPAGED_AREA
        params = (va, 2 if write else 0, rip, 2)
    yield Call(m.sym("KiBugCheckDispatch"), (code, *params), ret=0x474)


def _unhandled(m, proc, frame, status: int, ret: int, params: tuple[int, int] = (0, 0)):
    """Raise the exception a fault stands for, through exception dispatch."""
    tf = frame.extra["tf"]
    yield Call(m.sym("KiExceptionDispatch"), (status, 2 if params != (0, 0) else 0,
                                              *params, tf), ret=ret)


@routine("KiBreakpointTrap", trap=True, size=0x200)
def KiBreakpointTrap(m, proc, frame):
    # Without a debugger attached to take the first chance, an int 3 in kernel mode
    # ends in KMODE_EXCEPTION_NOT_HANDLED with the breakpoint status.
    yield from _unhandled(m, proc, frame, STATUS_BREAKPOINT, 0x13C)


@routine("KiGeneralProtectionFault", trap=True, size=0x200, error_code=True)
def KiGeneralProtectionFault(m, proc, frame):
    # kd reports a #GP as an access violation at an unknown address (all ones)
    yield from _unhandled(m, proc, frame, STATUS_ACCESS_VIOLATION, 0x107,
                          (0, 0xFFFFFFFFFFFFFFFF))


@routine("KiDivideErrorFault", trap=True, size=0x200)
def KiDivideErrorFault(m, proc, frame):
    yield from _unhandled(m, proc, frame, STATUS_INTEGER_DIVIDE_BY_ZERO, 0x104)


@routine("KiInvalidOpcodeFault", trap=True, size=0x200)
def KiInvalidOpcodeFault(m, proc, frame):
    yield from _unhandled(m, proc, frame, STATUS_ILLEGAL_INSTRUCTION, 0x104)
