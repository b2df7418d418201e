"""myfault-dpc-hang: a DPC spins at DISPATCH_LEVEL waiting for a flag nobody sets, until
the DPC watchdog stops the machine (0x133, P1 = 0)."""

from __future__ import annotations

import pytest

from machine.ke.clock import DPC_TIME_LIMIT, TRIAGE_SIGNATURE
from machine.types.view import Struct
from tests.library import labkit

NAME = "myfault-dpc-hang"
SOLUTION = ["!analyze -v", "k", "uf myfault!MyfaultTransferDpc",
            "dd myfault!TransferStatus L1"]
RIGHT = ".submit bugcheck=0x133 driver=myfault.sys routine=MyfaultTransferDpc " \
        "cause=spinning-dpc"
WRONG = ".submit bugcheck=0xD1 driver=nt routine=MyfaultDeviceControl cause=deadlock"


@pytest.fixture(scope="module")
def transcript(tmp_path_factory) -> str:
    # The machine spins for the whole DPC time limit, so each boot costs a second or so:
    # the tests share this run.
    return labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path_factory.mktemp("a"))


def test_it_stops_with_0x133_type_0_while_myfault_transfer_dpc_polls_its_flag():
    m = labkit.stopped(NAME).machine
    assert m.bugcheck is not None
    code, (kind, count, limit, triage) = m.bugcheck.code, m.bugcheck.params
    assert code == 0x133
    assert kind == 0  # a single DPC exceeded its time allotment
    proc = m.processors[m.bugcheck.processor]
    prcb = Struct(m.kspace, "_KPRCB", proc.prcb)
    assert count == prcb.get("DpcTimeCount") == DPC_TIME_LIMIT  # the DPC time count
    assert limit == prcb.get("DpcTimeLimit") == DPC_TIME_LIMIT  # the allotment
    assert m.kspace.read(triage, 4) == TRIAGE_SIGNATURE.to_bytes(4, "little")
    assert prcb.get("DpcRoutineActive") == 1
    # The clock interrupt that noticed it interrupted the DPC routine's loop.
    clock = next(f for f in proc.current.native if f.spec.name == "HalpTimerClockInterrupt")
    rip = Struct(m.kspace, "_KTRAP_FRAME", clock.extra["tf"]).get("Rip")
    dpc = m.sym("myfault!MyfaultTransferDpc")
    assert dpc <= rip < dpc + 0x40
    assert int.from_bytes(m.kspace.read(m.sym("myfault!TransferStatus"), 4), "little") == 0
    assert m.kspace.read_u64(m.sym("myfault!CurrentIrp")) != 0  # never completed


def test_the_solution_reveals_the_key_and_is_graded(transcript):
    out = transcript
    parts = labkit.outputs(out)
    assert "DPC_WATCHDOG_VIOLATION (133)" in out
    assert "Arg1: 0000000000000000, A single DPC or ISR exceeded its time allotment." in out
    assert "SYMBOL_NAME:  myfault!MyfaultTransferDpc+" in out
    assert "IMAGE_NAME:  myfault.sys" in out
    frames = [line.split()[-1] for line in parts[2].splitlines()[1:]]
    at = frames.index("nt!KiRetireDpcList+0x51e")
    assert frames[at - 1].startswith("myfault!MyfaultTransferDpc+")  # the DPC routine
    assert "pause" in parts[3] and "myfault!TransferStatus" in parts[3]  # the poll loop
    assert parts[4].split()[1] == "00000000"  # dd: the flag is clear
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(transcript, tmp_path):
    assert labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path) == transcript
