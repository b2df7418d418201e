"""Faults are precise: the faulting instruction changes no architectural state."""

from __future__ import annotations

import pytest

from machine.cpu import CpuException
from machine.cpu.harness import CODE, DATA, STACK_TOP, Harness, assemble

M64 = (1 << 64) - 1
UNMAPPED = 0xFFFFF80000500000
RO = 0xFFFFF80000600000


def snapshot(h: Harness):
    cpu = h.cpu
    return (list(cpu.regs), cpu.rip, cpu.rflags, h.mem.read(DATA, 64),
            h.mem.read(STACK_TOP - 64, 64), h.mem.read(RO, 16))


def harness(*lines: str, **regs: int) -> Harness:
    h = Harness(assemble(*lines))
    h.mem.map_new(RO, 0x1000, writable=False)
    h.mem.write_u64(DATA, 0x1111)
    h.mem.write_u64(STACK_TOP - 8, 0x2222)
    for name, value in regs.items():
        h.cpu.set(name, value)
    return h


def fault(h: Harness) -> CpuException:
    # leave flags in a lazily evaluated state, so the test also covers them
    before = snapshot(h)
    with pytest.raises(CpuException) as ei:
        h.cpu.step()
    assert snapshot(h) == before
    return ei.value


def test_pf_read_not_present():
    h = harness("488b03 mov rax,[rbx]", rbx=UNMAPPED + 8, rax=5)
    e = fault(h)
    assert e.vector == 14
    assert e.error_code == 0
    assert e.cr2 == UNMAPPED + 8 and h.cpu.cr2 == UNMAPPED + 8
    assert e.rip == CODE
    assert not e.write


def test_pf_write_read_only_page():
    h = harness("48c70301000000 mov qword ptr [rbx],1", rbx=RO)
    e = fault(h)
    assert e.vector == 14 and e.error_code == 3  # present | write
    assert e.write and e.cr2 == RO and e.rip == CODE


def test_pf_read_modify_write_leaves_flags_and_registers():
    for line in ("480103 add [rbx],rax", "48ff03 inc qword ptr [rbx]",
                 "480fab03 bts [rbx],rax", "f0480fb10b lock cmpxchg [rbx],rcx",
                 "480fc103 xadd [rbx],rax", "488703 xchg rax,[rbx]",
                 "48d123 shl qword ptr [rbx],1", "48f71b neg qword ptr [rbx]"):
        h = harness("4839c8 cmp rax,rcx", line, rax=3, rbx=RO, rcx=M64)
        h.cpu.step()  # cmp: a lazy flags record is pending
        e = fault(h)
        assert (e.vector, e.error_code, e.cr2) == (14, 3, RO), line


def test_pf_on_push_and_call_keeps_rsp():
    for line in ("50 push rax", "e800000000 call 0FFFFF80000100005h", "ffd0 call rax",
                 "6a01 push 1", "9c pushfq"):
        h = harness(line, rsp=UNMAPPED + 0x10, rax=CODE)
        e = fault(h)
        assert e.vector == 14 and e.error_code == 2 and e.cr2 == UNMAPPED + 8, line


def test_pf_on_pop_and_ret_keeps_rsp():
    for line in ("58 pop rax", "c3 ret", "9d popfq", "c9 leave"):
        h = harness(line, rsp=UNMAPPED, rbp=UNMAPPED)
        e = fault(h)
        assert (e.vector, e.error_code, e.cr2) == (14, 0, UNMAPPED), line


def test_pop_to_unwritable_memory_keeps_rsp():
    h = harness("8f03 pop qword ptr [rbx]", rbx=RO)
    h.cpu.set("rsp", STACK_TOP - 8)
    e = fault(h)
    assert e.vector == 14 and e.cr2 == RO


def test_pf_write_crossing_into_read_only_page_writes_nothing():
    h = harness("48890b mov [rbx],rcx", rbx=RO - 4, rcx=M64)
    h.mem.map_new(RO - 0x1000, 0x1000)
    e = fault(h)
    assert e.cr2 == RO and e.error_code == 3
    assert h.mem.read_u64(RO - 8) == 0


def test_pf_read_crossing_into_unmapped_page():
    h = harness("488b03 mov rax,[rbx]", rbx=DATA + 0x2000 - 4)
    e = fault(h)
    assert e.cr2 == DATA + 0x2000 and e.error_code == 0


def test_pf_movs_destination():
    h = harness("48a5 movsq", rsi=DATA, rdi=RO)
    e = fault(h)
    assert e.cr2 == RO and e.error_code == 3


def test_rep_movs_fault_keeps_completed_iterations():
    # the destination runs off the data pages: the first page's worth completes
    h = harness("f3a4 rep movsb", rsi=DATA, rdi=DATA + 0x2000 - 3, rcx=8)
    with pytest.raises(CpuException) as ei:
        h.cpu.step()
    assert ei.value.cr2 == DATA + 0x2000 and ei.value.rip == CODE
    assert h.cpu.get("rcx") == 5 and h.cpu.get("rdi") == DATA + 0x2000
    assert h.cpu.rip == CODE


def test_instruction_fetch_faults():
    h = Harness()
    h.cpu.rip = UNMAPPED
    with pytest.raises(CpuException) as ei:
        h.cpu.step()
    e = ei.value
    assert (e.vector, e.error_code, e.cr2, e.rip) == (14, 0x10, UNMAPPED, UNMAPPED)
    # fetch from a no-execute page
    h.cpu.rip = DATA
    with pytest.raises(CpuException) as ei:
        h.cpu.step()
    assert ei.value.vector == 14 and ei.value.error_code == 0x11 and ei.value.cr2 == DATA


def test_instruction_spanning_into_unmapped_page():
    h = Harness(code_pages=1)
    start = CODE + 0x1000 - 3
    h.mem.write(start, bytes.fromhex("48b8"))  # mov rax, imm64 needs 8 more bytes
    h.cpu.rip = start
    with pytest.raises(CpuException) as ei:
        h.cpu.step()
    assert ei.value.vector == 14 and ei.value.cr2 == CODE + 0x1000
    assert ei.value.rip == start and h.cpu.rip == start


def test_gp_non_canonical_data_address():
    for line in ("488b03 mov rax,[rbx]", "48c70300000000 mov qword ptr [rbx],0",
                 "480103 add [rbx],rax"):
        h = harness(line, rbx=0x0000800000000000)
        e = fault(h)
        assert (e.vector, e.error_code, e.rip) == (13, 0, CODE), line


def test_gp_non_canonical_branch_target_faults_on_the_branch():
    h = harness("c3 ret", rsp=STACK_TOP - 8)
    h.mem.write_u64(STACK_TOP - 8, 0x4141414141414141)
    e = fault(h)
    assert e.vector == 13 and e.rip == CODE
    h = harness("ffe0 jmp rax", rax=0x8000000000000000)
    assert fault(h).vector == 13
    h = harness("ffd0 call rax", rax=0x0000800000000000)
    assert fault(h).vector == 13


def test_gp_non_canonical_rip():
    h = Harness()
    h.cpu.rip = 0x0000800000001000
    with pytest.raises(CpuException) as ei:
        h.cpu.step()
    assert ei.value.vector == 13


def test_divide_errors():
    for line, regs in (("48f7f3 div rbx", dict(rax=1, rdx=0, rbx=0)),
                       ("48f7f3 div rbx", dict(rax=0, rdx=1, rbx=1)),  # quotient overflow
                       ("48f7fb idiv rbx", dict(rax=5, rdx=0, rbx=0)),
                       ("48f7fb idiv rbx", dict(rax=1 << 63, rdx=M64, rbx=M64)),  # MIN / -1
                       ("f6f3 div bl", dict(rax=0x100, rbx=1)),
                       ("f7fb idiv ebx", dict(rax=0x80000000, rdx=0xFFFFFFFF, rbx=M64))):
        h = harness(line, **regs)
        e = fault(h)
        assert e.vector == 0 and e.rip == CODE, line


def test_ud_on_garbage_and_unsupported():
    for code in ("06", "0f0b", "0fff", "f04889d8", "8ed8", "0f05", "c5f877", "d9c0"):
        h = harness()
        h.load(bytes.fromhex(code))
        e = fault(h)
        assert e.vector == 6 and e.rip == CODE, code


def test_ud_is_not_cached_past_a_code_change():
    h = harness()
    h.load(bytes.fromhex("0fff"))
    with pytest.raises(CpuException):
        h.cpu.step()
    h.mem.write(CODE, bytes.fromhex("0f0b"))  # still ud2
    with pytest.raises(CpuException):
        h.cpu.step()
    h.mem.write(CODE, assemble("4889d8 mov rax,rbx"))
    h.cpu.set("rbx", 9)
    h.cpu.step()
    assert h.cpu.get("rax") == 9


def test_page_fault_converted_in_push_helper():
    h = harness(rsp=UNMAPPED + 8)
    with pytest.raises(CpuException) as ei:
        h.cpu.push(1)
    assert ei.value.vector == 14 and h.cpu.get("rsp") == UNMAPPED + 8
