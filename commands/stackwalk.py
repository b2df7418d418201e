"""x64 stack unwinding as kd does it: from a context (rip, rsp), each function's unwind
data says how much its prologue allocated and pushed, so the return address and the
caller's rsp are found in stack memory; a machine frame (trap frame) gives the
interrupted context instead.

Each frame also carries the register context the unwinder recovered for it (what
`.frame /r` shows): frame 0 has the starting context; a caller's frame has rip and rsp
from the unwind, the nonvolatile registers its callee's prologue pushed (read back from
their stack slots), and every other register as in the callee's frame, since nothing
records what the caller had in them."""

from __future__ import annotations

from dataclasses import dataclass, field

from commands.symbols import SymbolEngine
from commands.target import MemoryAccessError, Target

MAX_FRAMES = 256
KERNEL_SPACE = 0xFFFF800000000000
# What a trap frame restores besides rip/rsp: the machine frame's flags and selectors,
# and the registers Windows' trap handlers describe with save-nonvolatile unwind codes
# (rbp, rbx, rdi, rsi live in _KTRAP_FRAME).
TRAP_NONVOLATILE = {"rbp": "Rbp", "rbx": "Rbx", "rdi": "Rdi", "rsi": "Rsi", "efl": "EFlags",
                    "cs": "SegCs", "ss": "SegSs"}


@dataclass
class Frame:
    number: int
    child_sp: int
    ret_addr: int
    ip: int
    args: tuple[int, int, int, int]
    trap_frame: int | None  # set when this frame's function saved a trap frame
    slot: int | None  # where RetAddr was read from (None: from a trap frame or unknown)
    regs: dict[str, int] = field(default_factory=dict)  # the frame's recovered context


def _read_u64(target: Target, address: int) -> int | None:
    try:
        return int.from_bytes(target.read_virtual(address, 8), "little")
    except MemoryAccessError:
        return None


def _trap_nonvolatiles(target: Target, trap: int,
                       offsets: dict[str, tuple[int, int]]) -> dict[str, int]:
    out = {}
    for reg, fld in TRAP_NONVOLATILE.items():
        if fld in offsets:
            off, size = offsets[fld]
            try:
                out[reg] = int.from_bytes(target.read_virtual(trap + off, size), "little")
            except MemoryAccessError:
                continue
    return out


def walk(target: Target, symbols: SymbolEngine, rip: int, rsp: int,
         max_frames: int = MAX_FRAMES, regs: dict[str, int] | None = None) -> list[Frame]:
    """The frames from (rip, rsp); `regs` is the full starting context, if known."""
    frames: list[Frame] = []
    context = dict(regs or {})
    context.update(rip=rip, rsp=rsp)
    trap_offsets = _trap_offsets(target)
    while len(frames) < max_frames:
        args = tuple((_read_u64(target, rsp + 8 * (i + 1)) or 0) for i in range(4))
        found = symbols.function_at(rip) if rip >= KERNEL_SPACE else None
        trap = None
        slot: int | None = None
        sp = rsp
        next_rsp = None
        restored: dict[str, int] = {}
        if found is not None:
            module, func = found
            offset = rip - (module.base + func.rva)
            for op in reversed(func.unwind):
                if op.offset > offset:
                    continue  # the prologue had not executed this yet
                if op.op == "alloc":
                    sp += int(op.arg)
                elif op.op == "push":
                    saved = _read_u64(target, sp)
                    if saved is not None:
                        restored[str(op.arg).lower()] = saved
                    sp += 8
                elif op.op == "machframe":
                    base = sp + (8 if op.arg else 0)
                    trap = rsp
                    ret = _read_u64(target, base)
                    next_rsp = _read_u64(target, base + 0x18)
                    restored.update(_trap_nonvolatiles(target, trap, trap_offsets))
                    break
        if next_rsp is None:
            if rip < KERNEL_SPACE:
                ret = 0  # user-mode code: kd does not unwind without user symbols
            else:
                slot = sp
                ret = _read_u64(target, sp)
            next_rsp = sp + 8
        frames.append(Frame(len(frames), rsp, ret or 0, rip, args, trap, slot,  # type: ignore
                            dict(context)))
        if not ret or next_rsp is None or (KERNEL_SPACE <= next_rsp <= rsp):
            break
        rip, rsp = ret, next_rsp
        context.update(restored)
        context.update(rip=rip, rsp=rsp)
    return frames


def _trap_offsets(target: Target) -> dict[str, tuple[int, int]]:
    """(offset, size) of the _KTRAP_FRAME fields a trap frame restores."""
    out = {}
    for fld in TRAP_NONVOLATILE.values():
        try:
            off, f = target.types.resolve("_KTRAP_FRAME", fld)
        except (KeyError, ValueError, AttributeError):
            continue
        out[fld] = (off, f.size)
    return out
