"""myfault-breakpoint: an int 3 left in driver code, with no debugger to take it (0x1E)."""

from __future__ import annotations

from machine.types.view import Struct
from tests.library import labkit

NAME = "myfault-breakpoint"
RIGHT = ".submit bugcheck=0x1E driver=myfault.sys routine=MyfaultValidateRequest " \
        "cause=breakpoint"
WRONG = ".submit bugcheck=0x3B driver=nt routine=KiBreakpointTrap cause=null-deref"
STATUS_BREAKPOINT = 0x80000003


def _stopped():
    m = labkit.stopped(NAME).machine
    assert m.bugcheck is not None
    return m


def _trap_frame(m) -> Struct:
    """The trap frame KiBreakpointTrap saved: the context of the int 3."""
    thread = m.processors[m.bugcheck.processor].current
    frame = next(f for f in thread.native if f.spec.name == "KiBreakpointTrap")
    return Struct(m.kspace, "_KTRAP_FRAME", frame.extra["tf"])


def solution(m) -> list[str]:
    """What a trainee types: the analysis, the stack, the code just before Arg2."""
    return ["!analyze -v", "k", f"ub {m.bugcheck.params[1]:x} L4", "!error 80000003",
            "!irql"]


def test_it_stops_with_0x1e_for_the_int_3_in_myfault_validate_request():
    m = _stopped()
    code, (status, address, info0, info1) = m.bugcheck.code, m.bugcheck.params
    assert code == 0x1E
    assert status == STATUS_BREAKPOINT  # the exception code that was not handled
    routine = m.sym("myfault!MyfaultValidateRequest")
    # the exception address: a trap reports the instruction after the int 3
    assert routine < address < routine + 0x80
    assert m.kspace.read(address - 1, 1) == b"\xcc"
    assert (info0, info1) == (0, 0)  # a breakpoint's exception record has no parameters
    tf = _trap_frame(m)
    assert tf.get("Rip") == address
    assert tf.get("PreviousIrql") == 2  # raised to DISPATCH_LEVEL by the request lock
    assert m.kspace.read_u64(m.sym("myfault!RequestLock")) != 0  # still held
    assert int.from_bytes(m.kspace.read(m.sym("myfault!LastCode"), 4), "little") == 0x222017


def test_the_solution_reveals_the_key_and_is_graded(tmp_path):
    m = _stopped()
    out = labkit.transcript(NAME, [*solution(m), RIGHT, WRONG], tmp_path)
    parts = labkit.outputs(out)
    assert "KMODE_EXCEPTION_NOT_HANDLED (1e)" in out
    assert "Arg1: 0000000080000003," in out  # STATUS_BREAKPOINT
    assert "SYMBOL_NAME:  myfault!MyfaultValidateRequest+" in out
    assert "IMAGE_NAME:  myfault.sys" in out
    assert "nt!KiBreakpointTrap+" in parts[2]  # k: the trap, over the driver's frame
    assert "myfault!MyfaultValidateRequest+" in parts[2]
    ub = parts[3].splitlines()
    assert ub[-1].split()[-2:] == ["int", "3"]  # the instruction just before Arg2
    assert "Breakpoint" in parts[4]  # !error 80000003
    assert "-- 2 (DISPATCH_LEVEL)" in parts[5]  # !irql: the IRQL when it stopped
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(tmp_path):
    commands = solution(_stopped())
    assert labkit.transcript(NAME, commands, tmp_path / "a") == \
        labkit.transcript(NAME, commands, tmp_path / "b")
