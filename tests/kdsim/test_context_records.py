""".cxr and .exr on a SYSTEM_THREAD_EXCEPTION_NOT_HANDLED (0x7E) machine, whose bug check
parameters point at the exception record and context KiExceptionDispatch wrote, and on the
default 0xD1 machine (no exception record)."""

from __future__ import annotations

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from machine.types.view import Struct
from tests.conftest import run
from tests.kdsim.test_context_frame import regs_of
from tests.kdsim.test_stack_variants import rows
from tests.machine.test_exceptions import machine


@pytest.fixture(scope="module")
def crashed():
    m = machine("NullDeref")
    assert m.bugcheck is not None and m.bugcheck.code == 0x7E
    return m


def fresh(m) -> Session:
    t = LiveTarget(m)
    return Session(t, processor=t.stop_processor)


def test_exr_shows_the_exception_record_in_memory(crashed):
    s = fresh(crashed)
    status, fault, record, _context = crashed.bugcheck.params
    er = Struct(crashed.kspace, "_EXCEPTION_RECORD", record)
    out = run(s, f".exr {record:x}")
    name = s.symbols.split_name(fault)
    assert name is not None and name[1] == "NullDeref"
    assert out == [
        f"ExceptionAddress: {fault:016x} (thr!NullDeref+0x{name[2]:016x})",
        "   ExceptionCode: c0000005 (Access violation)",
        f"  ExceptionFlags: {er.get('ExceptionFlags'):08x}",
        "NumberParameters: 2",
        f"   Parameter[0]: {er.get('ExceptionInformation[0]'):016x}",
        f"   Parameter[1]: {er.get('ExceptionInformation[1]'):016x}",
        "Attempt to read from address 0000000000000010"]
    assert status == 0xC0000005
    assert run(s, ".exr -1") == out  # the bug check's exception record
    assert run(s, f".exr 0x{record:x}") == out


def test_exr_errors(crashed):
    s = fresh(crashed)
    assert run(s, ".exr") == ["Numeric expression missing from '<EOL>'"]
    assert run(s, ".exr 10") == ["Cannot read Exception record @ 0000000000000010"]
    assert run(s, ".exr zz")[0].startswith("Couldn't resolve error")


def test_cxr_sets_the_register_context_from_the_context_record(crashed):
    s = fresh(crashed)
    _status, fault, _record, context = crashed.bugcheck.params
    ctx = Struct(crashed.kspace, "_CONTEXT", context)
    out = run(s, f".cxr {context:x}")
    regs = regs_of(out)
    for reg in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r12", "r15"):
        assert regs[reg] == ctx.get(reg.capitalize()), reg
    assert regs["rip"] == fault and regs["rbx"] == 0
    assert out[6].startswith("iopl=") and out[7].startswith("cs=0010  ss=0018  ds=002b")
    assert out[7].endswith(f"efl={ctx.get('EFlags'):08x}")
    assert out[8].startswith("thr!NullDeref+0x")
    assert "mov     eax,dword ptr [rbx+10h]" in out[9]
    r = run(s, "r")
    assert r[0] == "Last set context:" and r[1:] == out
    k = run(s, "k")
    assert k[0] == "  *** Stack trace for last set context - .thread/.cxr resets it"
    first = rows(k[2:])[0]
    assert first[1] == ctx.get("Rsp") and first[3].startswith("thr!NullDeref+0x")
    assert run(s, ".cxr") == ["Resetting default context"]
    assert run(s, ".cxr") == []
    assert run(s, "r")[0] != "Last set context:"
    assert run(s, "k")[0] == " # Child-SP          RetAddr               Call Site"


def test_frame_and_cxr_together(crashed):
    s = fresh(crashed)
    context = crashed.bugcheck.params[3]
    run(s, f".cxr {context:x}")
    k = run(s, "k")
    assert run(s, ".frame 1") == [k[3]]
    assert regs_of(run(s, "r")[1:])["rsp"] == rows(k[2:])[1][1]
    run(s, ".cxr")
    assert run(s, ".frame") == [run(s, "k")[1]]  # resetting the context resets the frame


def test_exr_minus_one_without_an_exception(session):
    assert run(session, ".exr -1") == ["Last event was not an exception"]
    assert run(session, ".cxr 0")[0] == "Memory access error at '0'"
