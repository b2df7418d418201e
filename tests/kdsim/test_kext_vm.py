"""!vm on the crashed default machine and on a probe machine whose processes and pools
were grown after boot: each counter line is the nt variable in memory, each process row
its EPROCESS commit counters, in kd's layout."""

from __future__ import annotations

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from machine.ex.pool import NONPAGED_POOL, PAGED_POOL
from machine.types.view import Struct
from tests.conftest import run
from tests.machine.probe import boot_probe

HEADER = "  Pid ImageName                        Commit   SharedCommit        Debt"
COUNTERS = (("Physical Memory", "MmNumberOfPhysicalPages", 1),
            ("Available Pages", "MmAvailablePages", 1),
            ("NonPagedPool Usage", "MmAllocatedNonPagedPool", 1),
            ("NonPagedPool Max", "MmMaximumNonPagedPoolInBytes", 0x1000),
            ("PagedPool Usage", "MmPagedPoolCommit", 1),
            ("PagedPool Maximum", "MmSizeOfPagedPoolInBytes", 0x1000))


def nt(m, name: str) -> int:
    return m.kspace.read_u64(m.sym(f"nt!{name}"))


def commit(m, p) -> int:
    return Struct(m.kspace, "_EPROCESS", p.eprocess).get("CommitCharge")


def listed(m) -> list:
    """The processes on PsActiveProcessHead (every one but Idle)."""
    return [p for p in m.processes if p.pid != 0]


def check_counters(m, out: list[str]) -> None:
    for i, (label, name, unit) in enumerate(COUNTERS):
        pages = nt(m, name) // unit
        line = out[i]
        # The value ends at column 33, the Kb in 11 columns after " (".
        assert line[:33] == f"{label}:".ljust(33 - len(str(pages))) + str(pages)
        assert line[33:] == f" ({pages * 4:>11} Kb)"
    total = sum(commit(m, p) for p in listed(m))
    assert out[len(COUNTERS)] == f"Total Private:{total:>19} ({total * 4:>11} Kb)"
    assert total > 0


def check_table(m, out: list[str]) -> None:
    at = out.index(HEADER)
    assert out[at - 1] == "" and out[at + 1] == ""
    rows = out[at + 2:]
    procs = listed(m)
    assert len(rows) == len(procs)
    expected = sorted(procs, key=lambda p: -commit(m, p))
    for row, p in zip(rows, expected, strict=True):
        kb = commit(m, p) * 4
        # pid in 5, image in 24, then Commit, SharedCommit, Debt in Kb.
        assert row == f"{p.pid:>5x} {p.image[:24]:<24}{kb:>12} Kb{0:>12} Kb{0:>9} Kb"
    commits = [int(r[30:42]) for r in rows]
    assert commits == sorted(commits, reverse=True)


def test_vm_on_the_crashed_machine(app, session) -> None:
    m = app.machine
    out = run(session, "!vm")
    check_counters(m, out)
    check_table(m, out)
    assert out[0] == "Physical Memory:           524032 (    2096128 Kb)"
    names = [r[6:30].strip() for r in out[out.index(HEADER) + 2:]]
    assert "System" in names and "notmyfault64.exe" in names and "Idle" not in names


def test_flag_1_omits_the_processes(app, session) -> None:
    full = run(session, "!vm")
    short = run(session, "!vm 1")
    assert short == full[:len(COUNTERS) + 1]
    assert HEADER not in short
    assert run(session, "!vm 0") == full
    assert run(session, "!vm 4") == full  # session use is not modelled: same as 0


@pytest.fixture(scope="module")
def grown():
    """A probe machine whose notepad got 40 more private pages, and whose pools grew."""
    m = boot_probe("vmprobe", {})
    notepad = next(p for p in m.processes if p.image == "notepad.exe")
    notepad.space.map_new(0x0000004000000000, 40 * 0x1000, user=True)
    m.pool.allocate(NONPAGED_POOL, 0x7000, "VmNp")
    m.pool.allocate(PAGED_POOL, 0x5000, "VmPg")
    return m, Session(LiveTarget(m))


def test_vm_follows_what_the_machine_grew(grown) -> None:
    m, s = grown
    out = run(s, "!vm")
    check_counters(m, out)
    check_table(m, out)
    first = out[out.index(HEADER) + 2]
    notepad = next(p for p in m.processes if p.image == "notepad.exe")
    assert first.split()[:2] == [f"{notepad.pid:x}", "notepad.exe"]
    assert commit(m, notepad) >= 40
    alloc = m.pool.regions[NONPAGED_POOL].alloc
    assert f"{(alloc.next - alloc.base) // 0x1000:>14}" in out[2]


def test_vm_reads_memory_edited_by_the_debugger(grown) -> None:
    """The lines are memory: an edit of nt!MmAvailablePages shows at once."""
    m, s = grown
    run(s, "eq nt!MmAvailablePages 1234")
    out = run(s, "!vm 1")
    assert out[1] == "Available Pages:             4660 (      18640 Kb)"


def test_bad_input_gives_kd_errors(session) -> None:
    assert run(session, "!vm zz") == ["Couldn't resolve error at 'zz'"]
    assert run(session, "!vm 1 2") == ["Syntax error at '2'"]
    assert run(session, "!vm 1; !vm 1") == run(session, "!vm 1") * 2
