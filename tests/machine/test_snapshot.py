"""Snapshot and restore: the restored machine is the same, byte for byte, and goes on
the same way."""

from __future__ import annotations

from machine.kd.snapshot import memory_digest
from machine.machine import STEPS_PER_TICK
from machine.scenario import boot_scenario, builtin_scenario


def test_restore_gives_the_same_memory_and_the_same_future():
    m = boot_scenario(builtin_scenario("myfault"))
    m.run(STEPS_PER_TICK * 3)
    m.set_breakpoint(m.sym("myfault!MyfaultHighIrqlFault"))
    snap = m.snapshot()
    at_snapshot = memory_digest(m)
    first = m.run()
    assert first.reason == "breakpoint"
    m.clear_breakpoint(m.sym("myfault!MyfaultHighIrqlFault"))
    m.step_instruction(m.stop.processor)
    assert m.run().reason == "bugcheck"
    crashed = memory_digest(m)

    again = snap.restore()
    assert memory_digest(again) == at_snapshot
    assert again.steps == snap.steps
    assert again.run().reason == "breakpoint"
    again.clear_breakpoint(again.sym("myfault!MyfaultHighIrqlFault"))
    again.step_instruction(again.stop.processor)
    assert again.run().reason == "bugcheck"
    assert (again.bugcheck.code, again.bugcheck.params) == (m.bugcheck.code, m.bugcheck.params)
    assert memory_digest(again) == crashed
    # a snapshot of the restored machine restores too
    assert memory_digest(again.snapshot().restore()) == crashed


def test_a_debugger_edit_is_part_of_the_snapshot():
    from kdsim.live import LiveTarget

    m = boot_scenario(builtin_scenario("myfault"))
    m.run(STEPS_PER_TICK * 2)
    target = LiveTarget(m)
    address = m.sym("myfault!MyfaultHighIrqlFault")
    target.write_virtual(address, b"\x90\x90")  # kd: eb myfault!MyfaultHighIrqlFault 90 90
    again = m.snapshot().restore()
    assert again.kspace.read(address, 2) == b"\x90\x90"
    assert memory_digest(again) == memory_digest(m)
