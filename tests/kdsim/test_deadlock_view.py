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
