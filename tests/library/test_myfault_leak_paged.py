"""myfault-leak-paged: NotMyFault leaks 1 KB of paged pool ('Leak') every 125 ms, next to
a driver with a large steady cache ('IxCh') and one that allocates and frees all the time
('IxRq')."""

from __future__ import annotations

import pytest

from kdsim.app import run_ticks_then_break
from kdsim.labs import catalog
from machine.scenario import boot_scenario, parse_scenario
from tests.library import labkit

NAME = "myfault-leak-paged"
BLOCK = 0x410  # a 0x400-byte request and its pool header
SOLUTION = [
    "!poolused 4",  # first look: IxCh is the largest, Leak third
    "bp nt!KeAccumulateTicks 0n128",  # let 64 ticks (1 s) pass on two processors
    "g",
    "bc *",
    "!poolused 4",  # second look: only Leak has grown
    "!poolused 5 Ix*",  # IxRq: many allocations, as many frees
    "lm",
    "s -a myfault L3000 \"Leak\"",
    "bp nt!ExAllocatePoolWithTag \"j (@r8d==0x6b61654c) ''; 'gc'\"",
    "g",
    "k",
    "bc *",
]
RIGHT = ".submit driver=myfault.sys routine=MyfaultLeakPagedPool cause=pool-leak tag=Leak"
WRONG = ".submit driver=ixcache.sys routine=IxBuildRequests cause=reference-leak tag=IxCh"


def paged(m, tag: str) -> tuple[int, int, int]:
    """A tag's paged counters in nt!PoolTrackTable: (allocations, frees, bytes)."""
    e = m.pool.tracker.entry(int.from_bytes(tag.encode(), "little"))
    return e.get("PagedAllocs"), e.get("PagedFrees"), e.get("PagedBytes")


def test_only_the_leak_tag_grows_1k_every_125_ms():
    entry = catalog.find(NAME)
    assert entry is not None
    m = boot_scenario(parse_scenario(entry.text, entry.path))
    assert run_ticks_then_break(m, 250)
    first = {t: paged(m, t) for t in ("Leak", "IxCh", "IxRq", "Obtb")}
    assert run_ticks_then_break(m, 490)  # the lab's stop, 240 ticks (3.75 s) later
    second = {t: paged(m, t) for t in ("Leak", "IxCh", "IxRq", "Obtb")}
    assert m.bugcheck is None
    # 30 periods of 125 ms: 30 more 'Leak' blocks and not one freed
    assert second["Leak"][0] - first["Leak"][0] == 30 and second["Leak"][1] == 0
    assert second["Leak"][2] - first["Leak"][2] == 30 * BLOCK
    assert second["Leak"] == (60, 0, 60 * BLOCK)
    # the cache is large and steady; the request records come and go
    assert first["IxCh"] == second["IxCh"] == (40, 0, 40 * 0x1000)
    assert second["IxRq"][0] - first["IxRq"][0] >= 3 * 60  # 62.5 ms rounds of three
    for allocs, frees, used in (first["IxRq"], second["IxRq"]):
        assert 0 <= allocs - frees <= 3 and used == (allocs - frees) * 0x190
    assert first["Obtb"] == second["Obtb"]
    # at the stop the leak is not the largest paged tag: growth is what gives it away
    assert second["IxCh"][2] > second["Obtb"][2] > second["Leak"][2]


def _row(part: str, tag: str) -> list[str]:
    return next(line.split() for line in part.splitlines() if line.startswith(f" {tag} "))


@pytest.fixture(scope="module")
def solved(tmp_path_factory) -> str:
    return labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path_factory.mktemp("a"))


def test_the_solution_reveals_the_key_and_is_graded(solved):
    out = solved
    parts = labkit.outputs(out)
    before, after = parts[1], parts[5]
    assert before.splitlines()[0] == after.splitlines()[0] == " Sorting by Paged Pool Consumed"
    order = [line.split()[0] for line in before.splitlines()[5:8]]
    assert order == ["IxCh", "Obtb", "Leak"]
    assert "Breakpoint 0 hit" in parts[3]
    # 64 ticks later: 8 more blocks of Leak; IxCh and Obtb unchanged
    assert _row(before, "Leak")[3:5] == ["60", str(60 * BLOCK)]
    assert _row(after, "Leak")[3:5] == ["68", str(68 * BLOCK)]
    assert _row(before, "IxCh") == _row(after, "IxCh")
    assert _row(before, "Obtb") == _row(after, "Obtb")
    ixrq = _row(parts[6], "IxRq")  # verbose: allocs, frees, diff
    assert int(ixrq[5]) - int(ixrq[6]) == int(ixrq[7]) <= 3 and int(ixrq[5]) > 300
    assert "myfault " in parts[7] and "ixcache " in parts[7]
    assert "Leak....." in parts[8]
    stack = parts[11].splitlines()
    assert "nt!ExAllocatePoolWithTag" in stack[1]
    assert "myfault!MyfaultLeakPagedPool+0x" in stack[2]
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(solved, tmp_path):
    # the lab's stop is the second point measured above: 60 blocks of Leak
    assert _row(labkit.outputs(solved)[1], "Leak")[3:5] == ["60", str(60 * BLOCK)]
    assert labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path) == solved
