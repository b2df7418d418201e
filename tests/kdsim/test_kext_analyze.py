"""!analyze -show with parameters and !analyze -hang on machines with blocked threads."""

from __future__ import annotations

from commands.session import Session
from kdsim.live import LiveTarget
from machine.types.view import Struct
from tests.conftest import run
from tests.machine.probe import boot_probe, start_system_thread
from tests.machine.test_exlocks import GLOBALS, ROUTINES
from tests.machine.test_sync import ABBA


def test_show_names_the_code_and_each_parameter_meaning(session):
    out = run(session, "!analyze -show d1 ffff800012345678 2 1 fffff80512345678")
    assert out[0] == "DRIVER_IRQL_NOT_LESS_OR_EQUAL (d1)"
    args = out[out.index("Arguments:") + 1:]
    assert args[0] == "Arg1: ffff800012345678, Memory referenced."
    assert args[1] == "Arg2: 0000000000000002, IRQL at time of reference."
    assert args[2].startswith("Arg3: 0000000000000001, 0 - Read; 1 - Write")
    assert any(a.startswith("Arg4: fffff80512345678, Address that referenced memory") for a in args)


def test_show_picks_the_meanings_of_the_subtype_parameter_1_names(session):
    single = run(session, "!analyze -show 133 0 14 500 0")
    cumulative = run(session, "!analyze -show 133 1 1e00 0 0")
    assert single[0] == cumulative[0] == "DPC_WATCHDOG_VIOLATION (133)"
    text = "\n".join(line.replace("\t", "") for line in single)
    assert "Arg1: 0000000000000000, A single DPC or ISR exceeded its time allotment." in text
    assert single[single.index("Arguments:") + 1:] != cumulative[cumulative.index("Arguments:")
                                                                 + 1:]
    code_only = run(session, "!analyze -show 0xD1")
    assert "Arg1: 0000000000000000, Memory referenced." in code_only


def test_show_rejects_unknown_codes_and_missing_input(session):
    assert run(session, "!analyze -show 9999") == ["Unknown bugcheck code (9999)"]
    assert run(session, "!analyze -show") == ["Numeric expression missing from '<EOL>'"]
    assert run(session, "!analyze -show d1 1 2 3 4 5") == ["Syntax error at '5'"]


def test_hang_on_the_crashed_default_machine_finds_no_blocked_thread(session):
    out = run(session, "!analyze -hang")
    assert out[-1] == "No blocked thread waiting on a held lock was found."
    assert "Debugging Details:" in out


def test_hang_reports_the_resource_its_owner_and_the_blocked_thread():
    m = boot_probe("lk", ROUTINES, GLOBALS, cpus=2)
    owner = start_system_thread(m, 0xC000, m.sym("lk!Exclusive"))
    m.run(3000)
    waiter = start_system_thread(m, 0xC004, m.sym("lk!Shared1"))
    m.run(6000)
    s = Session(LiveTarget(m))
    out = run(s, "!analyze -hang")
    res = m.sym("lk!Resource")
    i = out.index(f"LOCK_ADDRESS:  {res:016x} -- (!locks {res:016x})")
    assert out[i + 2] == f"Resource @ lk!Resource (0x{res:016x})    Exclusively owned"
    assert f"BLOCKING_THREAD:  {owner.ethread:016x}" in out
    assert f"BLOCKED_THREAD:  {waiter.ethread:016x}" in out
    assert "PROCESS_NAME:  System" in out
    stack = out[out.index("STACK_TEXT:  ") + 1:]
    assert any(row.endswith("nt!ExAcquireResourceSharedLite+0xc3") for row in stack)
    assert "SYMBOL_NAME:  lk!Shared1+0x12" in out and "IMAGE_NAME:  lk.sys" in out


def test_hang_follows_a_mutant_wait_to_its_owner():
    m = boot_probe("abba", ABBA, {"MutexA": 0x38, "MutexB": 0x38, "Finished": 8})
    t1 = start_system_thread(m, 0x5000, m.sym("abba!ThreadAB"))
    start_system_thread(m, 0x5004, m.sym("abba!ThreadBA"))
    m.run(200_000)
    out = run(Session(LiveTarget(m)), "!analyze -hang")
    blocked = int(next(x for x in out if x.startswith("BLOCKED_THREAD:")).split()[-1], 16)
    lock = int(next(x for x in out if x.startswith("LOCK_ADDRESS:")).split()[-1], 16)
    owner = int(next(x for x in out if x.startswith("BLOCKING_THREAD:")).split()[-1], 16)
    assert Struct(m.kspace, "_KMUTANT", lock).get("OwnerThread") == owner != blocked
    kt = Struct(m.kspace, "_KTHREAD", blocked)
    assert Struct(m.kspace, "_KWAIT_BLOCK", kt.get("WaitBlockList")).get("Object") == lock
    assert blocked == t1.ethread and lock == m.sym("abba!MutexB")
    assert any(x.startswith("SYMBOL_NAME:  abba!TakeBoth+0x") for x in out)


def test_hang_follows_a_fast_mutex_wait_to_its_owner():
    m = boot_probe("lk", ROUTINES, GLOBALS, cpus=2)
    holder = start_system_thread(m, 0xC000, m.sym("lk!MutexHolder"))
    m.run(3000)
    waiter = start_system_thread(m, 0xC004, m.sym("lk!MutexWaiter"))
    m.run(6000)
    out = run(Session(LiveTarget(m)), "!analyze -hang")
    assert f"LOCK_ADDRESS:  {m.sym('lk!Mutex'):016x}" in out
    assert f"BLOCKING_THREAD:  {holder.ethread:016x}" in out
    assert f"BLOCKED_THREAD:  {waiter.ethread:016x}" in out
