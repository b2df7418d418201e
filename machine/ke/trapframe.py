"""`_KTRAP_FRAME` in memory: what an exception, interrupt or system call saves.

The hardware part (error code, rip, cs, rflags, rsp, ss) sits at the top of the frame,
where the CPU pushed it; the handler stores the volatile registers (and rbx, rdi, rsi,
rbp) below.  Registers the handler does not save stay zero, which is why kd warns that
"the trap frame does not contain all registers".
"""

from __future__ import annotations

from machine.types.view import Struct

KTRAP_FRAME_SIZE = 0x190
MACHINE_FRAME = 0x160  # offset of ErrorCode: the CPU-pushed part starts here
KERNEL_CS, KERNEL_SS = 0x10, 0x18
USER_CS, USER_SS = 0x33, 0x2B

# GPR indexes in the CPU's register file (x86 encoding order)
RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI = range(8)
R8, R9, R10, R11 = 8, 9, 10, 11

SAVED = (("Rax", RAX), ("Rcx", RCX), ("Rdx", RDX), ("R8", R8), ("R9", R9), ("R10", R10),
         ("R11", R11), ("Rbx", RBX), ("Rdi", RDI), ("Rsi", RSI), ("Rbp", RBP))


def save_context(space, tf: int, regs: list[int], rip: int, rsp: int, rflags: int,
                 cs: int, ss: int, error_code: int, previous_irql: int,
                 previous_mode: int) -> None:
    """A whole trap frame: the machine frame the CPU pushes, and the handler's part."""
    space.write(tf + MACHINE_FRAME, bytes(KTRAP_FRAME_SIZE - MACHINE_FRAME))
    t = Struct(space, "_KTRAP_FRAME", tf)
    t.set("ErrorCode", error_code)
    t.set("Rip", rip)
    t.set("SegCs", cs)
    t.set("EFlags", rflags)
    t.set("Rsp", rsp)
    t.set("SegSs", ss)
    save_software(space, tf, regs, previous_irql, previous_mode)


def save_software(space, tf: int, regs: list[int], previous_irql: int,
                  previous_mode: int) -> None:
    """What a trap handler stores below the machine frame the CPU pushed."""
    space.write(tf, bytes(MACHINE_FRAME))
    t = Struct(space, "_KTRAP_FRAME", tf)
    for name, idx in SAVED:
        t.set(name, regs[idx])
    t.set("PreviousIrql", previous_irql)
    t.set("PreviousMode", previous_mode)
    t.set("SegDs", 0x2B)
    t.set("SegEs", 0x2B)
    t.set("SegFs", 0x53)
    t.set("SegGs", 0x2B)


def restore_context(space, tf: int, regs: list[int]) -> tuple[int, int, int]:
    """Load the saved registers back; returns (rip, rsp, rflags)."""
    t = Struct(space, "_KTRAP_FRAME", tf)
    for name, idx in SAVED:
        regs[idx] = t.get(name)
    return t.get("Rip"), t.get("Rsp"), t.get("EFlags")
