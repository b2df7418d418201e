"""Kernel routines implemented in Python behind real entry points in nt's code.

A native routine is a generator function.  It runs when a CPU's rip reaches its entry
address (after a real `call`, so the return address is on the simulated stack), allocates
its frame on that stack, and may:

- `yield Call(target, args, ret)` to call code at `target` (driver code or another native
  routine): the return address `routine + ret` is pushed on the stack, so the frame
  chain in memory is what `k` will walk; the value sent back is the callee's rax;
- `yield Block()` to give up the CPU (the thread is switched out inside it);
- return a value (rax), after which the routine returns to its caller through the
  return address on the stack.

Each routine declares the shape of its frame so the nt image's unwind data can describe
it, exactly as a compiled routine's prologue would.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

ROUTINE_ALIGN = 0x10


@dataclass(frozen=True)
class Call:
    target: int
    args: tuple[int, ...] = ()
    ret: int = 0  # offset in the calling routine of the instruction after the call


@dataclass(frozen=True)
class Block:
    """Switch this CPU from the current thread to `next_thread`; the current thread
    resumes here (at offset `at`) when it is next switched back in."""

    next_thread: Any
    at: int = 0


@dataclass(frozen=True)
class Pause:
    """Spend one step at offset `at` (a `pause`/`hlt` in an idle or spin loop)."""

    at: int = 0


@dataclass(frozen=True)
class TrapReturn:
    """Return from an interrupt or exception: restore the context saved in a trap frame."""

    trap_frame: int


@dataclass(frozen=True)
class NativeSpec:
    name: str
    module: str
    frame: int  # bytes the prologue allocates (sub rsp, frame)
    size: int  # size of the routine's code
    impl: Callable[..., Any]
    trap: bool = False  # entered by the CPU's exception/interrupt dispatch, frame = trap frame
    labels: tuple[tuple[str, int], ...] = ()  # public labels inside the routine
    error_code: bool = False  # trap handlers: the CPU pushed an error code
    below_trap_frame: int = 0  # trap handlers: bytes allocated under the trap frame


@dataclass
class Args:
    """The x64 calling convention's view of a native routine's arguments."""

    regs: tuple[int, int, int, int]
    stack: Callable[[int], int]  # i (>= 4) -> argument i from the caller's frame
    caller: int = 0  # the return address: where the call came from

    def __getitem__(self, i: int) -> int:
        return self.regs[i] if i < 4 else self.stack(i)


@dataclass
class NativeFrame:
    spec: NativeSpec
    gen: Generator | None
    rsp_entry: int  # rsp at entry: points at the return address
    resume_rip: int = 0
    resume_rsp: int = 0
    extra: dict[str, int] = field(default_factory=dict)


REGISTRY: dict[str, NativeSpec] = {}


def routine(name: str, *, frame: int = 0x28, size: int = 0x80, module: str = "nt",
            trap: bool = False, labels: tuple[tuple[str, int], ...] = (),
            error_code: bool = False,
            below_trap_frame: int = 0) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a native routine.  `frame` is what its prologue allocates; keep it 8 mod 16
    so calls it makes see a 16-byte aligned stack, as the x64 ABI requires."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in REGISTRY:
            raise ValueError(f"native routine {name} declared twice")
        REGISTRY[name] = NativeSpec(name, module, frame, size, fn, trap, labels, error_code,
                                    below_trap_frame)
        return fn

    return register


def prologue_bytes(spec: NativeSpec) -> bytes:
    """The bytes at a native routine's entry: `sub rsp, frame` (what its unwind data says)."""
    if spec.trap or spec.frame == 0:
        return b""
    if spec.frame < 0x80:
        return bytes([0x48, 0x83, 0xEC, spec.frame])
    return bytes([0x48, 0x81, 0xEC]) + spec.frame.to_bytes(4, "little")
