"""The machine's bookkeeping for processes and threads (their state lives in memory;
these records hold what the simulator itself needs: suspended native frames, saved
registers, the user-mode program a thread follows)."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from machine.ke.native import NativeFrame

# _KTHREAD_STATE values
INITIALIZED, READY, RUNNING, STANDBY, TERMINATED, WAITING = 0, 1, 2, 3, 4, 5


@dataclass
class ProcessRec:
    eprocess: int
    pid: int
    image: str
    space: Any  # AddressSpace
    threads: list[ThreadRec] = field(default_factory=list)
    peb: int = 0


@dataclass
class ThreadRec:
    ethread: int
    tid: int
    process: ProcessRec
    initial_stack: int
    priority: int = 8
    ideal_processor: int = 0
    idle: bool = False
    # Registers while not on a CPU: 16 GPRs, rip, rflags.
    saved_regs: list[int] = field(default_factory=lambda: [0] * 16)
    saved_rip: int = 0
    saved_rflags: int = 0x202
    native: list[NativeFrame] = field(default_factory=list)
    user_program: Generator | None = None
    user_mode: bool = False
    saved_user_rip: int = 0
    saved_user_rsp: int = 0
    pending_status: int = 0
    started_user: bool = False
    user_start: int = 0  # user-mode address the thread starts at
    syscall: Any = None  # the system call in progress
    start_context: int = 0  # argument of a system thread's start routine
    work_item: Any = None  # what a system worker thread is processing
    ready_on: Any = None  # the processor whose ready queue holds the thread

    @property
    def trap_frame(self) -> int:
        """Where a system call or an interrupt from user mode saves user context."""
        from machine.ke.trapframe import KTRAP_FRAME_SIZE

        return self.initial_stack - KTRAP_FRAME_SIZE
