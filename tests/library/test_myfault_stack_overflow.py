"""myfault-stack-overflow: unbounded recursion runs off the kernel stack (0x7F, trap 8)."""

from __future__ import annotations

from machine.types.view import Struct
from tests.library import labkit

NAME = "myfault-stack-overflow"
RIGHT = ".submit bugcheck=0x7F driver=myfault.sys routine=MyfaultSumChain " \
        "cause=stack-overflow"
WRONG = ".submit bugcheck=0x50 driver=nt routine=KiDoubleFaultAbort cause=null-deref"
EXCEPTION_DOUBLE_FAULT = 8


def _stopped():
    m = labkit.stopped(NAME).machine
    assert m.bugcheck is not None
    return m


def _double_fault_frame(m) -> dict[str, int]:
    """The frame the processor pushed on the double-fault stack: error code, then the
    context of the instruction that could not be run."""
    top = m.processors[m.bugcheck.processor].double_fault_stack
    names = ("ErrorCode", "Rip", "SegCs", "EFlags", "Rsp", "SegSs")
    return {n: m.kspace.read_u64(top - 48 + 8 * i) for i, n in enumerate(names)}


def solution(m) -> list[str]:
    """The analysis, then the faulting context (the trap frame on the double-fault stack
    that !analyze names), its deep stack, and the thread's stack limits."""
    rsp = m.processors[m.bugcheck.processor].cpu.regs[4]
    return ["!analyze -v", "k", f".trap {rsp:x}", "kc 200", "!thread"]


def test_it_stops_with_0x7f_double_fault_after_the_recursion_ran_past_the_stack_limit():
    m = _stopped()
    assert m.bugcheck.code == 0x7F
    assert m.bugcheck.params == (EXCEPTION_DOUBLE_FAULT, 0, 0, 0)  # P2-P4 reserved
    thread = m.processors[m.bugcheck.processor].current
    assert thread.process.image == "notmyfault64.exe"
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    limit, base = kt.get("StackLimit"), kt.get("StackBase")
    fault = _double_fault_frame(m)
    routine = m.sym("myfault!MyfaultSumChain")
    assert routine <= fault["Rip"] < routine + 0x60  # the recursive call
    assert fault["Rsp"] < limit  # the frame ran below the end of the stack
    assert not limit <= m.processors[m.bugcheck.processor].cpu.regs[4] < base
    # The stack above is MyfaultSumChain frames all the way up: count its return addresses.
    returns = [m.kspace.read_u64(a) for a in range(limit, base - 0x1000, 8)]
    assert sum(routine < r < routine + 0x60 for r in returns) > 200
    # The chain it walked is circular: it never reaches NULL.
    first = m.sym("myfault!Descriptors")
    node = first
    for _ in range(4):
        node = m.kspace.read_u64(node)
    assert node == first


def test_the_solution_reveals_the_key_and_is_graded(tmp_path):
    m = _stopped()
    out = labkit.transcript(NAME, [*solution(m), RIGHT, WRONG], tmp_path)
    parts = labkit.outputs(out)
    assert "UNEXPECTED_KERNEL_MODE_TRAP (7f)" in out
    assert "Arg1: 0000000000000008," in out  # the trap: a double fault
    assert "SYMBOL_NAME:  myfault!MyfaultSumChain+" in out
    assert "IMAGE_NAME:  myfault.sys" in out
    assert "nt!KiDoubleFaultAbort" in parts[2]  # k: only the double-fault handler
    assert "myfault!MyfaultSumChain+0x" in parts[3]  # .trap: the faulting call
    frames = parts[4].splitlines()
    assert sum(line.endswith("myfault!MyfaultSumChain") for line in frames) > 200
    assert any(line.endswith("myfault!MyfaultDispatchIoctl") for line in frames)
    thread = parts[5]
    assert "Image:         notmyfault64.exe" in thread
    limit = next(line for line in thread.splitlines() if line.startswith("Base "))
    trap_rsp = next(w for w in parts[3].split() if w.startswith("rsp="))[4:]
    assert int(trap_rsp, 16) < int(limit.split()[3], 16)  # rsp below the stack's Limit
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(tmp_path):
    commands = solution(_stopped())
    assert labkit.transcript(NAME, commands, tmp_path / "a") == \
        labkit.transcript(NAME, commands, tmp_path / "b")
