"""`r` with assignments and the kernel pseudo-registers, on a private crashed machine
(register edits change it, so the shared one stays untouched)."""

from __future__ import annotations

import pytest

from commands.session import Session
from kdsim.app import App
from machine.kd.snapshot import Snapshot
from machine.scenario import builtin_scenario
from machine.types.view import Struct
from tests.conftest import run


@pytest.fixture(scope="module")
def app() -> App:
    return App.start(builtin_scenario("myfault"))


@pytest.fixture()
def s(app: App) -> Session:
    return Session(app.target, processor=app.target.stop_processor)


def cpu(app: App, s: Session):
    return app.machine.processors[s.processor].cpu


def test_assign_full_register_changes_the_processor(app: App, s: Session) -> None:
    old = cpu(app, s).regs[0]
    assert run(s, "r rax=5") == []
    assert cpu(app, s).regs[0] == 5
    assert run(s, "r rax") == ["rax=0000000000000005"]
    run(s, f"r rax={old:x}")
    assert cpu(app, s).regs[0] == old


def test_assignment_forms_and_expressions(app: App, s: Session) -> None:
    old_rcx = cpu(app, s).regs[1]
    run(s, "r @rcx = rcx+1")
    assert cpu(app, s).regs[1] == (old_rcx + 1) & (1 << 64) - 1
    rsp = cpu(app, s).regs[4]
    top = int.from_bytes(app.target.read_virtual(rsp, 8), "little")
    run(s, "r $t0 = poi(rsp)")
    assert s.pseudo["$t0"] == top
    assert run(s, "r $t0") == [f"$t0={top:016x}"]
    run(s, f"r rcx={old_rcx:x}")


def test_sub_register_write_keeps_the_other_bits(app: App, s: Session) -> None:
    c = cpu(app, s)
    old = c.regs[0]
    run(s, "r rax=1122334455667788")
    run(s, "r al=ff")
    run(s, "r ah=0")
    assert c.regs[0] == 0x11223344556600FF
    run(s, "r eax=1")
    assert c.regs[0] == 0x1122334400000001
    assert run(s, "r eax") == ["eax=00000001"]
    assert run(s, "r ax, al") == ["ax=0001 al=01"]
    c.regs[0] = old


def test_several_registers_separated_by_commas(app: App, s: Session) -> None:
    c = cpu(app, s)
    assert run(s, "r rax, rbx") == [f"rax={c.regs[0]:016x} rbx={c.regs[3]:016x}"]
    assert run(s, "r $t1=1, $t2=2") == []
    assert (s.pseudo["$t1"], s.pseudo["$t2"]) == (1, 2)
    assert run(s, "r $t1, $t2") == ["$t1=0000000000000001 $t2=0000000000000002"]
    assert run(s, "r efl") == [f"efl={c.rflags:08x}"]


def test_temps_start_at_zero_and_are_per_session(app: App, s: Session) -> None:
    assert run(s, "r $t19") == ["$t19=0000000000000000"]
    run(s, "r $t19=7")
    other = Session(app.target, processor=s.processor)
    assert run(other, "? $t19") == ["Evaluate expression: 0 = 00000000`00000000"]
    assert run(s, "? @$t19+1") == ["Evaluate expression: 8 = 00000000`00000008"]


def test_bad_register_names(s: Session) -> None:
    assert run(s, "r foo") == ["Bad register error at 'foo'"]
    assert run(s, "r foo=1") == ["Bad register error at 'foo=1'"]
    assert run(s, "r rax, nope") == ["Bad register error at 'nope'"]
    assert run(s, "r $t20=1") == ["Bad register error at '$t20=1'"]
    assert run(s, "r $proc=1") == ["Bad register error at '$proc=1'"]
    assert run(s, "r rax=") == ["Numeric expression missing from '<EOL>'"]


def test_register_edit_is_journaled_for_snapshots(app: App, s: Session) -> None:
    c = cpu(app, s)
    old = c.regs[2]
    run(s, "r rdx=abcdef")
    snap = app.machine.snapshot()
    assert isinstance(snap, Snapshot)
    restored = snap.restore()
    assert restored.processors[s.processor].cpu.regs[2] == 0xABCDEF
    run(s, f"r rdx={old:x}")


def test_trap_context_edit_changes_the_context_not_the_processor(app: App,
                                                                   s: Session) -> None:
    c = cpu(app, s)
    rsp = c.regs[4]
    s.scope = type("Scope", (), {})()  # any context object with registers
    s.scope.registers = dict(app.target.registers(s.processor))
    run(s, "r rsp=1234")
    assert s.registers()["rsp"] == 0x1234 and c.regs[4] == rsp


def test_kernel_pseudo_registers(app: App, s: Session) -> None:
    m = app.machine
    thread = s.current_thread()
    process = s.current_process()
    et = Struct(m.kspace, "_ETHREAD", thread)
    ep = Struct(m.kspace, "_EPROCESS", process)
    assert s.evaluate("@$tid") == et.get("Cid.UniqueThread")
    assert s.evaluate("@$tpid") == ep.get("UniqueProcessId")
    assert s.evaluate("@$peb") == ep.get("Peb")
    assert s.evaluate("@$teb") == Struct(m.kspace, "_KTHREAD", thread).get("Teb")
    assert s.evaluate("@$ptrsize") == 8 and s.evaluate("@$pagesize") == 0x1000
    assert s.evaluate("@$retreg") == s.evaluate("@$retreg64") == cpu(app, s).regs[0]
    base = m.modules[0].base
    lfanew = m.kspace.read_int(base + 0x3C, 4)
    entry = m.kspace.read_int(base + lfanew + 0x28, 4)
    assert s.evaluate("@$exentry") == base + entry


def test_return_address_is_the_first_frames(app: App, s: Session) -> None:
    k = run(s, "k 2")
    assert "RetAddr" in k[0]
    ret_addr = k[1].split()[2]  # `00 <Child-SP> <RetAddr> <Call Site>`
    assert s.evaluate("@$ra") == int(ret_addr.replace("`", ""), 16)


def test_p_is_the_first_value_the_last_display_printed(app: App, s: Session) -> None:
    rsp = cpu(app, s).regs[4]
    run(s, "dq rsp L2")
    assert s.evaluate("@$p") == int.from_bytes(app.target.read_virtual(rsp, 8), "little")
    run(s, "dd rsp+8 L1")
    assert s.evaluate("@$p") == int.from_bytes(app.target.read_virtual(rsp + 8, 4), "little")
