"""`uf` on the default crashed machine and on a driver with loops and jumps: the flow
read from the code bytes in memory, in kd's block layout."""

from __future__ import annotations

import iced_x86 as ix
import pytest

from commands.fmt import addr
from commands.session import Session
from kdsim.live import LiveTarget
from machine.scenario import boot_scenario, parse_scenario
from tests.conftest import run

FLOW = '''[scenario]
name = "flow"
[machine]
cpus = 2
seed = 3
[[driver]]
name = "flowdrv"
entry = "DriverEntry"
[[driver.global]]
name = "Counter"
size = 8
[[driver.routine]]
name = "DriverEntry"
code = """
    xor eax, eax
    ret
"""
[[driver.routine]]
name = "Loop"
code = """
    push rbx
    mov rbx, qword ptr [Counter]
    test rbx, rbx
    je done
again:
    dec rbx
    cmp rbx, 3
    jne again
    call Helper
    jmp done
done:
    pop rbx
    ret
"""
[[driver.routine]]
name = "Helper"
code = """
    call Loop
    ret
"""
'''


@pytest.fixture(scope="module")
def flow_session() -> Session:
    return Session(LiveTarget(boot_scenario(parse_scenario(FLOW, "flow.toml"))))


def _function(s: Session, name: str) -> tuple[int, int]:
    m, f = s.symbols.function_at(s.symbols.address_of(name))
    return m.base + f.rva, f.size


def _decode_all(s: Session, start: int, size: int) -> list[ix.Instruction]:
    code = s.target.read_virtual(start, size)
    return list(ix.Decoder(64, code, ip=start))


def _u_line(s: Session, at: int) -> str:
    return [x for x in run(s, f"u {at:x} L1") if not x.endswith(":")][0]


def test_uf_blocks_follow_the_branches_in_memory(flow_session):
    s = flow_session
    start, size = _function(s, "flowdrv!Loop")
    instrs = _decode_all(s, start, size)
    end = next(i for i in instrs if i.flow_control == ix.FlowControl.RETURN)
    code = [i for i in instrs if i.ip <= end.ip]
    targets = {i.near_branch_target for i in code
               if i.flow_control in (ix.FlowControl.CONDITIONAL_BRANCH,
                                     ix.FlowControl.UNCONDITIONAL_BRANCH)}
    after_jcc = {i.next_ip for i in code if i.flow_control == ix.FlowControl.CONDITIONAL_BRANCH}
    starts = {start} | targets | after_jcc
    want: list[str] = []
    for i in code:
        if i.ip in starts:
            if want:
                want.append("")
            want.append(s.symbols.name_for(i.ip) + ":")
        line = _u_line(s, i.ip)
        if i.flow_control in (ix.FlowControl.CONDITIONAL_BRANCH,
                                                ix.FlowControl.UNCONDITIONAL_BRANCH):
            line += "  Branch"
        want.append(line)
    out = run(s, "uf flowdrv!Loop")
    assert out == want
    assert out[0] == "flowdrv!Loop:" and sum(1 for x in out if x.endswith("  Branch")) == 3
    # from the middle of the function: the same whole function
    assert run(s, f"uf flowdrv!Loop+{size // 2:x}") == out


def test_uf_c_lists_the_calls_with_their_targets(flow_session):
    s = flow_session
    start, size = _function(s, "flowdrv!Loop")
    calls = [i for i in _decode_all(s, start, size) if i.flow_control == ix.FlowControl.CALL]
    calls = calls[:1]  # code after the ret is not reached
    out = run(s, "uf /c flowdrv!Loop")
    assert out[0] == f"flowdrv!Loop ({addr(start)})"
    assert out[1:] == [
        f"  {s.symbols.name_for(calls[0].ip)} ({addr(calls[0].ip)}):",
        f"    call to {s.symbols.name_for(calls[0].near_branch_target)} "
        f"({addr(calls[0].near_branch_target)})"]
    assert out[2] == f"    call to flowdrv!Helper ({addr(s.symbols.address_of('flowdrv!Helper'))})"
    helper = run(s, "uf /c flowdrv!Helper")
    assert helper[2].startswith("    call to flowdrv!Loop (")
    assert run(s, "uf /o flowdrv!Loop") == run(s, "uf flowdrv!Loop")


@pytest.mark.parametrize("name", ["myfault!MyfaultHighIrqlFault", "myfault!DriverEntry",
                                  "myfault!MyfaultDeviceControl", "hal!HalRequestSoftwareInterrupt",
                                  "nt!KiBugCheckDispatch"])
def test_uf_straight_functions_match_u_to_the_first_stop(session, name):
    start, size = _function(session, name)
    stop = (ix.FlowControl.RETURN, ix.FlowControl.INTERRUPT, ix.FlowControl.INDIRECT_BRANCH)
    code = []
    for i in _decode_all(session, start, size):
        code.append(i)
        if i.flow_control in stop:
            break
    out = run(session, f"uf {name}")
    assert out[0] == f"{name}:"
    assert out[1:] == [_u_line(session, i.ip) for i in code]
    calls = [i for i in code if i.flow_control == ix.FlowControl.CALL]
    c = run(session, f"uf /c {name}")
    assert len(c) == 1 + 2 * len(calls)
    for n, i in enumerate(calls):
        assert c[1 + 2 * n] == f"  {session.symbols.name_for(i.ip)} ({addr(i.ip)}):"


def test_uf_errors(session):
    assert run(session, "uf 0") == ["No code found, aborting"]
    assert run(session, "uf") == ["Numeric expression missing from '<EOL>'"]
    assert run(session, "uf /x nt!KeBugCheckEx") == ["Syntax error at '/x nt!KeBugCheckEx'"]
    assert run(session, "uf nosuch!Thing") == ["Couldn't resolve error at 'nosuch!Thing'"]
