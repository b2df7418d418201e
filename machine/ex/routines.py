"""Executive services drivers call: pool allocation and the system worker threads."""

from __future__ import annotations

from machine.ex.pool import NONPAGED_POOL, PAGED_POOL, POOL_HEADER_SIZE
from machine.ke.native import Call, routine
from machine.types.view import Struct

BAD_POOL_HEADER = 0x19
BAD_POOL_CALLER = 0xC2
PROTECTED_POOL = 0x80000000
POOL_FLAG_NON_PAGED = 0x40
POOL_FLAG_PAGED = 0x100


def tag_text(tag: int) -> str:
    return (tag & 0xFFFFFFFF).to_bytes(4, "little").decode("latin-1")


@routine("ExAllocatePoolWithTag", frame=0x48, size=0x200)
def ExAllocatePoolWithTag(m, proc, a):
    return allocate(m, PAGED_POOL if a[0] & 1 else NONPAGED_POOL, a[1], tag_text(a[2]),
                    a.caller)


@routine("ExAllocatePool2", frame=0x48, size=0x200)
def ExAllocatePool2(m, proc, a):
    pool = PAGED_POOL if a[0] & POOL_FLAG_PAGED else NONPAGED_POOL
    return allocate(m, pool, a[1], tag_text(a[2]), a.caller)


def allocate(m, pool: int, size: int, tag: str, caller: int) -> int:
    """Special pool for drivers under Driver Verifier, the ordinary pool otherwise."""
    image = m.module_of(caller)
    if image is not None and image.name in m.verified:
        return m.pool.allocate_special(pool, size, tag)
    return m.pool.allocate(pool, size, tag)


@routine("ExFreePoolWithTag", frame=0x48, size=0x200)
def ExFreePoolWithTag(m, proc, a):
    """(P, Tag): free a block, checking it the way the pool does before it trusts it."""
    address, tag = a[0], a[1] & 0xFFFFFFFF
    violation = check_free(m, proc.cpu.mem, address, tag)
    if violation is not None:
        code, params = violation
        yield Call(m.sym("KeBugCheckEx"), (code, *params), ret=0x1A0)
    if address in m.pool.big:
        m.pool.big_freed.add(address)
        return 0
    Struct(proc.cpu.mem, "_POOL_HEADER", address - POOL_HEADER_SIZE).set("PoolType", 0)
    return 0


@routine("ExFreePool", frame=0x28, size=0x40)
def ExFreePool(m, proc, a):
    status = yield Call(m.sym("ExFreePoolWithTag"), (a[0], 0), ret=0x19)
    return status


def check_free(m, space, address: int, tag: int) -> tuple[int, tuple] | None:
    """The bugcheck a free of `address` with `tag` (0: any) raises, or None."""
    if m.pool.is_special(address):
        return None  # special pool blocks are checked by their guard pages
    if address in m.pool.big:
        if address in m.pool.big_freed:
            return BAD_POOL_CALLER, (7, 0, 0, address)
        return None
    header = Struct(space, "_POOL_HEADER", address - POOL_HEADER_SIZE)
    contents = space.read_int(header.address, 4)
    if header.get("PoolType") == 0:
        return BAD_POOL_CALLER, (7, 0, contents, address)  # already freed
    own = header.get("PoolTag") & ~PROTECTED_POOL
    if tag and own != tag & ~PROTECTED_POOL:
        return BAD_POOL_CALLER, (0xA, address, own, tag)
    # The block after this one must agree about where this one ends.
    units = header.get("BlockSize")
    following = header.address + units * 0x10
    if following & 0xFFF and m.pool.carved_until(following):
        nxt = Struct(space, "_POOL_HEADER", following)
        if nxt.get("PreviousSize") != units:
            return BAD_POOL_HEADER, (0x20, header.address, following, 0)
    return None
