"""myfault-leak-nonpaged: NotMyFault leaks 2 KB of nonpaged pool ('Leak') every 125 ms."""

from __future__ import annotations

from kdsim.app import run_ticks_then_break
from kdsim.labs import catalog
from machine.scenario import boot_scenario, parse_scenario
from tests.library import labkit

NAME = "myfault-leak-nonpaged"
TAG = int.from_bytes(b"Leak", "little")
BLOCK = 0x810  # a 0x800-byte request and its pool header
SOLUTION = [
    "!poolused 2",  # 'Leak' tops the nonpaged usage
    "!poolfind Leak",
    "s -a myfault L3000 \"Leak\"",  # the tag as a constant in myfault's code
    "bp nt!ExAllocatePoolWithTag \"j (@r8d==0x6b61654c) ''; 'gc'\"",
    "g",
    "k",
    "bc *",
    "uf myfault!MyfaultLeakNonPagedPool",
]
RIGHT = ".submit driver=myfault.sys routine=MyfaultLeakNonPagedPool cause=pool-leak tag=Leak"
WRONG = ".submit driver=nt routine=ExAllocatePoolWithTag cause=reference-leak tag=Thre"


def nonpaged_usage(m) -> tuple[int, int]:
    """'Leak' in nt!PoolTrackTable: (outstanding nonpaged blocks, nonpaged bytes)."""
    e = m.pool.tracker.entry(TAG)
    return e.get("NonPagedAllocs") - e.get("NonPagedFrees"), e.get("NonPagedBytes")


def test_the_tag_grows_by_one_2k_block_every_125_ms():
    entry = catalog.find(NAME)
    assert entry is not None
    m = boot_scenario(parse_scenario(entry.text, entry.path))
    assert run_ticks_then_break(m, 250)
    first = nonpaged_usage(m)
    assert run_ticks_then_break(m, 490)  # the lab's stop: 240 ticks (3.75 s) later
    second = nonpaged_usage(m)
    # 240 ticks of 15.625 ms are 30 periods of 125 ms: 30 more blocks, none freed
    assert second[0] - first[0] == 30
    assert second[1] - first[1] == 30 * BLOCK
    assert second == (60, 60 * BLOCK)  # blocks at ticks 10, 18, ... 482
    assert m.bugcheck is None
    # the lab's own stop is that same point
    assert nonpaged_usage(labkit.stopped(NAME).machine) == second


def test_the_solution_reveals_the_key_and_is_graded(tmp_path):
    out = labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path)
    parts = labkit.outputs(out)
    assert "Break instruction exception - code 80000003 (first chance)" in parts[0]
    used = parts[1].splitlines()
    assert used[0] == " Sorting by NonPaged Pool Consumed"
    top = used[5].split()  # the first row: the largest nonpaged user
    assert top[:3] == ["Leak", "60", str(60 * BLOCK)]
    blocks = [line for line in parts[2].splitlines() if ": tag Leak, size     0x800," in line]
    assert len(blocks) == 60
    assert "Leak....." in parts[3]  # found in myfault's image
    stack = parts[6].splitlines()
    assert "nt!ExAllocatePoolWithTag" in stack[1]
    assert "myfault!MyfaultLeakNonPagedPool+0x" in stack[2]
    assert "myfault!MyfaultDeviceControl+0x" in parts[6]
    assert "mov     r8d,6B61654Ch" in parts[8]
    assert "call    nt!ExAllocatePoolWithTag" in parts[8]
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(tmp_path):
    assert labkit.transcript(NAME, SOLUTION, tmp_path / "a") == \
        labkit.transcript(NAME, SOLUTION, tmp_path / "b")
