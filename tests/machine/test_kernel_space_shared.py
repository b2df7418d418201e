"""Kernel space is one space for every process: a kernel top-level (PML4) entry made after
a process was created is in that process's page tables too, so kernel memory mapped
later (here, Driver Verifier's special pool) is mapped in every process."""

from __future__ import annotations

from machine.mm.paging import ADDR_MASK, PTE_PRESENT, table_indexes
from machine.types.view import Struct
from tests.machine import pool_code
from tests.machine.pool_views import tag
from tests.machine.probe import boot_probe

TAG = tag("KsSh")
PATTERN = 0x5A5AC3C3DEADBEEF

# DriverEntry (run after boot created the user processes) allocates the driver's first
# block, from special pool since the driver is verified, and fills its first qword.
ENTRY = ("    sub     rsp, 28h\n" + pool_code.alloc("40h", "Block", tag=TAG)
         + f"    mov     rcx, {PATTERN:#x}\n    mov     qword ptr [rax], rcx\n"
         + "    add     rsp, 28h\n    xor     eax, eax\n    ret\n")


def walk(m, directory_table_base: int, va: int) -> int | None:
    """The physical address of va through the page tables at directory_table_base, as
    a debugger's !pte walks them (None when an entry on the way is not present)."""
    table = directory_table_base & ADDR_MASK
    for index in table_indexes(va):
        entry = m.phys.read_u64(table + index * 8)
        if not entry & PTE_PRESENT:
            return None
        table = entry & ADDR_MASK
    return table | (va & 0xFFF)


def test_a_process_created_before_special_pool_existed_maps_a_later_block():
    m = boot_probe("kssh", {"DriverEntry": ENTRY}, {"Block": 8}, verified=True)
    assert m.bugcheck is None
    block = m.kspace.read_u64(m.sym("kssh!Block"))
    start = m.kspace.read_u64(m.sym("nt!MmSpecialPoolStart"))
    end = m.kspace.read_u64(m.sym("nt!MmSpecialPoolEnd"))
    assert start <= block < end
    notepad = next(p for p in m.processes if p.image == "notepad.exe")
    dtb = Struct(m.kspace, "_EPROCESS", notepad.eprocess).get("Pcb.DirectoryTableBase")
    assert dtb != m.kspace.cr3  # a process of its own, created before the driver loaded
    pa = walk(m, dtb, block)
    assert pa is not None and pa == walk(m, m.kspace.cr3, block)
    assert m.phys.read_u64(pa) == PATTERN


def test_kernel_top_level_entries_are_the_same_in_every_process():
    m = boot_probe("kssh", {"DriverEntry": ENTRY}, {"Block": 8}, verified=True)
    kernel_half = m.phys.read(m.kspace.cr3 + 0x800, 0x800)
    for process in m.processes:
        dtb = Struct(m.kspace, "_EPROCESS", process.eprocess).get("Pcb.DirectoryTableBase")
        assert m.phys.read((dtb & ADDR_MASK) + 0x800, 0x800) == kernel_half, process.image
