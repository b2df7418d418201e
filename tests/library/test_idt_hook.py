"""idt-hook: arenaguard.sys points processor 1's clock interrupt gate (0xD1) at its own
sampler, which chains to nt!HalpTimerClockInterrupt; processor 0 is untouched."""

from __future__ import annotations

import pytest

from machine.ke.idt import read_gate
from tests.library import labkit

NAME = "idt-hook"
SOLUTION = ["!idt -a", "u arenaguard!AgTickSampler",
            "ln poi(arenaguard!OriginalClockHandler)"]
RIGHT = ".submit driver=arenaguard.sys routine=AgTickSampler cause=idt-hook vector=d1 " \
        "processor=1"
WRONG = ".submit driver=nt routine=HalpTimerClockInterrupt cause=code-overwrite vector=0xE " \
        "processor=0"
INSTALLED_AT = 30  # the tick arenagame.exe turns protection on
STOP = 150


@pytest.fixture(scope="module")
def m():
    return labkit.stopped(NAME).machine


def test_only_processor_1s_clock_gate_goes_through_the_hook_which_chains(m):
    assert m.bugcheck is None
    hook, clock = m.sym("arenaguard!AgTickSampler"), m.sym("nt!HalpTimerClockInterrupt")
    cpu0, cpu1 = m.processors
    assert read_gate(m.kspace, cpu0.idt, 0xD1) == clock
    assert read_gate(m.kspace, cpu1.idt, 0xD1) == hook
    assert m.kspace.read_u64(m.sym("arenaguard!IdtBase")) == cpu1.idt
    assert m.kspace.read_u64(m.sym("arenaguard!OriginalClockHandler")) == clock
    # Every clock tick on processor 1 since the hook went in passed through it, and
    # still reached the kernel's handler: processor 1 misses no clock interrupt.
    samples = m.kspace.read_u64(m.sym("arenaguard!SampleCount"))
    assert STOP - INSTALLED_AT - 2 <= samples <= STOP - INSTALLED_AT
    assert cpu1.clock_missed == 0
    # No other gate of either IDT was touched.
    for vector in range(256):
        if vector != 0xD1:
            assert read_gate(m.kspace, cpu0.idt, vector) == \
                read_gate(m.kspace, cpu1.idt, vector)


def test_the_solution_reveals_the_key_and_is_graded(m, tmp_path):
    out = labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path)
    idt, u, ln = labkit.outputs(out)[1:4]
    hook, clock = m.sym("arenaguard!AgTickSampler"), m.sym("nt!HalpTimerClockInterrupt")
    # !idt -a: processor 0's table, then processor 1's.
    idt0, idt1 = idt.split(f"Dumping IDT: {m.processors[1].idt:016x}")
    assert f"Dumping IDT: {m.processors[0].idt:016x}" in idt0
    assert f"d1:\t{clock:016x} nt!HalpTimerClockInterrupt" in idt0.splitlines()
    assert f"d1:\t{hook:016x} arenaguard!AgTickSampler" in idt1.splitlines()
    assert "jmp     qword ptr [arenaguard!OriginalClockHandler" in u
    assert "nt!HalpTimerClockInterrupt" in ln
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(tmp_path):
    assert labkit.transcript(NAME, SOLUTION, tmp_path / "a") == \
        labkit.transcript(NAME, SOLUTION, tmp_path / "b")
