"""The DPC watchdog and the clock watchdog stop a hung machine with the bugcheck Windows
raises, on kdsim's documented time scale."""

from __future__ import annotations

from machine.ke.clock import CLOCK_TIMEOUT_TICKS, DPC_TIME_LIMIT, DPC_WATCHDOG_PERIOD
from machine.ke.dpc import queue_dpc
from machine.machine import STEPS_PER_TICK
from machine.types.view import Struct
from tests.machine.probe import boot_probe, start_system_thread

ROUTINES = {
    "SpinDpc": """
dpc_spin:
    pause
    jmp     dpc_spin
""",
    "SpinAtDispatch": """
    mov     eax, 2
    mov     cr8, rax
dispatch_spin:
    pause
    jmp     dispatch_spin
""",
    "SpinAtHigh": """
    mov     eax, 15
    mov     cr8, rax
high_spin:
    pause
    jmp     high_spin
""",
}
GLOBALS = {"Dpc": 0x40}


def test_a_dpc_that_never_returns_is_a_dpc_watchdog_violation_type_0():
    m = boot_probe("wd", ROUTINES, GLOBALS)
    prcb = Struct(m.kspace, "_KPRCB", m.processors[1].prcb)
    assert prcb.get("DpcTimeLimit") == DPC_TIME_LIMIT
    dpc = Struct(m.kspace, "_KDPC", m.sym("wd!Dpc"))
    dpc.set("Type", 0x13)
    dpc.set("DeferredRoutine", m.sym("wd!SpinDpc"))
    queue_dpc(m, m.processors[1], dpc.address, 0, 0)
    result = m.run(STEPS_PER_TICK * (DPC_TIME_LIMIT + 4))
    assert result.reason == "bugcheck"
    assert m.bugcheck.code == 0x133 and m.bugcheck.processor == 1
    p1, count, limit, triage = m.bugcheck.params
    assert (p1, count, limit) == (0, DPC_TIME_LIMIT, DPC_TIME_LIMIT)
    assert m.kspace.read(triage, 4) == (0xAEBECEDE).to_bytes(4, "little")
    assert prcb.get("DpcTimeCount") == DPC_TIME_LIMIT


def test_a_thread_spinning_at_dispatch_level_is_type_1():
    m = boot_probe("wd", ROUTINES, GLOBALS)
    start_system_thread(m, 0x7000, m.sym("wd!SpinAtDispatch"))
    result = m.run(STEPS_PER_TICK * (DPC_WATCHDOG_PERIOD + 4))
    assert result.reason == "bugcheck"
    assert m.bugcheck.code == 0x133
    assert m.bugcheck.params[:2] == (1, DPC_WATCHDOG_PERIOD)


def test_a_processor_that_stops_taking_clock_interrupts_is_a_clock_watchdog_timeout():
    m = boot_probe("wd", ROUTINES, GLOBALS)
    hung = start_system_thread(m, 0x7000, m.sym("wd!SpinAtHigh"))
    result = m.run(STEPS_PER_TICK * (CLOCK_TIMEOUT_TICKS + 4))
    assert result.reason == "bugcheck"
    code, params = m.bugcheck.code, m.bugcheck.params
    cpu = next(p for p in m.processors if p.current is hung)
    assert code == 0x101
    assert params == (CLOCK_TIMEOUT_TICKS, 0, cpu.prcb, cpu.number)
    assert m.bugcheck.processor != cpu.number  # another processor noticed
