"""Pool blocks carry real headers; freeing checks them the way the pool does; the pool
is called at the IRQLs it allows; paged pool that was trimmed comes back when touched."""

from __future__ import annotations

from functools import partial

from machine.ex.pool import NONPAGED_POOL, PAGED_POOL, POOL_HEADER_SIZE, tag_value
from machine.types.view import Struct
from tests.machine import pool_code
from tests.machine.probe import boot_probe, start_system_thread

# The tag the pool calls of the routines written with pool_code use
alloc = partial(pool_code.alloc, tag=tag_value("Test"))
free = partial(pool_code.free, tag=tag_value("Test"))

ALLOC_TWO = """
    sub     rsp, 28h
    mov     r8d, 74736554h          ; 'Test'
    mov     edx, 40h
    xor     ecx, ecx                ; NonPagedPool
    call    nt!ExAllocatePoolWithTag
    mov     qword ptr [BlockA], rax
    mov     r8d, 74736554h
    mov     edx, 40h
    xor     ecx, ecx
    call    nt!ExAllocatePoolWithTag
    mov     qword ptr [BlockB], rax
"""
ROUTINES = {
    "DoubleFree": ALLOC_TWO + """
    mov     edx, 74736554h
    mov     rcx, qword ptr [BlockA]
    call    nt!ExFreePoolWithTag
    mov     edx, 74736554h
    mov     rcx, qword ptr [BlockA]
    call    nt!ExFreePoolWithTag
df_park:
    jmp     df_park
""",
    "WrongTag": ALLOC_TWO + """
    mov     edx, 656E6F4Eh          ; 'None'
    mov     rcx, qword ptr [BlockA]
    call    nt!ExFreePoolWithTag
wt_park:
    jmp     wt_park
""",
}
GLOBALS = {"BlockA": 8, "BlockB": 8}


def crash(routine: str):
    m = boot_probe("pooler", ROUTINES, GLOBALS, cpus=1)
    start_system_thread(m, 0x8000, m.sym(f"pooler!{routine}"))
    result = m.run(100_000)
    assert result.reason == "bugcheck"
    return m


def test_blocks_have_pool_headers_with_tag_size_and_type():
    m = boot_probe("pooler", ROUTINES, GLOBALS, cpus=1)
    a = m.pool.allocate(NONPAGED_POOL, 0x40, "Test")
    b = m.pool.allocate(NONPAGED_POOL, 0x40, "Test")
    ha = Struct(m.kspace, "_POOL_HEADER", a - POOL_HEADER_SIZE)
    hb = Struct(m.kspace, "_POOL_HEADER", b - POOL_HEADER_SIZE)
    assert ha.get("PoolTag") == tag_value("Test") == 0x74736554
    assert ha.get("BlockSize") == 5 and ha.get("PoolType") == 1  # 0x50 bytes, in use
    assert b == a + 0x50 and hb.get("PreviousSize") == 5


def test_freeing_a_block_twice_is_bad_pool_caller_7():
    m = crash("DoubleFree")
    assert m.bugcheck.code == 0xC2
    p1, _, _, address = m.bugcheck.params
    assert p1 == 7 and address == m.kspace.read_u64(m.sym("pooler!BlockA"))


def test_freeing_with_another_tag_is_bad_pool_caller_a():
    m = crash("WrongTag")
    assert m.bugcheck.code == 0xC2
    assert m.bugcheck.params[0] == 0xA
    assert m.bugcheck.params[2:] == (0x74736554, 0x656E6F4E)


OVERRUN_TEMPLATE = """
    sub     rsp, 28h
    mov     r8d, 74736554h                  ; 'Test'
    mov     edx, 40h
    xor     ecx, ecx                        ; NonPagedPool
    call    nt!ExAllocatePoolWithTag
    mov     qword ptr [BlockA], rax
    mov     rdi, rax
    mov     eax, 4Fh
    mov     ecx, 50h                        ; 0x10 bytes too many
    rep     stosb
sp_park:
    jmp     sp_park
"""


def test_special_pool_catches_an_overrun_at_the_first_byte_past_the_block():
    m = boot_probe("pooler", {"Overrun": OVERRUN_TEMPLATE}, GLOBALS, cpus=1, verified=True)
    start_system_thread(m, 0x8000, m.sym("pooler!Overrun"))
    assert m.run(100_000).reason == "bugcheck"
    block = m.kspace.read_u64(m.sym("pooler!BlockA"))
    assert m.pool.is_special(block) and (block + 0x40) & 0xFFF == 0  # ends at its page end
    assert m.bugcheck.code == 0xD6
    address, write, rip, _ = m.bugcheck.params
    assert address == block + 0x40 and write == 1
    assert m.sym("pooler!Overrun") < rip < m.sym("pooler!Overrun") + 0x40


PAGED_AT_DISPATCH = ("""
    sub     rsp, 28h
    mov     eax, 2
    mov     cr8, rax                        ; DISPATCH_LEVEL
""" + alloc("40h", pool=PAGED_POOL) + "pd_park:\n    jmp     pd_park\n")


def test_allocating_paged_pool_at_dispatch_level_is_bad_pool_caller_8():
    m = boot_probe("pooler", {"PagedAtDispatch": PAGED_AT_DISPATCH}, GLOBALS, cpus=1)
    start_system_thread(m, 0x8000, m.sym("pooler!PagedAtDispatch"))
    assert m.run(100_000).reason == "bugcheck"
    assert m.bugcheck.code == 0xC2
    assert m.bugcheck.params == (8, 2, 1, 0x40)  # IRQL, pool type, size


TRIMMED = ("    sub     rsp, 28h\n" + alloc("40h", "BlockA", pool=PAGED_POOL) + """
tr_wait:
    cmp     qword ptr [BlockB], 0
    je      tr_wait
""" + free("BlockA") + alloc("40h", "BlockB", pool=PAGED_POOL) + "tr_park:\n    jmp     tr_park\n")


def test_the_pool_brings_trimmed_paged_pool_back_to_free_and_allocate():
    from machine.events import trim_paged_pool
    from machine.mm.paging import PTE_PRESENT

    m = boot_probe("pooler", {"Trimmed": TRIMMED}, GLOBALS, cpus=1)
    start_system_thread(m, 0x8000, m.sym("pooler!Trimmed"))
    m.run(20_000)
    a = m.kspace.read_u64(m.sym("pooler!BlockA"))
    assert m.pool.is_paged(a)
    trim_paged_pool(m)  # every paged-pool page leaves the working set
    assert not m.kspace.get_pte(a) & PTE_PRESENT
    m.kspace.write_u64(m.sym("pooler!BlockB"), 1)
    m.run(20_000)
    assert m.bugcheck is None
    assert m.kspace.get_pte(a) & PTE_PRESENT  # the free faulted it back in
    b = m.kspace.read_u64(m.sym("pooler!BlockB"))
    h = Struct(m.kspace, "_POOL_HEADER", b - POOL_HEADER_SIZE)
    assert b != 1 and h.get("PoolType") == 2 and h.get("PoolTag") == tag_value("Test")
