"""myfault-overrun-verifier: the same overrun with special pool on myfault.sys: the first
byte past the block faults at once (0xD6) in myfault's copy loop."""

from __future__ import annotations

from machine.ex.pool import tag_value
from machine.types.view import Struct
from tests.library import labkit

NAME = "myfault-overrun-verifier"
P1 = "poi(nt!KiBugCheckData+8)"
SOLUTION = ["!analyze -v", "!verifier", f"!pool {P1}-40", f"db {P1}-40 l40"]
RIGHT = ".submit bugcheck=0xD6 driver=myfault.sys routine=MyfaultBufferOverflow " \
        "cause=pool-overrun tag=Fult"
WRONG = ".submit bugcheck=0x19 driver=netlog.sys routine=NetlogTimerDpc cause=use-after-free " \
        "tag=Nlog"
TEXT = b"NotMyFault buffer overflow test: 72 bytes of data for a 64-byte buffer.."


def test_the_first_byte_past_the_special_pool_block_faults_in_myfault():
    m = labkit.stopped(NAME).machine
    code, (address, write, ip, reserved) = m.bugcheck.code, m.bugcheck.params
    assert code == 0xD6
    block = address - 0x40
    assert m.pool.is_special(block) and address % 0x1000 == 0  # the block ends at its page
    assert m.kspace.get_pte(address) == 0  # and the page after it is not mapped
    assert write == 1 and reserved == 0
    routine = m.sym("myfault!MyfaultBufferOverflow")
    assert routine < ip < routine + 0x90  # the copy loop's store
    assert m.kspace.read(ip, 2) == b"\x88\x08"  # mov byte ptr [rax], cl
    assert m.kspace.read(block, 0x40) == TEXT[:0x40]  # 64 bytes copied, the 65th faulted
    header = Struct(m.kspace, "_POOL_HEADER", block & ~0xFFF)  # special pool: page start
    assert header.get("PoolTag") == tag_value("Fult")
    assert m.kspace.read_u64(m.sym("myfault!LastBuffer")) == 0  # the routine never ended


def test_the_solution_reveals_the_key_and_is_graded(tmp_path):
    out = labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path)
    analyze, verifier, pool, dump = labkit.outputs(out)[1:5]
    assert "DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION (d6)" in analyze
    assert "Arg2: 0000000000000001, 0: Read 1: Write" in analyze
    assert "SYMBOL_NAME:  myfault!MyfaultBufferOverflow+" in analyze
    assert "IMAGE_NAME:  myfault.sys" in analyze
    assert "[X] (0x00000001) Special pool" in verifier and "myfault.sys (Loaded)" in verifier
    arg1 = next(line.split()[1].rstrip(",") for line in analyze.splitlines()
                if line.startswith("Arg1:"))
    row = next(line for line in pool.splitlines() if line.startswith("*"))
    assert "size:   40" in row and row.endswith("(NonPaged) *Fult")
    data = int(row.split("data: ")[1].split()[0], 16)
    assert data + 0x40 == int(arg1, 16)  # the block ends where the fault is
    assert "64-byte" in dump
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(tmp_path):
    assert labkit.transcript(NAME, SOLUTION, tmp_path / "a") == \
        labkit.transcript(NAME, SOLUTION, tmp_path / "b")
