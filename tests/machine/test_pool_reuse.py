"""Freed pool blocks go on the free list of their size, in memory, merged with free
neighbours, and are handed out again; ExAllocatePool2 zeroes what it hands out."""

from __future__ import annotations

from functools import partial

import pytest

from machine.kd.snapshot import memory_digest
from tests.machine import pool_code
from tests.machine.pool_code import wait_go
from tests.machine.pool_views import free_list, header, tag
from tests.machine.probe import boot_probe, start_system_thread

TAG = tag("Reus")
alloc = partial(pool_code.alloc, tag=TAG)
free = partial(pool_code.free, tag=TAG)


def reuse_routine(allocator: str, first_arg: int) -> str:
    """Allocate A, fill it with 'Z', free it; then allocate [Size] bytes again."""
    return ("    sub     rsp, 28h\n" + alloc("40h", "BlockA") + """
    mov     rdi, qword ptr [BlockA]
    mov     eax, 5Ah
    mov     ecx, 40h
    rep     stosb
""" + free("BlockA") + wait_go("r_wait") + f"""
    mov     r8d, {TAG:#x}
    mov     rdx, qword ptr [Size]
    mov     rcx, {first_arg:#x}
    call    nt!{allocator}
    mov     qword ptr [BlockB], rax
r_park:
    jmp     r_park
""")


GLOBALS = {"BlockA": 8, "BlockB": 8, "BlockC": 8, "BlockD": 8, "Size": 8, "Go": 8}
POOL_FLAG_UNINITIALIZED, POOL_FLAG_NON_PAGED = 0x2, 0x40


def run_reuse(allocator: str, first_arg: int):
    m = boot_probe("pooler", {"Reuse": reuse_routine(allocator, first_arg)}, GLOBALS, cpus=1)
    start_system_thread(m, 0x8000, m.sym("pooler!Reuse"))
    m.run(20_000)
    a = m.kspace.read_u64(m.sym("pooler!BlockA"))
    h = header(m, a)
    units = h.get("BlockSize")  # A, with any free block after it merged in
    assert h.get("PoolType") == 0 and units >= 5
    assert free_list(m, units)[0] == a  # freed last: first on its list
    # Ask for exactly that block's size: its list is the one that serves it.
    m.kspace.write_u64(m.sym("pooler!Size"), units * 0x10 - 0x10)
    m.kspace.write_u64(m.sym("pooler!Go"), 1)
    m.run(20_000)
    assert m.bugcheck is None
    return m, a, units


def test_a_freed_block_is_on_its_free_list_and_is_handed_out_again():
    m, a, units = run_reuse("ExAllocatePoolWithTag", 0)
    b = m.kspace.read_u64(m.sym("pooler!BlockB"))
    assert b == a
    h = header(m, b)
    assert (h.get("PoolType"), h.get("BlockSize"), h.get("PoolTag")) == (1, units, TAG)
    assert a not in free_list(m, units)
    # ExAllocatePoolWithTag does not clear a reused block: past the old list links,
    # the 'Z's the first owner wrote are still there.
    assert m.kspace.read(b + 0x10, 0x30) == b"Z" * 0x30


@pytest.mark.parametrize("flags, cleared", [(POOL_FLAG_NON_PAGED, True),
                                            (POOL_FLAG_NON_PAGED | POOL_FLAG_UNINITIALIZED,
                                             False)])
def test_exallocatepool2_zeroes_a_reused_block_unless_told_not_to(flags, cleared):
    m, a, units = run_reuse("ExAllocatePool2", flags)
    b = m.kspace.read_u64(m.sym("pooler!BlockB"))
    assert b == a and header(m, b).get("PoolType") == 1
    body = m.kspace.read(b, units * 0x10 - 0x10)
    assert (body == bytes(len(body))) is cleared
    if not cleared:
        assert body[0x10:0x40] == b"Z" * 0x30


COALESCE = ("    sub     rsp, 28h\n" + alloc("40h", "BlockA") + alloc("40h", "BlockB")
            + alloc("40h", "BlockC") + alloc("40h", "BlockD") + free("BlockA")
            + free("BlockC") + wait_go("c_wait") + free("BlockB") + """
c_park:
    jmp     c_park
""")


def test_freeing_the_block_between_two_free_ones_merges_all_three():
    m = boot_probe("pooler", {"Coalesce": COALESCE}, GLOBALS, cpus=1)
    start_system_thread(m, 0x8000, m.sym("pooler!Coalesce"))
    m.run(20_000)
    a, b, c, d = (m.kspace.read_u64(m.sym(f"pooler!Block{x}")) for x in "ABCD")
    assert (b, c, d) == (a + 0x50, a + 0xA0, a + 0xF0)  # carved one after the other
    before = header(m, a).get("PreviousSize")
    assert before == 0 or header(m, a - 0x10 * before).get("PoolType") != 0
    # A and C are free on their own: B and D, in use, keep them apart.
    for block in (a, c):
        assert header(m, block).get("PoolType") == 0 and header(m, block).get("BlockSize") == 5
    assert {a, c} <= set(free_list(m, 5))
    assert header(m, b).get("PoolType") == 1 and header(m, d).get("PreviousSize") == 5
    m.kspace.write_u64(m.sym("pooler!Go"), 1)
    m.run(20_000)
    assert m.bugcheck is None
    # Freeing B joins A, B and C into one free block of 15 units at A.
    merged = header(m, a)
    assert (merged.get("PoolType"), merged.get("BlockSize")) == (0, 15)
    assert header(m, d).get("PreviousSize") == 15 and header(m, d).get("PoolType") == 1
    assert a in free_list(m, 15)
    assert not {a, b, c} & set(free_list(m, 5))


CHURN = """
    sub     rsp, 28h
    xor     ebx, ebx
churn_top:
    mov     r8d, 6E727543h                  ; 'Curn'
    lea     edx, [rbx*8+10h]
    imul    edx, edx, 7
    mov     ecx, ebx
    and     ecx, 1                          ; alternate nonpaged and paged
    call    nt!ExAllocatePoolWithTag
    test    bl, 3
    jz      churn_keep
    mov     rcx, rax
    xor     edx, edx
    call    nt!ExFreePool
churn_keep:
    inc     ebx
    cmp     ebx, 60
    jb      churn_top
    mov     qword ptr [Go], 1               ; done
churn_park:
    jmp     churn_park
"""


def churned(seed: int) -> str:
    m = boot_probe("pooler", {"Churn": CHURN}, GLOBALS, cpus=2, seed=seed)
    start_system_thread(m, 0x8000, m.sym("pooler!Churn"))
    m.run(6_000)
    assert m.bugcheck is None and m.kspace.read_u64(m.sym("pooler!Go")) == 1
    return memory_digest(m)


def test_the_same_seed_gives_the_same_memory_after_pool_churn():
    assert churned(3) == churned(3)
