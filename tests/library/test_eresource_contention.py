"""eresource-contention: cfgstore.sys's refresh thread holds an ERESOURCE exclusively
while it waits for an event nobody sets; four programs' threads queue behind it."""

from __future__ import annotations

import pytest

from machine.types.view import Struct
from tests.library import labkit

NAME = "eresource-contention"
RIGHT = ".submit driver=cfgstore routine=cfgstore!CfgReloadSettings cause=lock-contention"
WRONG = ".submit driver=nt routine=ExAcquireResourceSharedLite cause=deadlock"
WAITING, EXECUTIVE, WR_RESOURCE = 5, 0, 27
RESOURCE_EXCLUSIVE = 0x80  # ERESOURCE Flag


@pytest.fixture(scope="module")
def m():
    return labkit.stopped(NAME).machine


def _thread_of(m, image: str) -> int:
    return next(t.ethread for t in m.threads if t.process.image == image)


def _refresh_thread(m) -> int:
    start = m.sym("cfgstore!CfgRefreshWorker")
    return next(t.ethread for t in m.threads
                if Struct(m.kspace, "_ETHREAD", t.ethread).get("Win32StartAddress") == start)


def _returns_into(m, ethread: int, routine: str, size: int = 0x60) -> bool:
    kt = Struct(m.kspace, "_KTHREAD", ethread)
    start = m.sym(routine)
    return any(start < m.kspace.read_u64(a) < start + size
               for a in range(kt.get("KernelStack"), kt.get("InitialStack"), 8))


def _solution(m) -> list[str]:
    return ["!locks", "!stacks 2 cfgstore", f"!thread {_refresh_thread(m):x}",
            f"ln {m.sym('cfgstore!ProviderDone'):x}"]


def test_the_refresh_thread_owns_the_resource_and_waits_for_an_unset_event(m):
    assert m.bugcheck is None
    owner = _refresh_thread(m)
    res = Struct(m.kspace, "_ERESOURCE", m.sym("cfgstore!ConfigLock"))
    assert res.get("OwnerEntry.OwnerThread") == owner and res.get("Flag") & RESOURCE_EXCLUSIVE
    assert res.get("NumberOfSharedWaiters") == 3 and res.get("NumberOfExclusiveWaiters") == 1
    kt = Struct(m.kspace, "_KTHREAD", owner)
    assert kt.get("State") == WAITING and kt.get("WaitReason") == EXECUTIVE
    event = m.sym("cfgstore!ProviderDone")
    assert Struct(m.kspace, "_KWAIT_BLOCK", kt.get("WaitBlockList")).get("Object") == event
    assert Struct(m.kspace, "_DISPATCHER_HEADER", event).get("SignalState") == 0
    assert _returns_into(m, owner, "cfgstore!CfgReloadSettings")
    # The four programs wait for the resource, in the routines that acquire it.
    for image, routine in (("searchindexer.exe", "CfgQueryValue"),
                           ("wuauclt.exe", "CfgQueryValue"),
                           ("systemsettings.exe", "CfgSetValue"),
                           ("taskmgr.exe", "CfgQueryValue")):
        waiter = Struct(m.kspace, "_KTHREAD", _thread_of(m, image))
        assert waiter.get("State") == WAITING and waiter.get("WaitReason") == WR_RESOURCE
        assert _returns_into(m, _thread_of(m, image), f"cfgstore!{routine}")
    assert m.kspace.read_u64(m.sym("cfgstore!Queries")) == 0  # no query ever got through


def test_the_solution_reveals_the_key_and_is_graded(m, tmp_path):
    owner = _refresh_thread(m)
    waiters = [_thread_of(m, image) for image in ("searchindexer.exe", "wuauclt.exe",
                                                  "taskmgr.exe")]
    out = labkit.transcript(NAME, [*_solution(m), RIGHT, WRONG], tmp_path)
    locks, stacks, thread, ln = labkit.outputs(out)[1:5]
    lines = locks.splitlines()
    assert any(line.startswith("Resource @ cfgstore!ConfigLock (") and
               line.endswith("Exclusively owned") for line in lines)
    assert f"     Threads: {owner:016x}-01<*> " in lines
    assert "    NumberOfSharedWaiters = 3" in lines
    assert "    NumberOfExclusiveWaiters = 1" in lines
    shared = lines[lines.index("     Threads Waiting On Shared Access:") + 1]
    assert shared.split() == [f"{w:016x}" for w in waiters]
    assert stacks.count("cfgstore!CfgQueryValue+0x") == 3
    assert "cfgstore!CfgSetValue+0x" in stacks
    assert "WAIT: (Executive) KernelMode Non-Alertable" in thread
    assert f"    {m.sym('cfgstore!ProviderDone'):016x}  NotificationEvent" in thread
    assert "cfgstore!CfgReloadSettings+0x" in thread
    assert "cfgstore!ProviderDone" in ln
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(m, tmp_path):
    assert labkit.transcript(NAME, _solution(m), tmp_path / "a") == \
        labkit.transcript(NAME, _solution(m), tmp_path / "b")


def test_thread_shows_what_each_waiter_waits_on(m, tmp_path):
    """A shared waiter waits on the resource's semaphore (kd prints its limit), an
    exclusive waiter on its synchronization event."""
    res = Struct(m.kspace, "_ERESOURCE", m.sym("cfgstore!ConfigLock"))
    shared, exclusive = res.get("SharedWaiters"), res.get("ExclusiveWaiters")
    waits = {}
    for thread in m.threads:
        kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
        if kt.get("State") == 5 and kt.get("WaitReason") == 27:  # WrResource
            block = kt.get("WaitBlockList")
            waits[thread.ethread] = Struct(m.kspace, "_KWAIT_BLOCK", block).get("Object")
    assert sorted(set(waits.values())) == sorted({shared, exclusive})
    commands = [f"!thread {t:x}" for t in sorted(waits)]
    outs = labkit.outputs(labkit.transcript(NAME, commands, tmp_path))[1:1 + len(commands)]
    for thread, out in zip(sorted(waits), outs, strict=True):
        second = out.splitlines()[1]
        if waits[thread] == shared:
            assert second == f"    {shared:016x}  Semaphore Limit 0x7fffffff"
        else:
            assert second == f"    {exclusive:016x}  SynchronizationEvent"
