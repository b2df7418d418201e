"""process-ref-leak: shieldmon.sys references each client process on IRP_MJ_CREATE and
never dereferences it, so every exited shieldscan.exe stays a zombie (hard, leak)."""

from __future__ import annotations

import pytest

from kdsim.app import App
from kdsim.labs import catalog
from machine.ob.object import OBJECT_HEADER_BODY
from machine.rtl.lists import iterate_list
from machine.scenario import parse_scenario
from machine.types.view import Struct
from tests.library import labkit
from tests.machine.probe import pool_in_use

NAME = "process-ref-leak"
IMAGE = "shieldscan.exe"
RIGHT = ".submit driver=shieldmon.sys routine=ShmDispatchCreate cause=reference-leak " \
        "process=shieldscan.exe"
WRONG = ".submit driver=nt routine=PspExitProcess cause=pool-leak process=explorer.exe"


@pytest.fixture(scope="module")
def late():
    """The machine at the lab's stop (tick 57)."""
    return labkit.stopped(NAME).machine


def at_tick(ticks: int):
    entry = catalog.find(NAME)
    return App.start(parse_scenario(entry.text, entry.path), ticks=ticks).machine


def scanners(m) -> list[Struct]:
    """The EPROCESSes of the image on nt!PsActiveProcessHead, in list order."""
    off = Struct(m.kspace, "_EPROCESS", 0).offset("ActiveProcessLinks")
    found = []
    for entry in iterate_list(m.kspace, m.sym("nt!PsActiveProcessHead")):
        ep = Struct(m.kspace, "_EPROCESS", entry - off)
        if m.kspace.read(ep.addr("ImageFileName"), 15).rstrip(b"\0").decode() == IMAGE:
            found.append(ep)
    return found


def zombies(m) -> list[Struct]:
    return [ep for ep in scanners(m) if ep.get("ObjectTable") == 0]


def test_each_exited_scanner_stays_listed_held_by_one_reference(late):
    early = at_tick(27)
    # One scanner every 10 ticks exits and stays: 2 zombies at tick 27, 5 at tick 57,
    # each with the one running instance beside them.
    assert (len(zombies(early)), len(scanners(early))) == (2, 3)
    assert (len(zombies(late)), len(scanners(late))) == (5, 6)
    # Each zombie's Proc block stays allocated: the tag grows by one block per scan.
    assert pool_in_use(late, "Proc") - pool_in_use(early, "Proc") == 3
    for ep in zombies(late):
        header = Struct(late.kspace, "_OBJECT_HEADER", ep.address - OBJECT_HEADER_BODY)
        assert (header.get("HandleCount"), header.get("PointerCount")) == (0, 1)
        assert ep.get("ActiveThreads") == 0 and ep.get("ExitTime") > ep.get("CreateTime")
    # The driver freed each client's record ('ShCx'): only the running client's is left,
    # so the reference it held is what was lost.
    assert pool_in_use(late, "ShCx") == 1
    assert late.kspace.read_u64(late.sym("shieldmon!ActiveClients")) == 1
    assert late.kspace.read_u64(late.sym("shieldmon!Registrations")) == 6


def solution(m) -> list[str]:
    zombie = zombies(m)[0].address
    running = next(ep for ep in scanners(m) if ep.get("ObjectTable"))
    return [f"!process 0 0 {IMAGE}", f"!object {zombie:x}",
            f"!handle 0 3 {running.get('UniqueProcessId'):x}", "!drvobj shieldmon 2",
            "uf shieldmon!ShmDispatchCreate", "uf shieldmon!ShmDispatchClose"]


def test_the_solution_reveals_the_key_and_is_graded(late, tmp_path):
    out = labkit.transcript(NAME, [*solution(late), RIGHT, WRONG], tmp_path)
    parts = labkit.outputs(out)
    # !process 0 0: six instances of the image, five of them exited (no handle table).
    assert parts[1].count(f"Image: {IMAGE}") == 6
    assert parts[1].count("ObjectTable: 00000000  HandleCount: 0.") == 5
    # !object: no handles, one pointer reference.
    assert "HandleCount: 0  PointerCount: 1" in parts[2]
    # !handle: the running instance has the driver's device open.
    assert "Type: (" in parts[3] and ") File" in parts[3] and "{ShieldMon}" in parts[3]
    # !drvobj: the create and close dispatch routines.
    assert "[00] IRP_MJ_CREATE" in parts[4] and "shieldmon!ShmDispatchCreate" in parts[4]
    assert "shieldmon!ShmDispatchClose" in parts[4]
    # The create routine looks the process up (a reference); the close routine frees its
    # record and dereferences nothing.
    assert "call    nt!PsLookupProcessByProcessId" in parts[5]
    assert "call    nt!ExFreePoolWithTag" in parts[6]
    assert "ObfDereferenceObject" not in parts[5] + parts[6]
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(late, tmp_path):
    commands = solution(late)
    assert labkit.transcript(NAME, commands, tmp_path / "a") == \
        labkit.transcript(NAME, commands, tmp_path / "b")
