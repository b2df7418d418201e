"""x64 instruction interpreter.

Instructions are decoded with iced-x86 and compiled into Python closures that are cached
per (virtual address, physical address) and shared by all CPUs of a machine
(:class:`DecodeCache`).  :class:`Cpu` executes them against an address space from
:mod:`machine.mm.paging`, in 64-bit mode at CPL 0.

Semantics worth knowing:

* Faults (#DE #UD #GP #PF) are precise: nothing architectural changes and
  ``CpuException.rip`` is the faulting instruction.  Rep string instructions are
  interruptible as on hardware: iterations completed before a fault stay done.
* ``int3`` / ``int n`` complete and raise with ``rip`` = the next instruction.
* ``hlt`` completes and raises :class:`Halt` (a :class:`CpuException`, vector -1, ``rip``
  after the ``hlt``).
* ``mov cr8, reg`` advances rip and then calls ``cpu.cr8_write(value)`` (values > 15:
  #GP); ``mov reg, cr8`` calls ``cpu.cr8_read()``.  ``mov cr3, reg`` sets cr3, flushes the
  CPU's translation caches and calls the optional ``cpu.cr3_write(value)``.
* ``rdmsr``/``wrmsr`` handle IA32_FS_BASE, IA32_GS_BASE and IA32_KERNEL_GS_BASE
  themselves and hand every other MSR to the optional ``msr_read(msr)`` /
  ``msr_write(msr, value)`` hooks (#GP(0) without a hook).
* Non-canonical data addresses raise #GP(0) (also for stack accesses, where hardware
  would raise #SS); indirect branches to a non-canonical target raise #GP on the branch.
* ``rdtsc`` returns ``instructions_retired``.
* Debug registers (``cpu.dr``, loaded with ``set_debug_registers``): an enabled execute
  slot raises :class:`DebugException` (#DB) before the instruction unless RFLAGS.RF is
  set; write and read/write slots raise it after the accessing instruction completes, with
  DR6's B bits set.  Nothing is checked (and nothing costs) while no slot is enabled.

Supported: mov (all forms incl. moffs, imm64, control registers), movzx, movsx, movsxd,
lea, xchg, add, adc, sub, sbb, and, or, xor, cmp, test, inc, dec, neg, not, imul (1/2/3
operands), mul, div, idiv, shl/sal, shr, sar, rol, ror, rcl, rcr, bt/bts/btr/btc, bsf, bsr,
bswap, push/pop (r, imm, r/m), pushfq/popfq, call/jmp (rel, r/m), ret [imm16], iretq,
jcc, setcc, cmovcc, loop/loope/loopne/jrcxz/jecxz, leave, nop (all forms), pause, fences,
prefetch, int3, int n, ud2, hlt, cli/sti/cld/std/clc/stc/cmc, lahf/sahf, cbw/cwde/cdqe/
cwd/cdq/cqo, xadd, cmpxchg, cmpxchg16b, movs/stos/lods/cmps/scas (all sizes, rep/repe/
repne), rdmsr/wrmsr, swapgs, rdtsc, invlpg, with lock prefixes where the ISA allows them.
Anything else (SSE/AVX, x87, segment-register moves, syscall, cpuid, ...) raises #UD.
"""

from machine.cpu.compiler import REG64
from machine.cpu.core import Cpu, DecodeCache
from machine.cpu.errors import CpuException, DebugException, Halt

__all__ = ["REG64", "Cpu", "CpuException", "DebugException", "DecodeCache", "Halt"]
