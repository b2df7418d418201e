"""Model-specific registers the kernel programs at boot, readable with rdmsr (and by a
debugger through KSPECIAL_REGISTERS after a crash)."""

from __future__ import annotations

from machine.cpu import CpuException

IA32_EFER = 0xC0000080
IA32_STAR = 0xC0000081
IA32_LSTAR = 0xC0000082
IA32_FMASK = 0xC0000084
EFER_VALUE = 0xD01  # SCE | LME | LMA | NXE
STAR_VALUE = 0x0023001000000000  # user CS base 0x23 (-> 0x33), kernel CS 0x10
FMASK_VALUE = 0x4700  # cleared on syscall: TF, IF, DF, NT


def init_msrs(m, proc) -> None:
    proc.msrs = {IA32_EFER: EFER_VALUE, IA32_STAR: STAR_VALUE,
                 IA32_LSTAR: m.sym("nt!KiSystemCall64"), IA32_FMASK: FMASK_VALUE}

    def read(msr: int) -> int:
        if msr not in proc.msrs:
            raise CpuException(13, 0)  # #GP(0): no such MSR
        return proc.msrs[msr]

    def write(msr: int, value: int) -> None:
        if msr not in proc.msrs:
            raise CpuException(13, 0)
        proc.msrs[msr] = value

    proc.cpu.msr_read = read
    proc.cpu.msr_write = write
