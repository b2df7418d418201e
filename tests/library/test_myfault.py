"""myfault: the high IRQL fault (0xD1), the introductory lab."""

from __future__ import annotations

from tests.library import labkit

NAME = "myfault"
SOLUTION = ["!analyze -v", "k", "!pte poi(myfault!PagedBuffer)"]
RIGHT = ".submit bugcheck=0xD1 driver=myfault.sys routine=MyfaultHighIrqlFault " \
        "cause=paged-at-dispatch"
WRONG = ".submit bugcheck=0xA driver=nt routine=KiPageFault cause=null-deref"


def test_it_stops_with_0xd1_reading_the_paged_out_buffer_at_dispatch_level():
    m = labkit.stopped(NAME).machine
    code, (address, irql, write, ip) = m.bugcheck.code, m.bugcheck.params
    assert code == 0xD1
    assert address == m.kspace.read_u64(m.sym("myfault!PagedBuffer"))  # memory referenced
    assert irql == 2 and write == 0  # DISPATCH_LEVEL, a read
    assert m.sym("myfault!MyfaultHighIrqlFault") < ip < m.sym("myfault!MyfaultHighIrqlFault") \
        + 0x40  # the instruction that read it


def test_the_solution_reveals_the_key_and_is_graded(tmp_path):
    out = labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path)
    assert "DRIVER_IRQL_NOT_LESS_OR_EQUAL (d1)" in out
    assert "SYMBOL_NAME:  myfault!MyfaultHighIrqlFault+" in out
    assert "IMAGE_NAME:  myfault.sys" in out
    assert "Arg2: 0000000000000002, IRQL" in out
    assert "not valid" in labkit.outputs(out)[3]  # !pte: the page is not present
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(tmp_path):
    assert labkit.transcript(NAME, SOLUTION, tmp_path / "a") == \
        labkit.transcript(NAME, SOLUTION, tmp_path / "b")
