"""!locks and !qlocks on machines whose resources and queued spin locks are held, read
back against the machine's own structures."""

from __future__ import annotations

import pytest

from commands.locks_cmds import LOCK_QUEUE_NAMES
from commands.session import Session
from kdsim.live import LiveTarget
from machine.types.view import Struct
from tests.conftest import run
from tests.machine.probe import boot_probe, start_system_thread
from tests.machine.test_exlocks import GLOBALS, ROUTINES


def _session(m) -> Session:
    return Session(LiveTarget(m))


@pytest.fixture(scope="module")
def exclusive_with_shared_waiters():
    """lk!Resource owned exclusively, two threads waiting for shared access."""
    m = boot_probe("lk", ROUTINES, GLOBALS, cpus=2)
    owner = start_system_thread(m, 0xC000, m.sym("lk!Exclusive"))
    m.run(3000)
    waiters = [start_system_thread(m, 0xC004 + 4 * i, m.sym(f"lk!Shared{i + 1}"))
               for i in range(2)]
    m.run(6000)
    return m, owner, waiters


def test_locks_on_the_default_machine_counts_every_resource_on_the_list(session):
    out = run(session, "!locks")
    head = session.nt("ExpSystemResourcesList")
    total = len(session.reader.list_entries(head))
    assert out[0] == "**** DUMP OF ALL RESOURCE OBJECTS ****"
    assert out[1].startswith("KD: Scanning for held locks")
    assert out[-1].startswith(f"{total} total locks")


def test_locks_shows_the_exclusive_owner_and_the_shared_waiters(exclusive_with_shared_waiters):
    m, owner, waiters = exclusive_with_shared_waiters
    res = Struct(m.kspace, "_ERESOURCE", m.sym("lk!Resource"))
    out = run(_session(m), "!locks")
    assert out[:2] == ["**** DUMP OF ALL RESOURCE OBJECTS ****", "KD: Scanning for held locks."]
    assert out[2] == ""
    assert out[3] == (f"Resource @ lk!Resource (0x{res.address:016x})    Exclusively owned")
    assert out[4] == f"    Contention Count = {res.get('ContentionCount')}"
    assert res.get("ContentionCount") == 2
    assert out[5] == f"    NumberOfSharedWaiters = {res.get('NumberOfSharedWaiters')}"
    assert out[6] == f"     Threads: {owner.ethread:016x}-01<*> "
    assert out[7:9] == ["", "     Threads Waiting On Shared Access:"]
    assert out[9] == "              " + "".join(f"{w.ethread:016x}       " for w in waiters)
    assert out[10] == "1 total locks, 1 locks currently held"


def test_locks_with_an_address_shows_that_resource_even_by_symbol(exclusive_with_shared_waiters):
    m, owner, _ = exclusive_with_shared_waiters
    s = _session(m)
    by_name = run(s, "!locks lk!Resource")
    by_addr = run(s, f"!locks {m.sym('lk!Resource'):x}")
    assert by_name == by_addr
    assert by_name[1].endswith("Exclusively owned")
    assert f"{owner.ethread:016x}-01<*>" in by_name[4]
    assert run(s, "!locks nosuch!Thing") == ["Couldn't resolve error at 'nosuch!Thing'"]


def test_locks_shows_shared_owners_and_an_exclusive_waiter():
    m = boot_probe("lk", ROUTINES, GLOBALS, cpus=3)  # the two sharers spin on two of them
    sharers = [start_system_thread(m, 0xC004 + 4 * i, m.sym(f"lk!Shared{i + 1}"))
               for i in range(2)]
    m.run(3000)
    writer = start_system_thread(m, 0xC000, m.sym("lk!Exclusive"))
    m.run(6000)
    res = Struct(m.kspace, "_ERESOURCE", m.sym("lk!Resource"))
    assert res.get("NumberOfExclusiveWaiters") == 1
    out = run(_session(m), "!locks")
    assert out[3].endswith("    Shared 2 owning threads")
    assert "    NumberOfExclusiveWaiters = 1" in out
    threads = next(line for line in out if line.startswith("     Threads: "))
    assert threads == "     Threads: " + "".join(f"{t.ethread:016x}-01<*> " for t in sharers)
    i = out.index("     Threads Waiting On Exclusive Access:")
    assert out[i + 1] == f"              {writer.ethread:016x}       "


def test_a_released_resource_is_listed_only_with_v_as_available():
    m = boot_probe("lk", ROUTINES, GLOBALS, cpus=2)
    start_system_thread(m, 0xC000, m.sym("lk!Exclusive"))
    m.run(3000)
    m.kspace.write_u64(m.sym("lk!Release"), 1)
    m.run(6000)
    s = _session(m)
    plain = run(s, "!locks")
    assert plain[-1] == "1 total locks"
    assert not any(line.startswith("Resource @") for line in plain)
    verbose = run(s, "!locks -v")
    assert f"Resource @ lk!Resource (0x{m.sym('lk!Resource'):016x})    Available" in verbose
    assert not any("Threads:" in line for line in verbose)


# -- !qlocks --------------------------------------------------------------------------------

HOLD_CANCEL = """
    sub     rsp, 28h
    lea     rcx, [Irql{n}]
    call    nt!IoAcquireCancelSpinLock
    lock inc qword ptr [Held]
c{n}_spin:
    pause
    jmp     c{n}_spin
"""


def test_qlocks_on_the_default_machine_has_one_column_per_processor(session):
    out = run(session, "!qlocks")
    n = session.target.processor_count
    assert out[0] == "Key: O = Owner, 1-n = Wait order, blank = not owned/waiting, C = Corrupt"
    assert out[2] == " " * 23 + "Processor Number"
    assert out[3] == "    Lock Name       " + "".join(f"{i:>3}" for i in range(n))
    assert out[5] == "KE   - Dispatcher   " + "   " * n
    assert out[12].startswith("IO   - Cancel")
    assert len(out) == 5 + 16


def test_qlocks_shows_the_cancel_lock_owner_and_its_waiter():
    routines = {f"Hold{n}": HOLD_CANCEL.format(n=n) for n in (1, 2)}
    m = boot_probe("ql", routines, {"Irql1": 8, "Irql2": 8, "Held": 8}, cpus=3)
    first = start_system_thread(m, 0xD004, m.sym("ql!Hold1"))
    Struct(m.kspace, "_KTHREAD", first.ethread).set("Affinity.Mask", 1 << 2)
    m.run(2000)
    second = start_system_thread(m, 0xD008, m.sym("ql!Hold2"))
    Struct(m.kspace, "_KTHREAD", second.ethread).set("Affinity.Mask", 1 << 0)
    m.run(2000)
    assert m.kspace.read_u64(m.sym("ql!Held")) == 1
    owner_cpu = next(p.number for p in m.processors if p.current is first)
    waiter_cpu = next(p.number for p in m.processors if p.current is second)
    out = run(_session(m), "!qlocks")
    row = next(line for line in out if line.startswith("IO   - Cancel"))
    cells = [row[20 + 3 * i + 2] for i in range(3)]
    assert cells[owner_cpu] == "O" and cells[waiter_cpu] == "1"
    assert [c for i, c in enumerate(cells) if i not in (owner_cpu, waiter_cpu)] == [" "]
    others = [line for line in out[5:] if not line.startswith("IO   - Cancel")]
    assert all(line.rstrip() in LOCK_QUEUE_NAMES for line in others)
