"""The k variants on the crashed default machine and on the waiting threads of an ABBA
deadlock: frame counts, the Memory column, arguments read from the stack, the raw stack
(`kd`) and an explicit start context (`k = StackPtr InstructionPtr FrameCount`)."""

from __future__ import annotations

import re

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from tests.conftest import run
from tests.machine.probe import boot_probe, start_system_thread
from tests.machine.test_sync import ABBA

ROW = re.compile(r"^([0-9a-f]{2}) ([0-9a-f]{8}`[0-9a-f]{8}) ([0-9a-f]{8}`[0-9a-f]{8})     (.+)$")


def plain(value: str) -> int:
    return int(value.replace("`", ""), 16)


def rows(lines: list[str]) -> list[tuple[int, int, int, str]]:
    out = []
    for line in lines:
        m = ROW.match(line)
        if m:
            out.append((int(m.group(1), 16), plain(m.group(2)), plain(m.group(3)), m.group(4)))
    return out


@pytest.fixture(scope="module")
def abba():
    m = boot_probe("abba", ABBA, {"MutexA": 0x38, "MutexB": 0x38, "Finished": 8})
    t1 = start_system_thread(m, 0x5000, m.sym("abba!ThreadAB"))
    t2 = start_system_thread(m, 0x5004, m.sym("abba!ThreadBA"))
    m.run(200_000)
    return m, (t1, t2)


def test_every_variant_takes_a_frame_count(session):
    full = rows(run(session, "k"))
    assert len(full) >= 10
    for line, count in (("k 3", 3), ("kb 2", 2), ("kv 4", 4), ("kn 5", 5), ("kp 2", 2),
                        ("kP 3", 3), ("kL 1", 1), ("kbn 5", 5), ("kvn 6", 6), ("kf 3", 3),
                        ("kc 2", 2), ("kfn 4", 4)):
        out = run(session, line)
        body = [r for r in out if re.match(r"^[0-9a-f]{2} ", r)]
        assert len(body) == count, (line, out)
        assert body[0].endswith("nt!KeBugCheckEx") or "nt!KeBugCheckEx" in body[0]


def test_kp_without_private_symbols_prints_the_plain_layout(session):
    assert run(session, "kp") == run(session, "k")
    assert run(session, "kp")[0] == " # Child-SP          RetAddr               Call Site"


def test_kb_arguments_are_the_home_slots_above_each_child_sp(session):
    out = run(session, "kbn 6")
    assert out[0].startswith(" # Child-SP          RetAddr               : Args to Child ")
    for line in out[1:]:
        num, sp, ret, args, site = re.match(
            r"^([0-9a-f]{2}) (\S+) (\S+)     : (.+) : (.+)$", line).groups()
        dq = run(session, f"dq {plain(sp) + 8:x} L4")
        assert args.split() == [w for row in dq for w in row.split()[1:]]
        assert site == [r[3] for r in rows(run(session, "k"))][int(num, 16)]


def test_kf_memory_column_is_the_distance_between_child_sps(session):
    out = run(session, "kf")
    assert out[0] == (" #   Memory  Child-SP          RetAddr               Call Site")
    plain_rows = rows(run(session, "k"))
    assert len(out) - 1 == len(plain_rows)
    for i, (line, (num, sp, ret, site)) in enumerate(zip(out[1:], plain_rows, strict=True)):
        assert line[:2] == f"{num:02x}"
        memory = line[3:12]
        assert line[13:] == f"{sp >> 32:08x}`{sp & 0xFFFFFFFF:08x} " \
                            f"{ret >> 32:08x}`{ret & 0xFFFFFFFF:08x}     {site}"
        if i == 0 or sp < plain_rows[i - 1][1]:
            assert memory.strip() == ""  # frame 0, and the switch to the user stack
        else:
            assert int(memory, 16) == sp - plain_rows[i - 1][1]
            assert memory == f"{sp - plain_rows[i - 1][1]:>9x}"
    assert any(line[3:12].strip() == "" for line in out[2:])  # the user-mode frame


def test_kc_shows_call_sites_only(session):
    out = run(session, "kc")
    sites = [r[3] for r in rows(run(session, "k"))]
    assert out[0] == " # Call Site"
    assert [line[3:] for line in out[1:]] == [s.split("+")[0] for s in sites]


def test_kd_dumps_the_raw_stack_from_rsp(session):
    rsp = session.registers()["rsp"]
    out = run(session, "kd 8")
    assert out == run(session, f"dps {rsp:x} L8")
    assert len(out) == 8 and out[0].startswith(f"{rsp >> 32:08x}`{rsp & 0xFFFFFFFF:08x}  ")
    assert "nt!KiBugCheckDispatch+0x69" in out[0]  # KeBugCheckEx's return address
    assert len(run(session, "kd")) == 0x100


def test_k_with_a_start_context_walks_from_there(session):
    frames = rows(run(session, "k"))
    num, sp, ret, site = frames[3]
    ip = frames[2][2]  # frame 3 runs at frame 2's return address
    out = rows(run(session, f"k = {sp:x} {ip:x} 4"))
    assert [(s, r, c) for _, s, r, c in out] == [(s, r, c) for _, s, r, c in frames[3:7]]
    assert [n for n, *_ in out] == [0, 1, 2, 3]
    # the x86-style four values: BasePtr StackPtr InstructionPtr FrameCount
    out4 = rows(run(session, f"kn = 0 {sp:x} {ip:x} 2"))
    assert [(s, r, c) for _, s, r, c in out4] == [(s, r, c) for _, s, r, c in frames[3:5]]


def test_k_bad_input_gives_kd_errors(session):
    assert run(session, "k zzsym") == ["Couldn't resolve error at 'zzsym'"]
    assert run(session, "k =")[0].startswith("Syntax error at")
    assert run(session, "kd zz")[0].startswith("Couldn't resolve error")


def test_stacks_of_waiting_threads_in_a_deadlock(abba):
    m, threads = abba
    s = Session(LiveTarget(m))
    for t in threads:
        assert run(s, f".thread {t.ethread:x}") == [
            f"Implicit thread is now {t.ethread >> 32:08x}`{t.ethread & 0xFFFFFFFF:08x}"]
        out = run(s, "kfn")
        assert out[0] == "  *** Stack trace for last set context - .thread/.cxr resets it"
        assert out[1].startswith(" #   Memory  Child-SP")
        body = out[2:]
        assert body[0].endswith("nt!KiSwapContext+0x76")
        assert any("abba!TakeBoth+0x" in r for r in body)
        # KiSwapContext's frame starts where the switch frame says (KernelStack + 0x40)
        ks = s.reader.field("_KTHREAD", t.ethread, "KernelStack")
        assert plain(body[0].split()[1]) == ks + 0x40
        sps = [plain(line.split()[-3]) for line in body]
        for i in range(1, len(body)):
            assert int(body[i][3:12], 16) == sps[i] - sps[i - 1]
        kb = run(s, "kb 3")
        assert len(kb) == 1 + 1 + 3
