"""Run control: breakpoints are int 3 bytes in memory; stepping; break-in."""

from __future__ import annotations

from machine.scenario import boot_scenario, builtin_scenario


def machine():
    return boot_scenario(builtin_scenario("myfault"))


def test_a_breakpoint_in_driver_code_stops_every_processor_there():
    m = machine()
    target = m.sym("myfault!MyfaultHighIrqlFault")
    original = m.kspace.read(target, 1)
    m.set_breakpoint(target)
    assert m.kspace.read(target, 1) == b"\xcc"  # really in memory
    result = m.run()
    assert result.reason == "breakpoint" and m.bugcheck is None
    proc = m.processors[m.stop.processor]
    assert proc.cpu.rip == target == m.stop.address
    # one instruction (push rbx) executes with the original byte, the int 3 stays put
    sp = proc.cpu.regs[4]
    assert m.step_instruction(proc.number).reason == "step"
    assert proc.cpu.rip == target + len(bytes.fromhex("53"))
    assert proc.cpu.regs[4] == sp - 8
    assert m.kspace.read(target, 1) == b"\xcc"
    m.clear_breakpoint(target)
    assert m.kspace.read(target, 1) == original
    assert m.run().reason == "bugcheck" and m.bugcheck.code == 0xD1


def test_resuming_from_a_breakpoint_runs_on_until_the_next_stop():
    m = machine()
    target = m.sym("myfault!MyfaultHighIrqlFault")
    m.set_breakpoint(target)
    assert m.run().reason == "breakpoint"
    result = m.run()  # steps off the breakpoint, and the driver goes on to crash
    assert result.reason == "bugcheck" and m.bugcheck.code == 0xD1


def test_a_breakpoint_on_a_kernel_routine_stops_before_it_runs():
    m = machine()
    m.set_breakpoint(m.sym("nt!KeBugCheckEx"))
    result = m.run()
    assert result.reason == "breakpoint" and m.bugcheck is None
    assert m.processors[m.stop.processor].cpu.rip == m.sym("nt!KeBugCheckEx")
    assert m.run().reason == "bugcheck"


def test_break_in_stops_before_the_next_step():
    m = machine()
    m.request_break()
    assert m.run().reason == "break"
    assert m.bugcheck is None
