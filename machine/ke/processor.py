"""Per-processor state: the CPU, its KPCR/KPRCB in memory, IRQL and pending interrupts."""

from __future__ import annotations

from dataclasses import dataclass, field

from machine.ke.threads import ThreadRec

PASSIVE_LEVEL, APC_LEVEL, DISPATCH_LEVEL = 0, 1, 2
SYNCH_LEVEL, CLOCK_LEVEL, IPI_LEVEL, HIGH_LEVEL = 12, 13, 14, 15

# Interrupt vectors (idt-x64 facts): software DPC/dispatch interrupt and the clock.
DPC_VECTOR = 0x2F
CLOCK_VECTOR = 0xD1


@dataclass
class Processor:
    number: int
    cpu: object  # machine.cpu.Cpu
    pcr: int
    prcb: int
    irql: int = PASSIVE_LEVEL
    current: ThreadRec | None = None
    idle: ThreadRec | None = None
    pending: set[int] = field(default_factory=set)  # pending interrupt vectors
    quantum_end: bool = False
    preempt: bool = False  # a higher-priority thread became ready for this processor
    frozen: bool = False
    idt: int = 0  # KPCR.IdtBase
    double_fault_stack: int = 0  # top of the IST stack the double-fault gate uses
    clock_missed: int = 0  # clock ticks requested while one was still pending
    msrs: dict[int, int] = field(default_factory=dict)  # model-specific registers

    def pending_above_irql(self) -> int | None:
        """The highest pending vector whose IRQL (vector / 16) is above the current one."""
        best = None
        for v in self.pending:
            if (v >> 4) > self.irql and (best is None or v > best):
                best = v
        return best
