"""`!thread` on the threads of an ABBA deadlock shows the cycle, read from memory."""

from __future__ import annotations

from commands.session import Session
from kdsim.live import LiveTarget
from tests.conftest import run
from tests.machine.probe import boot_probe, start_system_thread
from tests.machine.test_sync import ABBA


def test_thread_shows_each_mutant_wait_and_its_owner():
    m = boot_probe("abba", ABBA, {"MutexA": 0x38, "MutexB": 0x38, "Finished": 8})
    t1 = start_system_thread(m, 0x5000, m.sym("abba!ThreadAB"))
    t2 = start_system_thread(m, 0x5004, m.sym("abba!ThreadBA"))
    m.run(200_000)
    s = Session(LiveTarget(m))
    for me, other, mutex in ((t1, t2, "MutexB"), (t2, t1, "MutexA")):
        out = run(s, f"!thread {me.ethread:x}")
        assert "WAIT: (Executive) KernelMode Non-Alertable" in out[0]
        assert out[1] == (f"    {m.sym('abba!' + mutex):016x}  "
                          f"Mutant - owning thread {other.ethread:016x}")
        stack = "\n".join(out)
        assert "nt!KeWaitForSingleObject+0x233" in stack
        assert "abba!TakeBoth+0x" in stack


def test_analyze_explains_a_dpc_watchdog_violation_by_its_subtype():
    from machine.ke.dpc import queue_dpc
    from machine.types.view import Struct
    from tests.machine.test_watchdogs import GLOBALS, ROUTINES

    m = boot_probe("wd", ROUTINES, GLOBALS)
    dpc = Struct(m.kspace, "_KDPC", m.sym("wd!Dpc"))
    dpc.set("Type", 0x13)
    dpc.set("DeferredRoutine", m.sym("wd!SpinDpc"))
    queue_dpc(m, m.processors[1], dpc.address, 0, 0)
    m.run()
    target = LiveTarget(m)
    s = Session(target, processor=target.stop_processor)
    text = "\n".join(run(s, "!analyze -v"))
    assert "DPC_WATCHDOG_VIOLATION (133)" in text
    assert "Arg1: 0000000000000000, A single DPC or ISR exceeded its time allotment." in text
    assert "Arg3: 0000000000000014, The DPC time allotment (in ticks)." in text
    assert "SYMBOL_NAME:  wd!SpinDpc+" in text
    k = run(s, "k")
    assert k[1].endswith("nt!KeBugCheckEx") and "nt!KeAccumulateTicks+" in k[2]
    assert any("wd!SpinDpc" in row for row in k) and any("nt!KiRetireDpcList" in r for r in k)
