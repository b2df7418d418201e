"""!stacks: every thread by process, the blocker frame, the detail levels and the filter,
checked against the threads and stacks the machine holds."""

from __future__ import annotations

import re

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from machine.types.view import Struct
from tests.conftest import run
from tests.machine.probe import boot_probe, start_system_thread
from tests.machine.test_sync import ABBA

ROW = re.compile(r"^( {0,3}[0-9a-f]{1,4})\.([0-9a-f]{6})  ([0-9a-f]{16}) ([0-9a-f]{7,8}) "
                 r"(\S+) +(\S.*)$")


def _rows(out: list[str]) -> list[re.Match]:
    return [m for m in map(ROW.match, out) if m]


@pytest.fixture(scope="module")
def deadlock():
    m = boot_probe("abba", ABBA, {"MutexA": 0x38, "MutexB": 0x38, "Finished": 8})
    t1 = start_system_thread(m, 0x5000, m.sym("abba!ThreadAB"))
    t2 = start_system_thread(m, 0x5004, m.sym("abba!ThreadBA"))
    m.run(200_000)
    return m, (t1, t2)


def test_stacks_lists_every_thread_of_every_process_idle_first(session):
    out = run(session, "!stacks")
    assert out[0] == "Proc.Thread  .Thread  Ticks   ThreadState Blocker"
    r = session.reader
    idle = r.u64(session.nt("PsIdleProcess"))
    assert out[1] == " " * 28 + f"[{idle:016x} Idle]"
    off = r.offset("_ETHREAD", "ThreadListEntry")
    heads = [idle] + [e - r.offset("_EPROCESS", "ActiveProcessLinks")
                      for e in r.list_entries(session.nt("PsActiveProcessHead"))]
    expected = [e - off for ep in heads
                for e in r.list_entries(ep + r.offset("_EPROCESS", "ThreadListHead"))]
    assert [int(m.group(3), 16) for m in _rows(out)] == expected
    assert out[-2:] == ["", f"Threads Processed: {len(expected)}"]
    headers = [line.strip() for line in out if line.startswith(" " * 28 + "[")]
    assert len(headers) == len(heads)


def test_stacks_row_fields_come_from_the_thread(session):
    out = run(session, "!stacks")
    now = session.reader.u64(session.nt("KeTickCount")) & 0xFFFFFFFF
    crashing = session.current_thread()
    for m in _rows(out):
        et = int(m.group(3), 16)
        r = session.reader
        assert int(m.group(1), 16) == r.field("_ETHREAD", et, "Cid.UniqueProcess")
        assert int(m.group(2), 16) == r.field("_ETHREAD", et, "Cid.UniqueThread")
        assert int(m.group(4), 16) == (now - r.field("_ETHREAD", et, "Tcb.WaitTime")) & 0xFFFFFFFF
        state = r.field("_ETHREAD", et, "Tcb.State")
        assert m.group(5) == {1: "READY", 2: "RUNNING", 5: "Blocked"}[state]
    row = next(line for line in out if f"{crashing:016x}" in line)
    assert row.endswith(" RUNNING    nt!KeBugCheckEx")
    assert row[:4] == f"{session.reader.field('_ETHREAD', crashing, 'Cid.UniqueProcess'):4x}"


def test_stacks_2_prints_the_whole_stack_as_k_unwinds_it(session):
    out = run(session, "!stacks 2 myfault")
    rows = _rows(out)
    assert len(rows) == 1
    i = out.index(rows[0].group(0))
    k = run(session, "kc")[1:]
    frames = [rows[0].group(6)] + [line.strip() for line in out[i + 1:-2]]
    assert all(line.startswith(" " * 40) and line[40] != " " for line in out[i + 1:-2])
    sites = [f.split(" ", 1)[1] for f in k]
    assert [f.split("+")[0] for f in frames[:len(sites) - 1]] == sites[:-1]
    assert "myfault!MyfaultHighIrqlFault+0x1a" in frames


def test_stacks_filter_keeps_process_headers_and_matching_threads_only(session):
    out = run(session, "!stacks 0 MYFAULT")
    assert len(_rows(out)) == 1 and "RUNNING    nt!KeBugCheckEx" in _rows(out)[0].group(0)
    assert sum(line.startswith(" " * 28 + "[") for line in out) == len(
        [line for line in run(session, "!stacks") if line.startswith(" " * 28 + "[")])
    assert _rows(run(session, "!stacks 0 no_such_frame")) == []
    assert run(session, "!stacks 7") == ["Invalid detail level 7"]
    assert run(session, "!stacks zz") == ["Couldn't resolve error at 'zz'"]


def test_stacks_shows_where_each_deadlocked_thread_is_blocked(deadlock):
    m, threads = deadlock
    s = Session(LiveTarget(m))
    out = run(s, "!stacks 0 abba")
    rows = {int(r.group(3), 16): r for r in _rows(out)}
    assert set(rows) == {t.ethread for t in threads}
    for t in threads:
        row = rows[t.ethread]
        assert row.group(5) == "Blocked"
        assert row.group(6).startswith("abba!TakeBoth+0x")
        assert Struct(m.kspace, "_KTHREAD", t.ethread).get("State") == 5
        assert int(row.group(2), 16) == t.tid
    full = run(s, "!stacks 2 abba")
    first = next(r for r in _rows(full))
    assert not first.group(6).startswith("abba!")  # detail 2 starts at the innermost frame
    assert any(line.strip().startswith("abba!TakeBoth+0x") for line in full)
