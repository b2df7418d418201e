""".frame on the crashed default machine and on a deadlocked thread: the frame line, the
registers the unwinder recovers (nonvolatiles read back from the stack slots a prologue
pushed them to, the interrupted context from a trap frame), and kd's error past the end."""

from __future__ import annotations

import re

from commands.session import Session
from kdsim.live import LiveTarget
from tests.conftest import run
from tests.kdsim.test_stack_variants import abba, plain, rows  # noqa: F401 - fixture

REG = re.compile(r"([a-z0-9]+)=([0-9a-f]{16})")


def regs_of(lines: list[str]) -> dict[str, int]:
    out = {}
    for line in lines:
        if line.startswith("iopl="):
            break
        out.update({k: int(v, 16) for k, v in REG.findall(line)})
    return out


def test_frame_shows_and_sets_the_local_context(session):
    k = run(session, "k")
    assert run(session, ".frame") == [k[1]]
    assert run(session, ".frame 3") == [k[4]]
    assert run(session, ".frame") == [k[4]]
    assert run(session, "k") == k  # still from the top
    frame3 = rows(k[1:])[3]
    r = run(session, "r")
    assert regs_of(r)["rsp"] == frame3[1]
    assert regs_of(r)["rip"] == rows(k[1:])[2][2]  # frame 3 runs at frame 2's RetAddr
    assert run(session, "r rsp") == [f"rsp={frame3[1]:016x}"]
    assert run(session, ".frame 0") == [k[1]]
    base = session.target.registers(session.processor)
    assert regs_of(run(session, "r")) == {n: base[n] for n in regs_of(run(session, "r"))}


def test_frame_r_after_a_trap_frame_shows_the_interrupted_registers(session):
    k = rows(run(session, "k")[1:])
    trap_index = next(i for i, r in enumerate(k) if "KiPageFault" in r[3])
    out = run(session, f".frame /r {trap_index + 1:x}")
    assert out[0] == run(session, "k")[trap_index + 2]
    regs = regs_of(out[1:])
    tf = k[trap_index][1]  # KiPageFault's Child-SP is its trap frame
    for reg, fld in (("rip", "Rip"), ("rsp", "Rsp"), ("rbx", "Rbx"), ("rdi", "Rdi"),
                     ("rsi", "Rsi"), ("rbp", "Rbp")):
        assert regs[reg] == session.reader.field("_KTRAP_FRAME", tf, fld), reg
    # the volatile registers are carried over from the frame below (kd cannot know them)
    base = session.target.registers(session.processor)
    assert regs["rcx"] == base["rcx"] and regs["rdx"] == base["rdx"]
    assert out[-2] == k[trap_index + 1][3] + ":"  # the faulting instruction's label
    assert f"efl={session.reader.field('_KTRAP_FRAME', tf, 'EFlags'):08x}" in out[-3]


def test_frame_past_the_end_keeps_the_previous_scope(session):
    k = run(session, "k")
    run(session, ".frame 2")
    assert run(session, ".frame 40") == ["Cannot find frame 0x40, previous scope unchanged",
                                         k[3]]
    assert run(session, ".frame") == [k[3]]
    assert run(session, ".frame /q 1")[0].startswith("Syntax error")


def test_frame_r_recovers_pushed_nonvolatiles_of_a_waiting_thread(abba):  # noqa: F811
    m, (t1, t2) = abba
    s = Session(LiveTarget(m))
    for t in (t1, t2):
        run(s, f".thread {t.ethread:x}")
        frames = rows(run(s, "k")[1:])
        take = next(i for i, f in enumerate(frames) if "abba!TakeBoth+" in f[3])
        caller = take + 1
        out = run(s, f".frame /r {caller:x}")
        regs = regs_of(out[1:])
        sp = frames[take][1]
        # TakeBoth: push rbx; push rdi; sub rsp,38h -> rdi at +38h, rbx at +40h
        assert regs["rdi"] == m.kspace.read_u64(sp + 0x38)
        assert regs["rbx"] == m.kspace.read_u64(sp + 0x40)
        assert regs["rsp"] == frames[caller][1] and regs["rip"] == frames[take][2]
        # nothing else was saved: the waiting thread's context is zero there
        assert regs["rax"] == 0 and regs["r10"] == 0
        assert "cs=0000  ss=0000  ds=0000  es=0000  fs=0000  gs=0000" in "\n".join(out)
        assert out[-2] == frames[caller][3] + ":"
