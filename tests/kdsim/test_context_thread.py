""".thread and .process on the crashed default machine (running and waiting threads of
several processes) and !thread / !process flags: the register context a thread's saved
state gives, the implicit process whose page tables translate user addresses, and when
those selections end."""

from __future__ import annotations

import re

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from tests.conftest import run
from tests.kdsim.test_context_frame import regs_of
from tests.kdsim.test_stack_variants import abba, rows  # noqa: F401 - fixture


def bt(value: int) -> str:
    return f"{value >> 32:08x}`{value & 0xFFFFFFFF:08x}"


@pytest.fixture()
def ctx(app):
    """A session whose implicit process is dropped from the shared target afterwards."""
    s = Session(app.target, processor=app.target.stop_processor)
    yield s
    app.target.set_implicit_dtb(None)
    app.target.set_implicit_dtb(None, at_next_stop=True)


def threads_of(s: Session) -> list[tuple[int, int, str]]:
    """(ethread, eprocess, state line) of every thread, from !process 0 2."""
    out, process = [], 0
    for line in run(s, "!process 0 2"):
        m = re.match(r"^PROCESS ([0-9a-f]{16})", line)
        if m:
            process = int(m.group(1), 16)
        m = re.match(r"^ {8}THREAD ([0-9a-f]{16}) ", line)
        if m:
            out.append((int(m.group(1), 16), process, line))
    return out


def test_thread_of_waiting_threads_in_several_processes(ctx):
    waiting = [t for t in threads_of(ctx) if "WAIT:" in t[2]]
    processes = {p for _, p, _ in waiting}
    assert len(processes) >= 3
    seen = set()
    for et, ep, _ in waiting:
        if ep in seen:
            continue
        seen.add(ep)
        assert run(ctx, f".thread {et:x}") == [f"Implicit thread is now {bt(et)}"]
        ks = ctx.reader.field("_KTHREAD", et, "KernelStack")
        r = run(ctx, "r")
        assert r[0] == "Last set context:"
        regs = regs_of(r[1:])
        assert regs["rip"] == ctx.reader.u64(ks + 0x38) and regs["rsp"] == ks + 0x40
        assert all(v == 0 for n, v in regs.items() if n not in ("rip", "rsp"))
        assert "efl=00000000" in r[8] and r[8].startswith("cs=0000  ss=0000")
        k = run(ctx, "k")
        assert k[0] == "  *** Stack trace for last set context - .thread/.cxr resets it"
        assert rows(k[2:])[0][1] == ks + 0x40
        assert run(ctx, "!thread")[0].startswith(f"THREAD {et:016x} ")  # the implicit one
    assert run(ctx, ".thread")[0] == f"Implicit thread is now {bt(ctx.current_thread(0))}"
    assert run(ctx, "r")[0] != "Last set context:"


def test_thread_of_the_running_thread_uses_its_processors_registers(ctx):
    running = ctx.current_thread(ctx.processor)
    assert run(ctx, f".thread {running:x}") == [f"Implicit thread is now {bt(running)}"]
    assert regs_of(run(ctx, "r")[1:])["rip"] == ctx.target.registers(ctx.processor)["rip"]
    assert rows(run(ctx, "k")[2:]) == rows(run(Session(ctx.target), "k")[1:])


def test_thread_p_also_sets_the_process_and_its_address_space(ctx):
    et, ep, _ = next(t for t in threads_of(ctx) if t[1] != ctx.current_process(0)
                     and ctx.reader.field("_KTHREAD", t[0], "Teb"))
    out = run(ctx, f".thread /p /r {et:x}")
    assert out == [f"Implicit thread is now {bt(et)}", f"Implicit process is now {bt(ep)}",
                   ".cache forcedecodeuser done", "Loading User Symbols", ""]
    assert ctx.current_process() == ep
    teb = ctx.reader.field("_KTHREAD", et, "Teb")
    dirbase = ctx.reader.field("_EPROCESS", ep, "Pcb.DirectoryTableBase")
    want = ctx.target.read_virtual(teb, 8, dirbase)
    assert run(ctx, f"dq {teb:x} L1")[0].split()[1] == bt(int.from_bytes(want, "little"))


def test_process_switches_user_address_translation(ctx):
    procs = [(et, ep) for et, ep, _ in threads_of(ctx)]
    by_process = {}
    for et, ep in procs:
        teb = ctx.reader.field("_KTHREAD", et, "Teb")
        if teb:
            by_process.setdefault(ep, teb)
    assert len(by_process) >= 3
    # through the crashing processor's own page tables, other processes' TEBs read
    # differently (or not at all): the implicit process is what makes them readable
    own = {ep: run(ctx, f"dq {teb + 0x30:x} L1")[0] for ep, teb in by_process.items()}
    assert sum(line.split()[1] != bt(by_process[ep]) for ep, line in own.items()) >= 2
    for ep, teb in by_process.items():
        assert run(ctx, f".process {ep:x}") == [f"Implicit process is now {bt(ep)}",
                                                "WARNING: .cache forcedecodeuser is not enabled"]
        assert run(ctx, ".process") == [f"Implicit process is now {bt(ep)}"]
        dirbase = ctx.reader.field("_EPROCESS", ep, "Pcb.DirectoryTableBase")
        want = int.from_bytes(ctx.target.read_virtual(teb, 8, dirbase), "little")
        assert run(ctx, f"dq {teb:x} L1")[0].split()[1] == bt(want)
        # the TEB's Self pointer reads back as the TEB itself, in this address space only
        self_ptr = int.from_bytes(ctx.target.read_virtual(teb + 0x30, 8, dirbase), "little")
        assert self_ptr == teb
        assert run(ctx, f"dq {teb + 0x30:x} L1")[0].split()[1] == bt(teb)
    assert run(ctx, ".process /p /r " + f"{ep:x}") == [
        f"Implicit process is now {bt(ep)}", ".cache forcedecodeuser done",
        "Loading User Symbols", ""]


def test_process_i_switches_at_the_next_break(ctx):
    ep = next(p for _, p, _ in threads_of(ctx) if p != ctx.current_process(0))
    before = ctx.current_process()
    out = run(ctx, f".process /i {ep:x}")
    assert out == ["You need to continue execution (press 'g' <enter>) for the context",
                   "to be switched. When the debugger breaks in again, you will be in",
                   "the new process context."]
    assert ctx.current_process() == before
    run(ctx, "g")  # the bug-checked machine stops again at once
    assert run(ctx, ".process") == [f"Implicit process is now {bt(ep)}"]


def test_bad_thread_and_process_addresses(ctx):
    ep = ctx.current_process(0)
    assert run(ctx, f".thread {ep:x}") == [f"{ep:016x} is not a valid thread address"]
    et = ctx.current_thread(0)
    assert run(ctx, f".process {et:x}") == [f"{et:016x} is not a valid process address"]
    assert run(ctx, ".thread 10")[0].startswith("Memory access error")
    assert run(ctx, ".thread /z 10")[0].startswith("Syntax error")


def test_thread_flags(ctx):
    et, ep, line = next(t for t in threads_of(ctx) if "WAIT:" in t[2])
    first = line.strip()
    assert run(ctx, f"!thread {et:x} 0") == [first]
    two = run(ctx, f"!thread {et:x} 2")
    assert two[0] == first and len(two) == 2 and two[1].startswith("    ")
    assert run(ctx, f"!thread {et:x} 4") == [first]
    full = run(ctx, f"!thread {et:x}")
    assert full == run(ctx, f"!thread {et:x} 6")
    args_header = full.index(next(r for r in full if r.startswith("Child-SP")))
    assert full[args_header].startswith("Child-SP          RetAddr               : Args to")
    no_args = run(ctx, f"!thread {et:x} e")
    assert no_args[:args_header] == full[:args_header]
    assert no_args[args_header] == "Child-SP          RetAddr               Call Site"
    for with_args, without in zip(full[args_header + 1:], no_args[args_header + 1:],
                                  strict=True):
        sp_ret, _args, site = with_args.split(" : ", 2)
        assert without == f"{sp_ret} {site}"
    assert run(ctx, "!thread -1 0") == [run(ctx, "!thread")[0]]
    assert run(ctx, f"!thread -p {et:x} 0")[:4] == run(ctx, f"!process {ep:x} 0")[:4]
    tid = ctx.reader.field("_ETHREAD", et, "Cid.UniqueThread")
    assert run(ctx, f"!thread -t {tid:x} 0") == [first]
    assert run(ctx, f"!thread {et:x} 16") == full


def test_process_2_shows_threads_with_their_waits_only(ctx):
    ep = next(p for _, p, line in threads_of(ctx) if "WAIT:" in line)
    out = run(ctx, f"!process {ep:x} 2")
    assert not any("Not impersonating" in line for line in out)
    assert any(re.match(r"^ {12}[0-9a-f]{16}  \w", line) for line in out)
    assert run(ctx, f"!process {ep:x} 17") == run(ctx, f"!process {ep:x} 7")


def test_implicit_thread_expires_when_another_processor_is_selected(abba):  # noqa: F811
    m, (t1, _t2) = abba
    s = Session(LiveTarget(m))
    run(s, f".thread /p {t1.ethread:x}")
    assert s.current_thread() == t1.ethread
    other = 1 - s.processor
    run(s, f"~{other}s")
    assert s.current_thread() == s.current_thread(other)
    assert run(s, "r")[0] != "Last set context:"
