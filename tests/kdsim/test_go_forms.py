"""The go forms: `g = StartAddress [BreakAddress ...]`, `gh`, `gn`/`gN` (the same as g on
a kernel target) and `gc` (resume a breakpoint's run in its own fashion), on a live probe
machine whose system thread loops."""

from __future__ import annotations

import pytest
from iced_x86 import Decoder, Mnemonic

from commands.session import Session
from kdsim.live import LiveTarget
from tests.conftest import run
from tests.machine.probe import boot_probe, start_system_thread

ROUTINES = {
    "Looper": """
    xor     ebx, ebx
l_loop:
    inc     rbx
    mov     qword ptr [Counter], rbx
    mov     rcx, rbx
    call    Leaf
    jmp     l_loop
""",
    "Leaf": """
    mov     qword ptr [Other], rcx
    ret
""",
}
GLOBALS = {"Counter": 8, "Other": 8}


def live() -> tuple[object, Session]:
    m = boot_probe("gf", ROUTINES, GLOBALS)
    start_system_thread(m, 0x4000, m.sym("gf!Looper"))
    target = LiveTarget(m)
    s = Session(target, processor=target.stop_processor)
    s.run_budget = 200_000
    return m, s


def rip(m, s) -> int:
    return m.processors[s.processor].cpu.rip


def rbx(m, s) -> int:
    return m.processors[s.processor].cpu.regs[3]


def counter(m) -> int:
    return int.from_bytes(m.kspace.read(m.sym("gf!Counter"), 8), "little")


def test_g_with_a_start_address_resumes_the_processor_there():
    m, s = live()
    run(s, "g gf!Leaf")
    run(s, "g gf!Leaf")
    assert rip(m, s) == m.sym("gf!Leaf") and rbx(m, s) == 2
    # back to the start of Looper: `xor ebx, ebx` runs again, so rbx restarts at 1
    loop = m.sym("gf!Looper") + 2
    out = run(s, "g = gf!Looper gf!Looper+2")
    assert rip(m, s) == loop and rbx(m, s) == 0
    assert out[-2] == "gf!Looper+0x2:"
    run(s, "g gf!Leaf")
    assert rbx(m, s) == 1 and counter(m) == 1
    # `=` with no blank, and several break addresses: the first one reached stops it
    out = run(s, "g=gf!Looper gf!Leaf gf!Looper+2")
    assert rip(m, s) == loop and "Breakpoint" not in out[0]


@pytest.mark.parametrize("name", ["gh", "gn", "gN", "g", "gc"])
def test_handled_and_not_handled_go_run_as_g_on_a_kernel_target(name):
    m, s = live()
    run(s, "bp gf!Leaf")
    out = run(s, name)
    assert out[0] == "Breakpoint 0 hit" and rip(m, s) == m.sym("gf!Leaf")
    out = run(s, name)
    assert out[0] == "Breakpoint 0 hit" and rbx(m, s) == 2


@pytest.mark.parametrize("name", ["gh", "gn", "gN"])
def test_handled_and_not_handled_go_take_start_and_break_addresses(name):
    m, s = live()
    run(s, "g gf!Leaf")
    run(s, f"{name} =gf!Looper gf!Looper+2")
    assert rip(m, s) == m.sym("gf!Looper") + 2 and rbx(m, s) == 0


@pytest.mark.parametrize("resume", ["gc", "g", "gh", "gn"])
def test_a_go_in_a_command_string_resumes_and_the_run_stops_later(resume):
    m, s = live()
    run(s, "ba w8 gf!Counter 3")
    run(s, f'bp gf!Leaf "r rcx; {resume}"')
    out = run(s, "g")
    # two calls of Leaf (rcx 1 and 2) logged before the third store to Counter
    assert [line for line in out if line.startswith("rcx=")] == [
        "rcx=0000000000000001", "rcx=0000000000000002"]
    assert "Breakpoint 0 hit" in out and out.count("Breakpoint 1 hit") == 2
    assert out[-3] == "Breakpoint 0 hit" and counter(m) == 3


def jmp_back(m) -> int:
    """The address of Looper's `jmp l_loop`, reached only after Leaf returns."""
    start = m.sym("gf!Looper")
    return next(i.ip for i in Decoder(64, m.kspace.read(start, 0x20), ip=start)
                if i.mnemonic == Mnemonic.JMP)


def test_gc_resumes_a_go_with_its_break_addresses():
    m, s = live()
    target = jmp_back(m)
    run(s, 'bp gf!Leaf "gc"')
    out = run(s, f"g = gf!Looper {target:#x}")
    # one hit of Leaf (its text), then the stop at the break address, unnumbered
    assert out.count("Breakpoint 0 hit") == 1 and out[0] == "Breakpoint 0 hit"
    assert out[-2] == "gf!Looper+0x14:" == f"gf!Looper+{target - m.sym('gf!Looper'):#x}:"
    assert rip(m, s) == target and rbx(m, s) == 1


def test_g_in_a_command_string_drops_the_break_addresses():
    m, s = live()
    run(s, 'bp gf!Leaf "g"')
    out = run(s, f"g = gf!Looper {jmp_back(m):#x}")
    # the break address is never reached: Leaf is hit on every loop until the budget
    assert out.count("Breakpoint 0 hit") > 2
    assert any(line.startswith("kdsim: the target ran") for line in out)


def test_eleven_break_addresses_are_too_many():
    m, s = live()
    line = "g " + " ".join(["gf!Leaf"] * 11)
    assert run(s, line) == [" " * (len(s.prompt) + len(line) - 7)
                            + f"^ List size error in '{line}'"]
    assert rip(m, s) != m.sym("gf!Leaf")


def test_gc_takes_no_arguments_and_bad_start_addresses_are_reported():
    m, s = live()
    before = rip(m, s)
    assert run(s, "gc 1")[0].endswith("^ Syntax error in 'gc 1'")
    assert run(s, "g = nosuch!X") == ["Couldn't resolve error at 'nosuch!X'"]
    assert rip(m, s) == before
