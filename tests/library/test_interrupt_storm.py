"""interrupt-storm: hdcap.sys's ISR tests the wrong STATUS bit, so it never claims nor
acknowledges its level-sensitive interrupt, which storms into 0xF2."""

from __future__ import annotations

import pytest

from machine.hal.devices import REG_CONTROL, REG_STATUS
from machine.ke.idt import read_gate
from machine.ke.interrupt import STORM_THRESHOLD
from machine.types.view import Struct
from tests.library import labkit

NAME = "interrupt-storm"
RIGHT = ".submit bugcheck=0xF2 driver=hdcap.sys routine=HdcInterruptService " \
        "cause=interrupt-storm vector=0x91"
WRONG = ".submit bugcheck=0xD1 driver=nt routine=KiInterruptDispatch cause=spinning-dpc " \
        "vector=0xD1"


@pytest.fixture(scope="module")
def m():
    return labkit.stopped(NAME).machine


def _solution(m) -> list[str]:
    """What a trainee types, with the addresses !analyze -v printed (Arg1, Arg3)."""
    isr, _, interrupt, _ = m.bugcheck.params
    return ["!analyze -v", f"ln {isr:x}", f"dt nt!_KINTERRUPT {interrupt:x}", "!idt 91",
            "uf hdcap!HdcInterruptService", "dd poi(hdcap!Registers) L4"]


def test_it_stops_with_0xf2_naming_the_isr_that_never_acknowledges(m):
    code, (isr, context, interrupt, chained) = m.bugcheck.code, m.bugcheck.params
    assert code == 0xF2 and m.bugcheck.processor == 0
    assert isr == m.sym("hdcap!HdcInterruptService")  # the ISR connected to the vector
    device = m.kspace.read_u64(m.sym("hdcap!DeviceObject"))
    assert context == device  # its ServiceContext
    assert interrupt == m.kspace.read_u64(m.sym("hdcap!Interrupt"))  # the KINTERRUPT
    assert chained == 1  # not chained
    k = Struct(m.kspace, "_KINTERRUPT", interrupt)
    assert k.get("Vector") == 0x91 and k.get("Irql") == 9 and k.get("Mode") == 0  # level
    assert k.get("DispatchCount") == STORM_THRESHOLD  # unclaimed, back to back
    assert read_gate(m.kspace, m.processors[0].idt, 0x91) == m.sym("nt!KiIsrThunk") + 0x91 * 8
    regs = m.kspace.read_u64(m.sym("hdcap!Registers"))
    assert m.kspace.read_int(regs + REG_STATUS, 4) == 1  # frame done, never cleared
    assert m.kspace.read_int(regs + REG_CONTROL, 4) == 1  # enabled by the capture IOCTL
    assert m.kspace.read_u64(m.sym("hdcap!FramesDone")) == 0


def test_the_solution_reveals_the_key_and_is_graded(m, tmp_path):
    out = labkit.transcript(NAME, [*_solution(m), RIGHT, WRONG], tmp_path)
    analyze, ln, dt, idt, uf, dd = labkit.outputs(out)[1:7]
    isr = m.sym("hdcap!HdcInterruptService")
    assert "HARDWARE_INTERRUPT_STORM (f2)" in analyze
    assert f"Arg1: {isr:016x}, Address of the ISR" in analyze
    assert "hdcap!HdcInterruptService" in ln
    assert "+0x058 Vector           : 0x91" in dt
    assert "+0x06c Mode             : 0 ( LevelSensitive )" in dt
    interrupt = m.kspace.read_u64(m.sym("hdcap!Interrupt"))
    assert f"91:\t{m.sym('nt!KiIsrThunk') + 0x91 * 8:016x} hdcap!HdcInterruptService " \
           f"(KINTERRUPT {interrupt:016x})" in idt
    assert "mov     ecx,2" in uf  # the bit it tests
    assert dd.split()[1] == "00000001"  # STATUS: bit 0
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(m, tmp_path):
    assert labkit.transcript(NAME, _solution(m), tmp_path / "a") == \
        labkit.transcript(NAME, _solution(m), tmp_path / "b")
