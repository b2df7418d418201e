"""myfault-double-free: a nonpaged block freed twice by the same routine (0xC2, subtype 7)."""

from __future__ import annotations

from machine.ex.pool import tag_value
from machine.types.view import Struct
from tests.library import labkit

NAME = "myfault-double-free"
P4 = "poi(nt!KiBugCheckData+20)"  # the bug check's fourth parameter, as kd reads it
SOLUTION = ["!analyze -v", "k", f"!pool {P4}", f"!pool {P4} 2"]
RIGHT = ".submit bugcheck=0xC2 driver=myfault.sys routine=MyfaultDoubleFree " \
        "cause=double-free tag=Fult"
WRONG = ".submit bugcheck=0x19 driver=nt routine=ExFreePoolWithTag cause=pool-overrun tag=Irp"


def test_it_stops_with_0xc2_7_on_the_second_free_of_myfaults_block():
    m = labkit.stopped(NAME).machine
    code, (subtype, reserved, contents, address) = m.bugcheck.code, m.bugcheck.params
    assert code == 0xC2
    assert subtype == 7 and reserved == 0  # the block being freed was already free
    header = Struct(m.kspace, "_POOL_HEADER", address - 0x10)
    assert contents == header.get("Ulong1")  # the header as the pool found it
    assert header.get("PoolType") == 0  # free
    assert header.get("PoolTag") == tag_value("Fult")
    # in the request's own thread: notmyfault64.exe's, inside its IOCTL
    assert m.processors[m.bugcheck.processor].current.process.image == "notmyfault64.exe"


def test_the_solution_reveals_the_key_and_is_graded(tmp_path):
    out = labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path)
    analyze, stack, pool, pool2 = labkit.outputs(out)[1:5]
    assert "BAD_POOL_CALLER (c2)" in analyze
    assert "Arg1: 0000000000000007, The current thread attempted to free the pool, which" \
        in analyze
    assert "SYMBOL_NAME:  myfault!MyfaultDoubleFree+" in analyze
    assert "IMAGE_NAME:  myfault.sys" in analyze
    assert "FAILURE_BUCKET_ID:  0xC2_myfault!MyfaultDoubleFree" in analyze
    frames = [line.split()[-1] for line in stack.splitlines()[1:4]]
    assert frames[:2] == ["nt!KeBugCheckEx", "nt!ExFreePoolWithTag+0x1a0"]
    assert frames[2].startswith("myfault!MyfaultDoubleFree+")
    hit = next(line for line in pool.splitlines() if line.startswith("*"))
    assert "(Free)" in hit and hit.endswith("*Fult")
    assert pool2.splitlines()[1] == hit  # flag 2: the block alone
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(tmp_path):
    assert labkit.transcript(NAME, SOLUTION, tmp_path / "a") == \
        labkit.transcript(NAME, SOLUTION, tmp_path / "b")
