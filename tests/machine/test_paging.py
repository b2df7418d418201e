from __future__ import annotations

import pytest

from machine.mm.paging import PTE_PRESENT, AddressSpace, PageFault
from machine.mm.physical import PhysicalMemory

KVA = 0xFFFFC98300001000


def test_translation_walks_real_tables_in_physical_memory():
    phys = PhysicalMemory()
    space = AddressSpace(phys)
    frame = phys.alloc_frame()
    space.map_page(KVA, frame)
    assert space.translate(KVA + 0x123) == (frame << 12) + 0x123
    # Walk the four levels by hand from CR3.
    table = space.cr3
    for shift in (39, 30, 21):
        entry = phys.read_u64(table + ((KVA >> shift) & 0x1FF) * 8)
        assert entry & PTE_PRESENT
        table = entry & 0x000FFFFFFFFFF000
    pte = phys.read_u64(table + ((KVA >> 12) & 0x1FF) * 8)
    assert pte >> 12 & 0xFFFFFFFFFF == frame


def test_unmapped_and_paged_out_pages_fault_with_their_pte():
    phys = PhysicalMemory()
    space = AddressSpace(phys)
    space.map_new(KVA, 0x1000)
    space.write_u64(KVA, 0x1122334455667788)
    space.page_out(KVA, 0x42)
    with pytest.raises(PageFault) as exc:
        space.read_u64(KVA)
    assert exc.value.va == KVA and exc.value.pte >> 32 == 0x42 and not exc.value.present
    with pytest.raises(PageFault) as exc:
        space.read(0xFFFFC98300100000, 1)
    assert exc.value.pte == 0


def test_read_only_pages_refuse_writes_and_leave_memory_unchanged():
    phys = PhysicalMemory()
    space = AddressSpace(phys)
    space.map_new(KVA, 0x1000, writable=False)
    with pytest.raises(PageFault) as exc:
        space.write(KVA, b"\x01")
    assert exc.value.present and exc.value.write and exc.value.error_code & 3 == 3
    assert space.read(KVA, 1) == b"\0"


def test_kernel_half_is_shared_and_user_half_is_private():
    phys = PhysicalMemory()
    kernel = AddressSpace(phys)
    kernel.map_new(KVA, 0x1000)
    a, b = AddressSpace(phys), AddressSpace(phys)
    a.share_kernel_half(kernel)
    b.share_kernel_half(kernel)
    kernel.write_u64(KVA, 7)
    assert a.read_u64(KVA) == b.read_u64(KVA) == 7
    a.map_new(0x10000, 0x1000, user=True)
    a.write_u64(0x10000, 5)
    with pytest.raises(PageFault):
        b.read_u64(0x10000)
