"""The decode cache: keyed by address space, invalidated by writes to code frames."""

from __future__ import annotations

import pytest

from machine.cpu import Cpu, CpuException, DecodeCache
from machine.cpu.harness import CODE, Harness, assemble
from machine.mm.paging import PTE_NX, PTE_PRESENT, PTE_WRITE, AddressSpace

MOV_EAX_1 = assemble("b801000000 mov eax,1")
MOV_EAX_2 = assemble("b802000000 mov eax,2")


def pfn_of(space: AddressSpace, va: int) -> int:
    return space.translate(va) >> 12


def test_overwritten_code_runs_new_instruction():
    h = Harness(MOV_EAX_1)
    h.cpu.step()
    assert h.cpu.regs[0] == 1
    assert pfn_of(h.mem, CODE) in h.phys.watched
    h.mem.write(CODE, MOV_EAX_2)
    h.cpu.rip = CODE
    h.cpu.step()
    assert h.cpu.regs[0] == 2


def test_self_modifying_code():
    # 0: mov byte ptr [rip+1],7 (patches the immediate of the next instruction)
    # 7: mov al,1
    h = Harness(assemble("c6050100000007 mov byte ptr [0FFFFF80000100008h],7",
                         "b001 mov al,1"))
    h.cpu.rip = CODE + 7
    h.cpu.step()  # decode and cache 'mov al,1'
    assert h.cpu.regs[0] == 1
    h.cpu.rip = CODE
    h.cpu.step()
    h.cpu.step()
    assert h.cpu.regs[0] == 7


def test_write_through_alias_mapping_and_direct_physical_write():
    h = Harness(MOV_EAX_1)
    alias = 0xFFFFF80000700000
    h.mem.map_page(alias, pfn_of(h.mem, CODE))
    h.cpu.step()
    h.mem.write(alias, MOV_EAX_2)
    h.cpu.rip = CODE
    h.cpu.step()
    assert h.cpu.regs[0] == 2
    h.phys.write(h.mem.translate(CODE), MOV_EAX_1)
    h.cpu.rip = CODE
    h.cpu.step()
    assert h.cpu.regs[0] == 1


def test_write_by_another_cpu_in_another_space_invalidates():
    h = Harness(assemble("48ffc0 inc rax"))
    other_space = AddressSpace(h.phys)
    code_pfn = pfn_of(h.mem, CODE)
    writer_va = 0x10000
    other_space.map_page(writer_va, code_pfn)
    other_space.map_new(0x20000, 0x1000, executable=True)
    # the second CPU patches the modrm byte: 48 ff c0 (inc rax) -> 48 ff c8 (dec rax)
    other_space.write(0x20000, assemble("c6042502000100c8 mov byte ptr [10002h],0C8h",
                                        base=0x20000))
    other = Cpu(1, h.cache)
    other.mem = other_space
    h.cpu.step()
    assert h.cpu.regs[0] == 1
    other.rip = 0x20000
    other.step()
    h.cpu.rip = CODE
    h.cpu.step()
    assert h.cpu.regs[0] == 0  # dec rax ran


def test_same_va_different_address_spaces():
    h = Harness(MOV_EAX_1)
    space2 = AddressSpace(h.phys)
    space2.map_new(CODE, 0x1000, executable=True)
    space2.write(CODE, MOV_EAX_2)
    cpu = h.cpu
    for space, want in ((h.mem, 1), (space2, 2), (h.mem, 1), (space2, 2)):
        cpu.mem = space
        cpu.rip = CODE
        cpu.step()
        assert cpu.regs[0] == want
    # two CPUs, one per space, interleaved
    other = Cpu(1, h.cache)
    other.mem = space2
    cpu.mem = h.mem
    for _ in range(3):
        cpu.rip = other.rip = CODE
        cpu.step()
        other.step()
        assert (cpu.regs[0], other.regs[0]) == (1, 2)
    assert cpu.cr3 == h.mem.cr3 and other.cr3 == space2.cr3


def test_instruction_spanning_two_frames_invalidated_by_either():
    h = Harness()
    start = CODE + 0x1000 - 4
    h.mem.write(start, assemble("48b81122334455667788 mov rax,8877665544332211h", base=start))
    h.cpu.rip = start
    h.cpu.step()
    assert h.cpu.regs[0] == 0x8877665544332211
    assert {pfn_of(h.mem, CODE), pfn_of(h.mem, CODE + 0x1000)} <= h.phys.watched
    h.mem.write(CODE + 0x1000 + 5, b"\x99")  # last immediate byte, second frame
    h.cpu.rip = start
    h.cpu.step()
    assert h.cpu.regs[0] == 0x9977665544332211
    h.mem.write(start + 2, b"\x00")  # first immediate byte, first frame
    h.cpu.rip = start
    h.cpu.step()
    assert h.cpu.regs[0] == 0x9977665544332200


def test_page_table_changes_take_effect():
    h = Harness(MOV_EAX_1)
    h.cpu.step()
    other = h.phys.alloc_frame()
    h.phys.write(other << 12, MOV_EAX_2)
    h.mem.set_pte(CODE, (other << 12) | PTE_PRESENT | PTE_WRITE)
    h.cpu.rip = CODE
    h.cpu.step()
    assert h.cpu.regs[0] == 2
    h.mem.set_pte(CODE, (other << 12) | PTE_PRESENT | PTE_NX)
    h.cpu.rip = CODE
    with pytest.raises(CpuException) as ei:
        h.cpu.step()
    assert ei.value.vector == 14 and ei.value.error_code == 0x11
    h.mem.set_pte(CODE, 0)
    with pytest.raises(CpuException) as ei:
        h.cpu.step()
    assert ei.value.vector == 14 and ei.value.error_code == 0x10


def test_data_written_after_code_cached_on_same_page():
    # code and data share a frame: writes to the data keep working, and code still runs
    code = assemble("48ff05f9000000 inc qword ptr [0FFFFF80000100100h]",
                    "ebf7 jmp short 0FFFFF80000100000h")
    h = Harness(code)
    for _ in range(50):
        h.cpu.step()
    assert h.mem.read_u64(CODE + 0x100) == 25


def test_flush():
    h = Harness(MOV_EAX_1)
    h.cpu.step()
    assert h.cache.entries
    h.cache.flush()
    assert not h.cache.entries and not h.phys.watched
    h.cpu.rip = CODE
    h.cpu.step()
    assert h.cpu.regs[0] == 1


def test_shared_entries_between_cpus_and_registration():
    h = Harness(MOV_EAX_1)
    cache = h.cache
    assert h.phys.on_watched_write is not None
    other = Cpu(1, cache)
    other.mem = h.mem
    other.rip = CODE
    h.cpu.step()
    n = len(cache.entries)
    other.step()
    assert len(cache.entries) == n and other.regs[0] == 1
    assert isinstance(cache, DecodeCache)
