"""!verifier on machines with no verified driver (the crashed default machine), one (a
probe driver) and two (vfa.sys, vfb.sys): the flags, the statistics and every driver's
entry, counters and allocations, compared with what the machine's memory holds."""

from __future__ import annotations

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from tests.conftest import run
from tests.machine.probe import boot_probe
from tests.machine.test_verifier import (
    boot,
    data,
    live_blocks,
    targets,
    tracked,
    verified_data,
)

STANDARD = ["Automatic Checks", "Special pool", "Force IRQL checking", "Pool tracking",
            "I/O verification", "Deadlock detection", "DMA checking", "Security checks",
            "Miscellaneous checks", "DDI compliance checking"]


@pytest.fixture(scope="module")
def two():
    m = boot()
    return m, Session(LiveTarget(m), processor=0)


def flag_rows(out: list[str]) -> dict[str, bool]:
    return {line[21:]: line[5] == "X" for line in out if line.startswith("    [")
            and line[8:11] == "(0x"}


def test_no_verified_driver_shows_level_zero_and_an_empty_list(session) -> None:
    out = run(session, "!verifier")
    assert out[:4] == ["", "Verify Flags Level 0x00000000", "", "  STANDARD FLAGS:"]
    rows = flag_rows(out)
    assert list(rows)[:len(STANDARD)] == STANDARD
    assert not any(rows.values())
    assert "  Pool Allocations Attempted             0x0" in out
    assert "  Current nonpaged pool allocations      0x0 for 00000000 bytes" in out
    assert out[-3:] == ["Driver Verification List", "------------------------", ""]


def test_flags_and_statistics_are_read_from_mm_verifier_data(two) -> None:
    m, s = two
    out = run(s, "!verifier")
    d = data(m)
    assert out[1] == f"Verify Flags Level 0x{d.get('Level'):08x}"
    rows = flag_rows(out)
    assert rows["Automatic Checks"] and rows["Special pool"] and rows["Pool tracking"]
    assert not rows["Force IRQL checking"] and not rows["IRP logging"]
    at = out.index("Summary of All Verifier Statistics")
    assert out[at + 2:at + 6] == ["  RaiseIrqls           0x0", "  AcquireSpinLocks     0x0",
                                  "  Synch Executions     0x0", "  Trims                0x0"]
    assert out[at + 7] == f"  Pool Allocations Attempted             " \
                          f"{d.get('AllocationsAttempted'):#x}"
    assert out[at + 9] == f"  Pool Allocations Succeeded SpecialPool " \
                          f"{d.get('AllocationsSucceededSpecialPool'):#x}"
    assert out[at + 15] == (f"  Current nonpaged pool allocations      "
                            f"{d.get('CurrentNonPagedPoolAllocations'):#x} for "
                            f"{d.get('NonPagedBytes'):08X} bytes")
    assert out[at + 13] == (f"  Current paged pool allocations         "
                            f"{d.get('CurrentPagedPoolAllocations'):#x} for "
                            f"{d.get('PagedBytes'):08X} bytes")


def test_the_list_names_every_verified_driver_with_its_entry(two) -> None:
    m, s = two
    out = run(s, "!verifier")
    entries = [line for line in out if line.startswith("nt!_VF_TARGET_DRIVER")]
    assert entries == [f"nt!_VF_TARGET_DRIVER 0x{t:016x}: {n} (Loaded)"
                       for t, n in zip(targets(m), ("vfa.sys", "vfb.sys"), strict=True)]
    assert "    Pool Allocation Statistics: ( NonPagedPool / PagedPool )" not in out


def test_flags_three_show_each_drivers_counters_and_allocations(two) -> None:
    m, s = two
    out = run(s, "!verifier 3")
    for name, target in zip(("vfa", "vfb"), targets(m), strict=True):
        at = out.index(f"nt!_VF_TARGET_DRIVER 0x{target:016x}: {name}.sys (Loaded)")
        vd = verified_data(m, target)
        assert out[at + 2] == "    Pool Allocation Statistics: ( NonPagedPool / PagedPool )"
        assert out[at + 4] == (f"      Current Pool Allocations: "
                               f"( 0x{vd.get('CurrentNonPagedPoolAllocations'):08X} / "
                               f"0x{vd.get('CurrentPagedPoolAllocations'):08X} )")
        assert out[at + 5] == (f"      Current Pool Bytes:       ( 0x{vd.get('NonPagedBytes'):08X}"
                               f" / 0x{vd.get('PagedBytes'):08X} )")
        assert out[at + 11] == "    Pool Allocations:"
        assert out[at + 13] == "      Address             Length      Tag   Caller"
        assert out[at + 14] == "      ------------------  ----------  ----  ------------------"
        rows = out[at + 15:at + 15 + len(live_blocks(m, name))]
        expected = tracked(m, target)  # in the order of the tracker pages
        assert [int(r.split()[0], 16) for r in rows] == [a for a, *_ in expected]
        for row, (address, caller, nbytes, _tag) in zip(rows, expected, strict=True):
            sym = s.symbols.name_for(caller)
            assert sym.startswith(f"{name}!DriverEntry+0x")
            assert row == f"      0x{address:016x}  0x{nbytes:08X}  VfT1  0x{caller:016x}  {sym}"
        assert out[at + 16 + len(rows)] == \
            "    Contiguous allocations are not displayed with public symbols."


def test_an_image_limits_the_list_to_one_driver(two) -> None:
    m, s = two
    for arg, name, target in (("vfb.sys", "vfb.sys", targets(m)[1]),
                              ("VFA", "vfa.sys", targets(m)[0])):
        out = run(s, f"!verifier 1 {arg}")
        entries = [line for line in out if line.startswith("nt!_VF_TARGET_DRIVER")]
        assert entries == [f"nt!_VF_TARGET_DRIVER 0x{target:016x}: {name} (Loaded)"]
        assert "    Pool Allocations:" not in out  # flag 2 not given
    out = run(s, "!verifier 3 nosuch.sys")
    assert out[-3:] == ["Driver Verification List", "------------------------", ""]


def test_one_verified_driver() -> None:
    m = boot_probe("pooltest", {}, verified=True)
    s = Session(LiveTarget(m), processor=0)
    out = run(s, "!verifier 1")
    [target] = targets(m)
    at = out.index(f"nt!_VF_TARGET_DRIVER 0x{target:016x}: pooltest.sys (Loaded)")
    assert out[at + 4] == "      Current Pool Allocations: ( 0x00000000 / 0x00000000 )"
    assert out[1] == "Verify Flags Level 0x00000009"


def test_bad_input_gives_kd_errors(two) -> None:
    _m, s = two
    assert run(s, "!verifier zz") == ["Couldn't resolve error at 'zz'"]
    assert run(s, "!verifier 3 vfa.sys extra") == ["Syntax error at 'extra'"]
    assert run(s, "!verifier 0x80") == []  # no such log on the target: kd's lines unknown
