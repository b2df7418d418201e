"""x64 stack unwinding as kd does it: from a context (rip, rsp), each function's unwind
data says how much its prologue allocated and pushed, so the return address and the
caller's rsp are found in stack memory; a machine frame (trap frame) gives the
interrupted context instead."""

from __future__ import annotations

from dataclasses import dataclass

from commands.symbols import SymbolEngine
from commands.target import MemoryAccessError, Target

MAX_FRAMES = 256
KERNEL_SPACE = 0xFFFF800000000000


@dataclass
class Frame:
    number: int
    child_sp: int
    ret_addr: int
    ip: int
    args: tuple[int, int, int, int]
    trap_frame: int | None  # set when this frame's function saved a trap frame
    slot: int | None  # where RetAddr was read from (None: from a trap frame or unknown)


def _read_u64(target: Target, address: int) -> int | None:
    try:
        return int.from_bytes(target.read_virtual(address, 8), "little")
    except MemoryAccessError:
        return None


def walk(target: Target, symbols: SymbolEngine, rip: int, rsp: int,
         max_frames: int = MAX_FRAMES) -> list[Frame]:
    frames: list[Frame] = []
    while len(frames) < max_frames:
        args = tuple((_read_u64(target, rsp + 8 * (i + 1)) or 0) for i in range(4))
        found = symbols.function_at(rip) if rip >= KERNEL_SPACE else None
        trap = None
        slot: int | None = None
        sp = rsp
        next_rsp = None
        if found is not None:
            module, func = found
            offset = rip - (module.base + func.rva)
            for op in reversed(func.unwind):
                if op.offset > offset:
                    continue  # the prologue had not executed this yet
                if op.op == "alloc":
                    sp += int(op.arg)
                elif op.op == "push":
                    sp += 8
                elif op.op == "machframe":
                    base = sp + (8 if op.arg else 0)
                    trap = rsp
                    ret = _read_u64(target, base)
                    next_rsp = _read_u64(target, base + 0x18)
                    break
        if next_rsp is None:
            if rip < KERNEL_SPACE:
                ret = 0  # user-mode code: kd does not unwind without user symbols
            else:
                slot = sp
                ret = _read_u64(target, sp)
            next_rsp = sp + 8
        frames.append(Frame(len(frames), rsp, ret or 0, rip, args, trap, slot))  # type: ignore
        if not ret or next_rsp is None or (KERNEL_SPACE <= next_rsp <= rsp):
            break
        rip, rsp = ret, next_rsp
    return frames
