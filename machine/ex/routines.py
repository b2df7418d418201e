"""Executive services drivers call: pool allocation and the system worker threads."""

from __future__ import annotations

from machine.ex.pool import NONPAGED_POOL, PAGED_POOL, POOL_HEADER_SIZE
from machine.ke.native import Call, routine
from machine.types.view import Struct

POOL_FLAG_NON_PAGED = 0x40
POOL_FLAG_PAGED = 0x100


def tag_text(tag: int) -> str:
    return (tag & 0xFFFFFFFF).to_bytes(4, "little").decode("latin-1")


@routine("ExAllocatePoolWithTag", frame=0x48, size=0x200)
def ExAllocatePoolWithTag(m, proc, a):
    return m.pool.allocate(PAGED_POOL if a[0] & 1 else NONPAGED_POOL, a[1], tag_text(a[2]))


@routine("ExAllocatePool2", frame=0x48, size=0x200)
def ExAllocatePool2(m, proc, a):
    pool = PAGED_POOL if a[0] & POOL_FLAG_PAGED else NONPAGED_POOL
    return m.pool.allocate(pool, a[1], tag_text(a[2]))


@routine("ExFreePoolWithTag", frame=0x48, size=0x200)
def ExFreePoolWithTag(m, proc, a):
    if a[0] in m.pool.big:
        return 0
    header = Struct(proc.cpu.mem, "_POOL_HEADER", a[0] - POOL_HEADER_SIZE)
    header.set("PoolType", 0)  # free
    return 0


@routine("ExpWorkerThread", frame=0x88, size=0x300)
def ExpWorkerThread(m, proc, a):
    """A system worker: run queued work (driver loads), then wait for more."""
    thread = proc.current
    while m.pending_driver_loads:
        thread.work_item = m.pending_driver_loads.pop(0)
        yield Call(m.sym("IopLoadDriver"), (), ret=0x135)
    event = thread.start_context
    while True:
        yield Call(m.sym("KeWaitForSingleObject"), (event, 15, 0, 0, 0), ret=0x1DB)
