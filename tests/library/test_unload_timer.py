"""unload-timer: tzpoll.sys is unloaded with its periodic timer still set; the timer's DPC
runs into the unloaded image: 0xCE."""

from __future__ import annotations

import re

import pytest

from kdsim.labs import catalog
from machine.boot import BOOT_TICKS
from machine.io.unload import unloaded_images
from machine.scenario import boot_scenario, parse_scenario
from machine.types.view import Struct
from tests.library import labkit

NAME = "unload-timer"
RIGHT = ".submit bugcheck=0xCE driver=tzpoll.sys cause=timer-not-cancelled"
WRONG = ".submit bugcheck=0xD1 driver=nt cause=use-after-free"


def test_it_stops_with_0xce_when_the_timer_dpc_calls_into_the_unloaded_image():
    entry = catalog.find(NAME)
    assert entry is not None
    m = boot_scenario(parse_scenario(entry.text, entry.path))
    # before the unload: where the image, its DPC routine and its poller context are
    image = next(i for i in m.modules if i.name == "tzpoll")
    base, end = image.base, image.base + image.size
    dpc_routine = m.sym("tzpoll!TzPollDpc")
    poller = m.kspace.read_u64(m.sym("tzpoll!Poller"))
    m.run(20_000_000)
    assert m.bugcheck is not None and m.bugcheck.code == 0xCE
    va, write, referencing, reserved = m.bugcheck.params
    # the memory referenced is the DPC routine's address, fetched (a read) by the
    # instruction at that same address
    assert va == referencing == dpc_routine and write == 0 and reserved == 0
    assert [(u.name, u.base, u.end) for u in unloaded_images(m)] == [("tzpoll.sys", base, end)]
    assert not any(i.name == "tzpoll" for i in m.modules)
    assert m.kspace.get_pte(dpc_routine & ~0xFFF) == 0  # the image's pages are gone
    # the poller context survived the unload: the timer periodic (100 ms), still pointing
    # at its DPC, whose routine is the unloaded address; the stop flag set by TzUnload
    timer = Struct(m.kspace, "_KTIMER", poller)
    assert timer.get("Period") == 100 and timer.get("Dpc") == poller + 0x40
    dpc = Struct(m.kspace, "_KDPC", poller + 0x40)
    assert dpc.get("DeferredRoutine") == dpc_routine and dpc.get("DeferredContext") == poller
    assert m.kspace.read_u64(poller + 0x80) == 1
    header = Struct(m.kspace, "_POOL_HEADER", poller - 0x10)
    assert header.get("PoolType") != 0 and header.get("PoolTag") == int.from_bytes(b"TzPl",
                                                                                    "little")
    # in a DPC, five ticks after the unload at tick 40
    prcb = Struct(m.kspace, "_KPRCB", m.processors[m.bugcheck.processor].prcb)
    assert prcb.get("DpcRoutineActive")
    assert m.tick_count - BOOT_TICKS == 45


@pytest.fixture(scope="module")
def solution(tmp_path_factory) -> list[str]:
    """The trainee's commands; the addresses of the timer and its DPC come from the
    !timer listing, as a trainee reads them."""
    out = labkit.transcript(NAME, ["!timer"], tmp_path_factory.mktemp("look"))
    timer, dpc = re.search(r"^\s*\d+ ([0-9a-f]{16}) P .*\(DPC @ ([0-9a-f]{16})\)", out,
                           re.M).groups()
    return ["!analyze -v", "k", "lm", "!timer", f"!pool {timer} 2", f"dt nt!_KTIMER {timer}",
            f"dt nt!_KDPC {dpc}", f"dq {timer}+80 L2"]


def test_the_solution_reveals_the_key_and_is_graded(solution, tmp_path):
    out = labkit.transcript(NAME, [*solution, RIGHT, WRONG], tmp_path)
    parts = labkit.outputs(out)
    analysis = parts[1]
    assert "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS (ce)" in analysis
    arg1 = next(line for line in analysis.splitlines() if line.startswith("Arg1: "))
    routine = int(arg1.split()[1].rstrip(","), 16)
    assert arg1.endswith(", Memory address referenced")
    assert "IMAGE_NAME:  tzpoll.sys" in analysis
    assert "<Unloaded_tzpoll.sys>+0x" in analysis
    frames = [line.split()[-1] for line in parts[2].splitlines()[1:]]
    assert frames[3].startswith("<Unloaded_tzpoll.sys>+0x")
    assert frames[4].startswith("nt!KiRetireDpcList+")  # called from a DPC
    lm = parts[3].splitlines()
    assert lm[-2:] == ["Unloaded modules:", lm[-1]]
    start, stop, name = lm[-1].split()
    assert name == "tzpoll.sys"
    assert int(start.replace("`", ""), 16) <= routine < int(stop.replace("`", ""), 16)
    periodic = [line for line in parts[4].splitlines() if " P " in line]
    # named as k names it: the image is gone, its old range is remembered
    assert len(periodic) == 1 and "<Unloaded_tzpoll.sys>+0x" in periodic[0]
    assert parts[5].splitlines()[1].endswith("(Allocated) *TzPl")
    assert "   +0x03c Period           : 0x64" in parts[6]  # 100 ms
    assert f"   +0x018 DeferredRoutine  : 0x{routine >> 32:08x}`{routine & 0xFFFFFFFF:08x}" \
        "     void  <Unloaded_tzpoll.sys>+0x" in parts[7]
    assert parts[8].split()[1] == "00000000`00000001"  # the stop flag TzUnload set
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(solution, tmp_path):
    assert labkit.transcript(NAME, solution, tmp_path / "a") == \
        labkit.transcript(NAME, solution, tmp_path / "b")
