"""spinlock-deadlock: xwlan.sys's scan (processor 0, DISPATCH_LEVEL) and its link watchdog
(processor 1, HIGH_LEVEL) each hold one of its spin locks and spin for the other's;
processor 1 stops taking clock interrupts and processor 0 raises 0x101."""

from __future__ import annotations

import pytest

from machine.ke.clock import CLOCK_TIMEOUT_TICKS
from machine.types.view import Struct
from tests.library import labkit

NAME = "spinlock-deadlock"
SOLUTION = ["!analyze -v", "k", "~1s", "k", "r cr8", "dp xwlan!TxLock L1",
            "dp xwlan!RxLock L1"]
RIGHT = ".submit bugcheck=0x101 driver=xwlan.sys routine=XwCheckLink cause=deadlock"
WRONG = ".submit bugcheck=0x133 driver=nt routine=KeAccumulateTicks cause=spinning-dpc"


@pytest.fixture(scope="module")
def m():
    return labkit.stopped(NAME).machine


@pytest.fixture(scope="module")
def transcript(tmp_path_factory):
    return labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path_factory.mktemp("a"))


def _inside(m, address: int, routine: str, size: int) -> bool:
    start = m.sym(f"xwlan!{routine}")
    return start <= address < start + size


def test_processor_1_hangs_at_high_level_and_processor_0_reports_it(m):
    code, (interval, zero, prcb, number) = m.bugcheck.code, m.bugcheck.params
    hung, noticer = m.processors[1], m.processors[0]
    assert code == 0x101 and m.bugcheck.processor == noticer.number
    assert interval == CLOCK_TIMEOUT_TICKS and zero == 0  # ticks without a clock interrupt
    assert (prcb, number) == (hung.prcb, hung.number)  # the unresponsive processor
    assert hung.clock_missed >= CLOCK_TIMEOUT_TICKS
    assert hung.irql == 15  # HIGH_LEVEL: no clock interrupt gets in
    assert _inside(m, hung.cpu.rip, "OsalAcquire", 0x20)  # spinning for a lock
    assert hung.cpu.regs[1] == m.sym("xwlan!TxLock")  # rcx: the lock it spins for
    thread = Struct(m.kspace, "_ETHREAD", hung.current.ethread)
    assert thread.get("Win32StartAddress") == m.sym("xwlan!XwWatchdogWorker")
    caller = m.kspace.read_u64(hung.cpu.regs[4])  # OsalAcquire is a leaf: [rsp] returns
    assert _inside(m, caller, "XwCheckLink", 0xC0)
    # Each lock word holds its owner's processor number + 1: the cycle.
    assert m.kspace.read_u64(m.sym("xwlan!TxLock")) == noticer.number + 1
    assert m.kspace.read_u64(m.sym("xwlan!RxLock")) == hung.number + 1
    assert noticer.current.process.image == "xwlancfg.exe"
    assert m.kspace.read_u64(m.sym("xwlan!Scans")) == 0
    assert m.kspace.read_u64(m.sym("xwlan!LinkChecks")) > 10  # it had worked before


def test_the_solution_reveals_the_key_and_is_graded(m, transcript):
    analyze, k0, _, k1, cr8, tx, rx = labkit.outputs(transcript)[1:8]
    assert "CLOCK_WATCHDOG_TIMEOUT (101)" in analyze
    assert "Arg4: 0000000000000001, The index of the hung processor." in analyze
    assert f"Arg3: {m.processors[1].prcb:016x}," in analyze
    assert "IMAGE_NAME:  xwlan.sys" in analyze
    assert "xwlan!XwStartScan+0x" in k0 and "nt!KeAccumulateTicks+0x" in k0
    assert "xwlan!OsalAcquire+0x" in k1.splitlines()[1]
    assert "xwlan!XwCheckLink+0x" in k1.splitlines()[2]
    assert cr8.strip() == "cr8=000000000000000f"
    assert tx.split()[1:] == ["00000000`00000001"]  # processor 0 owns TxLock
    assert rx.split()[1:] == ["00000000`00000002"]  # processor 1 owns RxLock
    labkit.assert_right_then_wrong(transcript, RIGHT, WRONG)


def test_same_seed_same_transcript(transcript, tmp_path):
    again = labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path)
    assert again == transcript
