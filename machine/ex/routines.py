"""Executive services drivers call: pool allocation and free.

The nt routines run the allocator and, when one of its checks fails, call KeBugCheckEx
from the routine, so the crash stack runs through the pool routine that found it.
"""

from __future__ import annotations

from machine.ex.pool import NONPAGED_POOL, PAGED_POOL
from machine.ex.poolcheck import PoolCorruption, bad_caller
from machine.ke.bugcheck import crash
from machine.ke.native import Call, routine
from machine.ke.processor import APC_LEVEL, DISPATCH_LEVEL

POOL_FLAG_UNINITIALIZED = 0x2
POOL_FLAG_NON_PAGED = 0x40
POOL_FLAG_NON_PAGED_EXECUTE = 0x80
POOL_FLAG_PAGED = 0x100
BUG_CHECK_RET = 0x1A0  # where the pool routines call KeBugCheckEx
# BAD_POOL_CALLER subcodes the routines raise themselves: (IRQL, pool type, size/address)
ALLOCATE_AT_BAD_IRQL = 0x8
FREE_AT_BAD_IRQL = 0x9


@routine("ExAllocatePoolWithTag", frame=0x48, size=0x200)
def ExAllocatePoolWithTag(m, proc, a):
    """(PoolType, NumberOfBytes, Tag): a reused block keeps what it held."""
    pool = PAGED_POOL if a[0] & 1 else NONPAGED_POOL
    block = yield from allocate(m, proc, pool, a[1], a[2], a.caller, zero=False)
    return block


@routine("ExAllocatePool2", frame=0x48, size=0x200)
def ExAllocatePool2(m, proc, a):
    """(Flags, NumberOfBytes, Tag): zeroed unless POOL_FLAG_UNINITIALIZED."""
    pool = PAGED_POOL if a[0] & POOL_FLAG_PAGED else NONPAGED_POOL
    block = yield from allocate(m, proc, pool, a[1], a[2], a.caller,
                                zero=not a[0] & POOL_FLAG_UNINITIALIZED)
    return block


def highest_irql(paged: bool) -> int:
    """Paged pool may need a page-in, which needs APC_LEVEL or below; nonpaged pool is
    taken under a spin lock, DISPATCH_LEVEL or below."""
    return APC_LEVEL if paged else DISPATCH_LEVEL


def allocate(m, proc, pool: int, size: int, tag: int, caller: int, zero: bool):
    """Special pool for drivers under Driver Verifier, the ordinary pool otherwise."""
    image = m.module_of(caller)
    try:
        if proc.irql > highest_irql(pool == PAGED_POOL):
            raise bad_caller(ALLOCATE_AT_BAD_IRQL, proc.irql, pool, size)
        if image is not None and m.verifier.verifies(image):
            return m.verifier.allocate(m, image, pool, size, tag, caller, zero)
        return m.pool.allocate_block(pool, size, tag, zero)
    except PoolCorruption as bad:
        yield Call(m.sym("KeBugCheckEx"), (bad.code, *bad.params), ret=BUG_CHECK_RET)
    return 0


@routine("ExFreePoolWithTag", frame=0x48, size=0x200)
def ExFreePoolWithTag(m, proc, a):
    """(P, Tag): free a block, checking it the way the pool does before it trusts it."""
    try:
        paged = m.pool.is_paged(a[0])
        if proc.irql > highest_irql(paged):
            raise bad_caller(FREE_AT_BAD_IRQL, proc.irql, int(paged), a[0])
        m.pool.free_block(a[0], a[1] & 0xFFFFFFFF)
        m.verifier.freed(m, a[0])  # a verified driver's block: its counters
    except PoolCorruption as bad:
        yield Call(m.sym("KeBugCheckEx"), (bad.code, *bad.params), ret=BUG_CHECK_RET)
    return 0


@routine("ExFreePool", frame=0x28, size=0x40)
def ExFreePool(m, proc, a):
    status = yield Call(m.sym("ExFreePoolWithTag"), (a[0], 0), ret=0x19)
    return status


def bug_check_running(m, bad: PoolCorruption) -> None:
    """Kernel code that called the pool directly (to allocate an IRP, an object) met
    corruption: its processor stops with the pool's bug check.  Outside any processor's
    step (while the machine is built) the corruption is an error of the simulator."""
    proc = m.stepping
    if proc is not None:
        crash(m, proc, bad.code, bad.params)
