"""Which trap frame on the crashing stack !analyze shows as TRAP_FRAME: the one of the
trap the bug check came from (a page fault that ended in 0xD1 or 0x50, an exception
dispatched to KeBugCheckEx, a double fault, a clock interrupt that found a DPC running too
long).  A trap frame further down, below driver code that then called KeBugCheckEx
itself (0xC2 from ExFreePool) or below the DPC dispatcher (a DPC that bug-checked), or a
system call's frame, is not where the stop came from: kd shows no TRAP_FRAME then.
Also the trap names of UNEXPECTED_KERNEL_MODE_TRAP (0x7F)."""

from __future__ import annotations

from functools import cache
from importlib import resources

from commands.errors import KdError
from commands.stackwalk import Frame
from commands.target import MemoryAccessError

KERNEL_MODULES = ("nt", "hal")
# Routines that run queued work (a DPC) on an interrupt: a stop raised by that work did
# not come from the interrupt, whose frame only shows what the processor was doing.
WORK_DISPATCHERS = ("KiRetireDpcList", "KiExecuteAllDpcs")
USER_MODE = 1  # the low bit of a selector's RPL: 3 for user mode


def stop_trap_frame(s, frames: list[Frame]) -> int | None:
    """The first trap frame on the stack reached through nt/hal code only, when the code
    it interrupted ran in kernel mode (a system call's frame holds user-mode cs)."""
    for f in frames:
        m = s.symbols.module_at(f.ip)
        if m is None or m.name not in KERNEL_MODULES:
            return None  # a driver called KeBugCheckEx (or an nt routine that did)
        parts = s.symbols.split_name(f.ip)
        if parts is not None and parts[1] in WORK_DISPATCHERS:
            return None
        if f.trap_frame is not None:
            try:
                cs = s.reader.field("_KTRAP_FRAME", f.trap_frame, "SegCs")
            except (KdError, MemoryAccessError):
                return None  # an unreadable frame is not shown
            return None if cs & USER_MODE else f.trap_frame
    return None


@cache
def trap_names() -> dict[int, str]:
    """Trap number -> the EXCEPTION_* name kd prints for 0x7F's Arg1."""
    text = (resources.files("commands") / "data" / "unexpected-trap-names.tsv").read_text()
    out = {}
    for line in text.splitlines()[1:]:
        vector, _, name = line.partition("\t")
        if name:
            out[int(vector, 16)] = name
    return out
