"""KeBugCheckEx and the path to it: record the stop code, every processor's context and
freeze the machine, as Windows does before writing a dump."""

from __future__ import annotations

from machine.ke.msr import IA32_FMASK, IA32_LSTAR, IA32_STAR
from machine.ke.native import Call, routine
from machine.ke.processor import HIGH_LEVEL
from machine.types.view import Struct

# _CONTEXT register fields in the CPU's GPR order
CONTEXT_GPRS = ("Rax", "Rcx", "Rdx", "Rbx", "Rsp", "Rbp", "Rsi", "Rdi",
                "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15")
CONTEXT_FULL = 0x10001F  # CONTEXT_AMD64 | CONTROL | INTEGER | SEGMENTS | FLOATING_POINT | DEBUG


def save_processor_state(m, proc) -> None:
    """KiSaveProcessorState: the CPU's registers into its KPRCB.ProcessorState."""
    cpu = proc.cpu
    prcb = Struct(m.kspace, "_KPRCB", proc.prcb)
    ctx = prcb.sub("ProcessorState.ContextFrame", "_CONTEXT")
    ctx.set("ContextFlags", CONTEXT_FULL)
    for name, value in zip(CONTEXT_GPRS, cpu.regs, strict=True):
        ctx.set(name, value)
    ctx.set("Rip", cpu.rip)
    ctx.set("EFlags", cpu.rflags)
    ctx.set("SegCs", 0x10)
    ctx.set("SegSs", 0x18)
    ctx.set("SegDs", 0x2B)
    ctx.set("SegEs", 0x2B)
    ctx.set("SegFs", 0x53)
    ctx.set("SegGs", 0x2B)
    special = prcb.sub("ProcessorState.SpecialRegisters", "_KSPECIAL_REGISTERS")
    special.set("Cr0", cpu.cr0)
    special.set("Cr2", cpu.cr2)
    special.set("Cr3", cpu.cr3)
    special.set("Cr4", cpu.cr4)
    special.set("Cr8", proc.irql)
    special.set("MsrGsBase", proc.pcr)
    special.set("MsrLStar", proc.msrs.get(IA32_LSTAR, 0))
    special.set("MsrStar", proc.msrs.get(IA32_STAR, 0))
    special.set("MsrSyscallMask", proc.msrs.get(IA32_FMASK, 0))
    prcb.set("DebuggerSavedIRQL", proc.irql)


def crash(m, proc, code: int, params: tuple[int, int, int, int]) -> None:
    from machine.machine import BugCheckHalt

    data = m.sym("nt!KiBugCheckData")
    for i, v in enumerate((code, *params)):
        m.kspace.write_u64(data + 8 * i, v)
    for p in m.processors:
        save_processor_state(m, p)
        p.frozen = True
    m.set_irql(proc, HIGH_LEVEL)
    raise BugCheckHalt(code, params, proc.number)


@routine("KeBugCheckEx", frame=0x108, size=0x110)
def KeBugCheckEx(m, proc, a):
    cpu = proc.cpu
    # Stop at the routine's first instruction: the context kd shows for the crashing CPU.
    rsp_entry = cpu.regs[4] + 0x108
    cpu.regs[4] = rsp_entry
    for i in range(4):  # the prologue spills its register arguments to their home slots
        cpu.mem.write_u64(rsp_entry + 8 + 8 * i, a[i])
    crash(m, proc, a[0] & 0xFFFFFFFF, (a[1], a[2], a[3], a[4]))


@routine("KiBugCheckDispatch", frame=0x138, size=0x100)
def KiBugCheckDispatch(m, proc, a):
    yield Call(m.sym("KeBugCheckEx"), (a[0], a[1], a[2], a[3], a[4]), ret=0x69)
