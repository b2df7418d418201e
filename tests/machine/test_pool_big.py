"""Big pool blocks (whole pages) are found through nt!PoolBigPageTable in memory: an
entry per block with its address, tag, size and pool type, marked free (Va | 1) when
the block is freed; a second free is found there too."""

from __future__ import annotations

from functools import partial

import pytest

from tests.machine import pool_code
from tests.machine.pool_code import wait_go
from tests.machine.pool_views import big_entry, tag
from tests.machine.probe import boot_probe, start_system_thread

TAG = tag("BigP")
alloc = partial(pool_code.alloc, tag=TAG)
free = partial(pool_code.free, tag=TAG)


def big_routine(pool: int, frees: int) -> str:
    """Allocate 0x2345 bytes, wait for Go, then free the block `frees` times."""
    return ("    sub     rsp, 28h\n" + alloc("2345h", "BlockA", pool=pool) + wait_go("b_wait")
            + free("BlockA") * frees + "b_park:\n    jmp     b_park\n")


GLOBALS = {"BlockA": 8, "Go": 8}


def machine(pool: int, frees: int):
    m = boot_probe("pooler", {"Big": big_routine(pool, frees)}, GLOBALS, cpus=1)
    start_system_thread(m, 0x8000, m.sym("pooler!Big"))
    m.run(20_000)
    return m, m.kspace.read_u64(m.sym("pooler!BlockA"))


@pytest.mark.parametrize("pool", [0, 1])
def test_a_big_block_has_an_entry_in_the_big_page_table_until_it_is_freed(pool):
    m, block = machine(pool, 1)
    assert block & 0xFFF == 0 and m.pool.is_paged(block) == bool(pool)
    e = big_entry(m, block)
    assert e is not None
    # NumberOfBytes is the size asked for
    assert (e.get("Key"), e.get("NumberOfBytes"), e.get("PoolType")) == (TAG, 0x2345, pool)
    m.kspace.write_u64(m.sym("pooler!Go"), 1)
    m.run(20_000)
    assert m.bugcheck is None
    assert big_entry(m, block) is None
    freed = big_entry(m, block | 1)
    assert freed is not None and freed.get("Key") == TAG


def test_freeing_a_big_block_twice_is_bad_pool_caller_7():
    m, block = machine(0, 2)
    m.kspace.write_u64(m.sym("pooler!Go"), 1)
    assert m.run(20_000).reason == "bugcheck"
    assert m.bugcheck.code == 0xC2
    assert m.bugcheck.params == (7, 0, 0, block)
    assert big_entry(m, block | 1) is not None and big_entry(m, block) is None


FREE_MIDDLE = ("    sub     rsp, 28h\n" + alloc("2345h", "BlockA") + """
    lea     rcx, [rax+1000h]                ; the block's second page
    xor     edx, edx
    call    nt!ExFreePoolWithTag
m_park:
    jmp     m_park
""")


def test_freeing_a_page_the_table_does_not_know_is_bad_pool_header_22():
    m = boot_probe("pooler", {"Middle": FREE_MIDDLE}, GLOBALS, cpus=1)
    start_system_thread(m, 0x8000, m.sym("pooler!Middle"))
    assert m.run(20_000).reason == "bugcheck"
    block = m.kspace.read_u64(m.sym("pooler!BlockA"))
    assert m.bugcheck.code == 0x19
    assert m.bugcheck.params == (0x22, block + 0x1000, 0, 0)
    assert big_entry(m, block) is not None  # the real block is untouched
