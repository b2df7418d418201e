"""power-irp: a function driver pends the system set-power IRP and never completes it;
the power manager's watchdog stops the machine with 0x9F subtype 3."""

from __future__ import annotations

import pytest

from machine.types.view import Struct
from tests.library import labkit

NAME = "power-irp"
RIGHT = ".submit bugcheck=0x9F driver=fabwlan.sys routine=FabWlanDispatchPower " \
        "cause=irp-not-completed"
WRONG = ".submit bugcheck=0xD1 driver=fabhub routine=FabHubDispatchPower cause=deadlock"
SLEEP_TICK, TIMEOUT_TICKS, BOOT_TICKS = 20, 120, 58_000


@pytest.fixture(scope="module")
def m():
    """The lab's machine at its stop (booted once for the module)."""
    return labkit.stopped(NAME).machine


def solution(m) -> list[str]:
    _, pdo, _, irp = m.bugcheck.params
    return ["!analyze -v", f"!irp {irp:x}", f"!devstack {pdo:x}", "!drvobj fabwlan 2"]


def test_it_stops_with_0x9f_on_the_irp_fabwlan_pended(m):
    code, (subtype, pdo, triage, irp_addr) = m.bugcheck.code, m.bugcheck.params
    assert code == 0x9F and subtype == 3  # a device object blocked an IRP too long
    assert m.tick_count == BOOT_TICKS + SLEEP_TICK + TIMEOUT_TICKS
    # P2: the stack's PDO, fabhub's device, with fabwlan's FDO attached above it.
    fdo = m.kspace.read_u64(m.sym("fabwlan!Fdo"))
    assert pdo == m.kspace.read_u64(m.sym("fabhub!Pdo"))
    assert Struct(m.kspace, "_DEVICE_OBJECT", pdo).get("AttachedDevice") == fdo
    # P3: nt!_TRIAGE_9F_POWER, whose IrpList holds the blocked IRP's tracking block.
    assert triage == m.sym("nt!PopTriage9FPower")
    t = Struct(m.kspace, "_TRIAGE_9F_POWER", triage)
    assert t.get("Signature") == 0x8000
    data = Struct(m.kspace, "_POP_IRP_DATA", m.kspace.read_u64(t.get("IrpList")))
    assert data.get("Irp") == irp_addr and data.get("Pdo") == pdo
    # P4: the set-power IRP, still at fabwlan's location, pended, the work item done.
    irp = Struct(m.kspace, "_IRP", irp_addr)
    sl = Struct(m.kspace, "_IO_STACK_LOCATION", irp.get("Tail.Overlay.CurrentStackLocation"))
    assert (sl.get("MajorFunction"), sl.get("MinorFunction")) == (0x16, 2)
    assert sl.get("DeviceObject") == fdo and sl.get("Control") & 1  # SL_PENDING_RETURNED
    assert m.kspace.read(m.sym("fabwlan!RadioStateSaved"), 4) == b"\1\0\0\0"


def test_the_solution_reveals_the_key_and_is_graded(m, tmp_path):
    fdo = m.kspace.read_u64(m.sym("fabwlan!Fdo"))
    out = labkit.transcript(NAME, [*solution(m), RIGHT, WRONG], tmp_path)
    analysis, irp, devstack, drvobj = labkit.outputs(out)[1:5]
    assert "DRIVER_POWER_STATE_FAILURE (9f)" in analysis
    assert "Arg1: 0000000000000003, A device object has been blocking an IRP" in analysis
    assert f"DEVICE_OBJECT: {fdo:016x}" in analysis
    assert "IMAGE_NAME:  fabwlan.sys" in analysis and "MODULE_NAME: fabwlan" in analysis
    assert "FAILURE_BUCKET_ID:  0x9F_3_POWER_DOWN_IMAGE_fabwlan.sys" in analysis
    assert ">[IRP_MJ_POWER(16), IRP_MN_SET_POWER(2)]" in irp
    assert "\\Driver\\fabwlan\tnt!PopRequestCompletion" in irp
    assert "Args: 00014400 00000000 00000004 00000002" in irp  # S3, PowerActionSleep
    assert f"  {fdo:x}  \\Driver\\fabwlan" in devstack
    assert "\\Driver\\fabhub" in devstack and "USBPDO-4" in devstack
    assert "[16] IRP_MJ_POWER" in drvobj and "fabwlan!FabWlanDispatchPower" in drvobj
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(m, tmp_path):
    commands = solution(m)
    assert labkit.transcript(NAME, commands, tmp_path / "a") == \
        labkit.transcript(NAME, commands, tmp_path / "b")
