"""Corruption is found later, when the pool next checks what was damaged, and stops the
machine with BAD_POOL_HEADER (0x19) and the subcode and parameters Windows uses; the
crash stack runs through the nt pool routine that found it."""

from __future__ import annotations

from functools import partial

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from machine.ex.poolcheck import PoolCorruption
from machine.machine import BugCheckHalt
from tests.conftest import run
from tests.machine import pool_code
from tests.machine.pool_code import wait_go
from tests.machine.pool_views import free_list, header, tag
from tests.machine.probe import boot_probe, start_system_thread

TAG = tag("Test")
GLOBALS = {"BlockA": 8, "BlockB": 8, "Size": 8, "Go": 8, "Stale": 16}
alloc = partial(pool_code.alloc, tag=TAG)
free = partial(pool_code.free, tag=TAG)


OVERRUN_THEN_FREE = ("    sub     rsp, 28h\n" + alloc("40h", "BlockA") + alloc("40h", "BlockB")
                     + """
    mov     rdi, qword ptr [BlockA]
    mov     eax, 4Fh                ; 'O'
    mov     ecx, 50h                ; 0x10 bytes past the end: over B's pool header
    rep     stosb
""" + free("BlockA") + "o_park:\n    jmp     o_park\n")

# The block after A is the free rest of the block A was cut from; the overrun lands on
# that free block's header, and the allocation that takes the free block finds it.
OVERRUN_THEN_ALLOCATE = ("    sub     rsp, 28h\n" + alloc("40h", "BlockA") + wait_go("a_wait")
                         + """
    mov     rdi, qword ptr [BlockA]
    mov     eax, 4Fh
    mov     ecx, 50h
    rep     stosb
""" + alloc("qword ptr [Size]", "BlockB") + "a_park:\n    jmp     a_park\n")

# A stale pointer to a freed block: the driver links it into its own list after the
# free, so the freed block's list entry now points at the driver's global.
USE_AFTER_FREE = ("    sub     rsp, 28h\n" + alloc("40h", "BlockA") + free("BlockA")
                  + wait_go("u_wait") + """
    mov     rcx, qword ptr [BlockA]
    lea     rax, [Stale]
    mov     qword ptr [rcx], rax            ; Flink of the freed block's list entry
""" + alloc("qword ptr [Size]", "BlockB") + "u_park:\n    jmp     u_park\n")

USER_ADDRESS_FREE = """
    sub     rsp, 28h
    mov     rcx, 10000h
    xor     edx, edx
    call    nt!ExFreePoolWithTag
f_park:
    jmp     f_park
"""


def machine(routine: str, code: str):
    m = boot_probe("pooler", {routine: code}, GLOBALS, cpus=1)
    start_system_thread(m, 0x8000, m.sym(f"pooler!{routine}"))
    return m


def stack_sites(m) -> list[str]:
    session = Session(LiveTarget(m), processor=m.bugcheck.processor)
    return [row.split()[-1] for row in run(session, "k")[1:]]


def test_an_overrun_into_the_next_header_is_found_when_the_block_is_freed():
    m = machine("Overrun", OVERRUN_THEN_FREE)
    assert m.run(20_000).reason == "bugcheck"
    a = m.kspace.read_u64(m.sym("pooler!BlockA"))
    assert m.kspace.read_u64(m.sym("pooler!BlockB")) == a + 0x50
    assert m.bugcheck.code == 0x19
    # 0x20: the entry, the next entry (whose PreviousSize is wrong), the entry's header
    assert m.bugcheck.params == (0x20, a - 0x10, a + 0x40, m.kspace.read_int(a - 0x10, 4))
    assert header(m, a + 0x50).get("PreviousSize") == 0x4F
    sites = stack_sites(m)
    assert sites[0] == "nt!KeBugCheckEx"
    assert sites[1] == "nt!ExFreePoolWithTag+0x1a0"
    assert sites[2].startswith("pooler!Overrun+")


def test_an_overrun_into_a_free_header_is_found_by_the_allocation_that_takes_it():
    m = machine("Overrun", OVERRUN_THEN_ALLOCATE)
    m.run(20_000)
    a = m.kspace.read_u64(m.sym("pooler!BlockA"))
    rest = header(m, a + 0x50)
    units = rest.get("BlockSize")
    assert rest.get("PoolType") == 0 and free_list(m, units)[0] == a + 0x50
    m.kspace.write_u64(m.sym("pooler!Size"), units * 0x10 - 0x10)  # exactly that block
    m.kspace.write_u64(m.sym("pooler!Go"), 1)
    assert m.run(20_000).reason == "bugcheck"
    assert m.bugcheck.code == 0x19
    # 0xD: a freed block's header changed after it was freed
    assert m.bugcheck.params == (0xD, a + 0x40, 0x4F4F4F4F, units)
    assert stack_sites(m)[1] == "nt!ExAllocatePoolWithTag+0x1a0"


def test_a_write_after_free_into_the_free_list_is_found_by_a_later_allocation():
    m = machine("UseAfterFree", USE_AFTER_FREE)
    m.run(20_000)
    a = m.kspace.read_u64(m.sym("pooler!BlockA"))
    units = header(m, a).get("BlockSize")  # A with the free rest after it
    assert header(m, a).get("PoolType") == 0 and free_list(m, units)[0] == a
    m.kspace.write_u64(m.sym("pooler!Size"), units * 0x10 - 0x10)
    m.kspace.write_u64(m.sym("pooler!Go"), 1)
    assert m.run(20_000).reason == "bugcheck"
    stale = m.sym("pooler!Stale")
    assert m.kspace.read_u64(a) == stale  # the list entry as the driver left it
    assert m.bugcheck.code == 0x19
    # 3: the entry, Flink->Blink (the driver's zeroed global), Blink->Flink (intact)
    assert m.bugcheck.params == (3, a, 0, a)
    assert m.kspace.read_u64(m.sym("pooler!BlockB")) == 0  # the allocation never returned
    sites = stack_sites(m)
    assert sites[1] == "nt!ExAllocatePoolWithTag+0x1a0"
    assert sites[2].startswith("pooler!UseAfterFree+")


def test_freeing_a_user_address_is_bad_pool_caller_40():
    m = machine("UserFree", USER_ADDRESS_FREE)
    assert m.run(20_000).reason == "bugcheck"
    assert m.bugcheck.code == 0xC2
    assert m.bugcheck.params == (0x40, 0x10000, 0xFFFF800000000000, 0)


def corrupt_first_free_block(m) -> tuple[int, int]:
    """Overwrite the Flink of the first block on the first non-empty nonpaged list."""
    units = next(u for u in range(2, 256) if free_list(m, u))
    entry = free_list(m, units)[0]
    m.kspace.write_u64(entry, m.sym("pooler!Stale"))
    return units, entry


def test_kernel_code_that_meets_corruption_bug_checks_on_its_processor():
    m = boot_probe("pooler", {}, GLOBALS, cpus=2)
    units, entry = corrupt_first_free_block(m)

    m.stepping = m.processors[1]  # as while processor 1 runs a kernel routine
    with pytest.raises(BugCheckHalt) as halt:
        m.pool.allocate(0, units * 0x10 - 0x10, "Test")
    assert (halt.value.code, halt.value.params, halt.value.processor) == \
        (0x19, (3, entry, 0, entry), 1)
    data = m.sym("nt!KiBugCheckData")
    assert [m.kspace.read_u64(data + 8 * i) for i in range(5)] == [0x19, 3, entry, 0, entry]


def test_outside_any_processor_corruption_is_an_error_of_the_simulator():
    m = boot_probe("pooler", {}, GLOBALS, cpus=1)
    units, entry = corrupt_first_free_block(m)
    with pytest.raises(PoolCorruption):
        m.pool.allocate(0, units * 0x10 - 0x10, "Test")
