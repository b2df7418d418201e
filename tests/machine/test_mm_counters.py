"""The memory manager's counters in nt's data (what !vm reads) and each process's commit
counters in its EPROCESS: published at boot and kept current as memory is taken."""

from __future__ import annotations

import pytest

from machine.ex.pool import NONPAGED_POOL, PAGED_POOL
from machine.mm.counters import (
    FIRST_RAM_PFN,
    PHYSICAL_PAGES,
    RAM_END_PFN,
    count_user_pages,
)
from machine.mm.physical import PAGE_SIZE
from machine.types.view import Struct
from tests.machine.probe import boot_probe


@pytest.fixture(scope="module")
def m():
    return boot_probe("mmcount", {})


def nt(m, name: str) -> int:
    return m.kspace.read_u64(m.sym(f"nt!{name}"))


def ram_frames(m) -> int:
    return sum(1 for pfn in m.phys.frames if FIRST_RAM_PFN <= pfn < RAM_END_PFN)


def pool_pages(m, pool: int) -> int:
    alloc = m.pool.regions[pool].alloc
    return (alloc.next - alloc.base) // PAGE_SIZE


def test_physical_and_available_pages_follow_the_frames(m) -> None:
    assert nt(m, "MmNumberOfPhysicalPages") == PHYSICAL_PAGES == 0x80000 - 0x100
    assert nt(m, "MmAvailablePages") == PHYSICAL_PAGES - ram_frames(m)
    before = nt(m, "MmAvailablePages")
    pages = 5
    m.pool.allocate(NONPAGED_POOL, pages * PAGE_SIZE, "VmT1")  # a big block: fresh pages
    assert nt(m, "MmAvailablePages") == PHYSICAL_PAGES - ram_frames(m)
    assert before - nt(m, "MmAvailablePages") >= pages


def test_pool_usage_counts_the_pages_each_pool_holds(m) -> None:
    for pool, name in ((NONPAGED_POOL, "MmAllocatedNonPagedPool"),
                       (PAGED_POOL, "MmPagedPoolCommit")):
        before = nt(m, name)
        assert before == pool_pages(m, pool) > 0
        m.pool.allocate(pool, 3 * PAGE_SIZE, "VmT2")
        assert nt(m, name) == before + 3
        m.pool.allocate(pool, 0x20, "VmT3")  # a small block: at most one fresh page
        assert nt(m, name) in (before + 3, before + 4)
        assert nt(m, name) == pool_pages(m, pool)


def test_freed_pool_pages_stay_with_the_pool(m) -> None:
    block = m.pool.allocate(PAGED_POOL, 2 * PAGE_SIZE, "VmT4")
    held = nt(m, "MmPagedPoolCommit")
    m.pool.free(block)
    assert nt(m, "MmPagedPoolCommit") == held
    m.pool.allocate(PAGED_POOL, 2 * PAGE_SIZE, "VmT5")  # reuses the freed pages
    assert nt(m, "MmPagedPoolCommit") == held


def test_pool_maximums_are_the_pool_ranges(m) -> None:
    for size, (start, end) in (("MmMaximumNonPagedPoolInBytes",
                                ("MmNonPagedPoolStart", "MmNonPagedPoolEnd")),
                               ("MmSizeOfPagedPoolInBytes",
                                ("MmPagedPoolStart", "MmPagedPoolEnd"))):
        assert nt(m, size) == nt(m, end) - nt(m, start)


def test_each_process_is_charged_its_private_user_pages(m) -> None:
    users = [p for p in m.processes if p.space is not m.kspace]
    assert len(users) >= 10
    for p in m.processes:
        e = Struct(m.kspace, "_EPROCESS", p.eprocess)
        expected = 0 if p.space is m.kspace else count_user_pages(p.space)
        assert e.get("CommitCharge") == expected, p.image
        assert e.get("NumberOfPrivatePages") == expected
        assert e.get("CommitChargePeak") >= expected
    assert {count_user_pages(p.space) for p in users} != {0}


def test_a_new_user_page_charges_its_process_once(m) -> None:
    proc = next(p for p in m.processes if p.image == "notepad.exe")
    other = next(p for p in m.processes if p.image == "explorer.exe")
    e = Struct(m.kspace, "_EPROCESS", proc.eprocess)
    o = Struct(m.kspace, "_EPROCESS", other.eprocess)
    before, other_before = e.get("CommitCharge"), o.get("CommitCharge")
    va = 0x0000004000000000
    proc.space.map_new(va, 3 * PAGE_SIZE, user=True)
    assert e.get("CommitCharge") == before + 3 == count_user_pages(proc.space)
    proc.space.map_page(va, m.phys.alloc_frame(), user=True)  # a page mapped again
    assert e.get("CommitCharge") == before + 3
    assert o.get("CommitCharge") == other_before
