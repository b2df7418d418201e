"""myfault-overrun: myfault copies 0x48 bytes into a 0x40-byte nonpaged block and damages
the header of netlog's next record; netlog's DPC frees it later (0x19, subtype 9) and the
analysis blames netlog."""

from __future__ import annotations

from machine.ex.pool import tag_value
from machine.machine import STEPS_PER_TICK
from machine.scenario import boot_scenario, builtin_scenario
from machine.types.view import Struct
from tests.library import labkit

NAME = "myfault-overrun"
ENTRY = "poi(nt!KiBugCheckData+10)"  # the bug check's second parameter: the damaged entry
SOLUTION = ["!analyze -v", f"!pool {ENTRY}", f"db {ENTRY}-40 l50", "!poolfind Fult",
            'lm', 's -a myfault L3000 "Fult"', 's -a netlog L3000 "Fult"',
            "uf myfault!MyfaultBufferOverflow"]
RIGHT = ".submit bugcheck=0x19 driver=myfault.sys routine=MyfaultBufferOverflow " \
        "cause=pool-overrun tag=Fult"
WRONG = ".submit bugcheck=0xC2 driver=netlog.sys routine=NetlogTimerDpc cause=double-free " \
        "tag=Nlog"
TEXT = b"NotMyFault buffer overflow test: 72 bytes of data for a 64-byte buffer.."


def test_the_overrun_lands_on_netlogs_oldest_record_and_its_free_finds_it():
    m = boot_scenario(builtin_scenario(NAME))
    buffer_at = m.sym("myfault!LastBuffer")
    while not m.kspace.read_u64(buffer_at):  # until myfault's copy is done
        assert m.run(STEPS_PER_TICK // 4).reason == "budget"
    buffer = m.kspace.read_u64(buffer_at)
    assert m.kspace.read(buffer, 0x48) == TEXT  # all 0x48 bytes, into a 0x40-byte block
    head = m.kspace.read_int(m.sym("netlog!Head"), 4)
    oldest = m.kspace.read_u64(m.sym("netlog!Ring") + 8 * head)
    assert oldest == buffer + 0x50  # the next block is the record netlog frees next

    assert m.run(STEPS_PER_TICK * 8).reason == "bugcheck"
    code, (subtype, entry, reserved, bad) = m.bugcheck.code, m.bugcheck.params
    assert code == 0x19 and subtype == 9  # the block header size is too large
    assert entry == bad == buffer + 0x40 and reserved == 0  # the damaged entry
    header = Struct(m.kspace, "_POOL_HEADER", entry)
    assert entry % 0x1000 + header.get("BlockSize") * 0x10 > 0x1000  # past the page end
    mine = Struct(m.kspace, "_POOL_HEADER", buffer - 0x10)  # the block before: myfault's
    assert mine.get("PoolTag") == tag_value("Fult") and mine.get("BlockSize") == 5


def test_the_lab_stops_at_that_bug_check():
    m = labkit.stopped(NAME).machine
    assert m.bugcheck.code == 0x19 and m.bugcheck.params[0] == 9
    assert m.bugcheck.params[1] == m.kspace.read_u64(m.sym("myfault!LastBuffer")) + 0x40


def test_the_solution_reveals_the_key_and_is_graded(tmp_path):
    out = labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path)
    analyze, pool, dump, found, modules, mine, theirs, code = labkit.outputs(out)[1:9]
    assert "BAD_POOL_HEADER (19)" in analyze
    assert "Arg1: 0000000000000009, The pool block header size is corrupted" in analyze
    assert "IMAGE_NAME:  netlog.sys" in analyze  # the analysis blames the victim
    assert "SYMBOL_NAME:  netlog!NetlogTimerDpc+" in analyze
    lines = pool.splitlines()
    bad = next(i for i, line in enumerate(lines) if "doesn't look like a valid" in line)
    before = lines[bad - 1].split()
    assert before[-2:] == ["(Allocated)", "Fult"] and before[2] == "50"  # myfault's block
    assert f"[ {before[0]} --> " in pool and "Corrupt region" in pool  # damage starts there
    assert "64-byte" in dump and dump.splitlines()[-1].endswith("buffer..........")
    assert "tag Fult, size      0x40, Nonpaged pool" in found
    assert "myfault    (pdb symbols)" in modules and "netlog     (pdb symbols)" in modules
    hits = [int(line.split()[0].replace("`", ""), 16) for line in mine.splitlines()
            if "Fult" in line]
    assert code.startswith("myfault!MyfaultBufferOverflow:\n")
    routine = int(code.splitlines()[1].split()[0].replace("`", ""), 16)  # its first byte
    assert len(hits) == 2 and any(routine < hit < routine + 0x40 for hit in hits)
    assert "Fult" not in theirs  # netlog's code never uses the tag
    assert "mov     edx,40h" in code and "mov     r8d,746C7546h" in code
    assert "call    nt!ExAllocatePoolWithTag" in code
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(tmp_path):
    assert labkit.transcript(NAME, SOLUTION, tmp_path / "a") == \
        labkit.transcript(NAME, SOLUTION, tmp_path / "b")
