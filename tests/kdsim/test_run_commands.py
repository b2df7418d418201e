"""Execution and breakpoint commands on live machines: probe drivers whose system threads
loop, and the crashed default machine.  What the commands print is checked against the
machine's own processors and memory."""

from __future__ import annotations

import re

import pytest
from iced_x86 import Decoder, Mnemonic

from commands.session import Session
from kdsim.live import LiveTarget
from machine.types.view import Struct
from tests.conftest import run
from tests.machine.probe import boot_probe, start_system_thread

ROUTINES = {
    "Caller": """
    sub     rsp, 28h
    mov     ebx, 11h
    mov     ecx, 5
    call    Helper
    mov     qword ptr [Result], rax
    lock inc qword ptr [Count]
c_park:
    pause
    jmp     c_park
""",
    "Helper": """
    push    rbx
    sub     rsp, 20h
    mov     rbx, rcx
    lea     rax, [rbx+rbx]
    add     rsp, 20h
    pop     rbx
    ret
""",
    "Spinner": """
    xor     ebx, ebx
s_loop:
    inc     rbx
    mov     qword ptr [Spins], rbx
    jmp     s_loop
""",
    "Crasher": """
    xor     eax, eax
    mov     rax, qword ptr [rax]
    ret
""",
}
GLOBALS = {"Result": 8, "Count": 8, "Spins": 8}
BUDGET = 200_000
LOCATION = re.compile(r"^[0-9a-f]{8}`[0-9a-f]{8} [0-9a-f]+ +\S")


def live(*threads: str):
    """A probe machine with one system thread per routine named (tids 0x4000, 0x4004...),
    and a session on it."""
    m = boot_probe("st", ROUTINES, GLOBALS)
    for i, routine in enumerate(threads):
        start_system_thread(m, 0x4000 + 4 * i, m.sym(f"st!{routine}"))
    target = LiveTarget(m)
    s = Session(target, processor=target.stop_processor)
    s.run_budget = BUDGET
    return m, s


def instructions(m, routine: str, limit: int = 0x40):
    start = m.sym(f"st!{routine}")
    return list(Decoder(64, m.kspace.read(start, limit), ip=start))


def spin_store(m) -> int:
    """The address of Spinner's `mov [Spins], rbx`."""
    return next(i.ip for i in instructions(m, "Spinner") if i.mnemonic == Mnemonic.MOV)


def current_thread(m, n: int) -> int:
    return Struct(m.kspace, "_KPRCB", m.processors[n].prcb).get("CurrentThread")


def assert_location(m, s, lines: list[str], name: str) -> None:
    """The last two lines are the label and instruction at the stopped processor's rip,
    its bytes read from memory."""
    rip = m.processors[s.processor].cpu.rip
    assert lines[-2] == f"{name}:"
    code = lines[-1]
    assert LOCATION.match(code), code
    assert code.startswith(f"{rip >> 32:08x}`{rip & 0xFFFFFFFF:08x} ")
    size = Decoder(64, m.kspace.read(rip, 15), ip=rip).decode().len
    assert code.split()[1] == m.kspace.read(rip, size).hex()


# -- bp / g ---------------------------------------------------------------------------------

@pytest.mark.parametrize("routine", ["Helper", "Caller", "Spinner"])
def test_bp_and_g_stop_at_each_routine_on_the_processor_running_it(routine):
    m, s = live("Caller", "Spinner")
    address = m.sym(f"st!{routine}")
    assert run(s, f"bp st!{routine}") == []
    out = run(s, "g")
    assert out[0] == "Breakpoint 0 hit"
    assert m.processors[s.processor].cpu.rip == address
    assert s.target.stop_processor == s.processor == m.stop.processor
    assert s.prompt == f"{s.processor}: kd> "
    assert_location(m, s, out, f"st!{routine}")
    # while stopped, memory shows the original byte, not the int 3
    assert m.kspace.read(address, 1) != b"\xcc"
    assert run(s, f"db st!{routine} L1")[0].split()[1] == f"{m.kspace.read(address, 1)[0]:02x}"


def test_bl_lists_every_kind_with_kd_columns():
    m, s = live("Caller")
    run(s, "bp st!Helper")
    run(s, 'bp st!Caller+4 3 "r rbx; g"')
    run(s, "ba w8 st!Spins")
    run(s, "ba r4 st!Result+4")
    run(s, "bd 1")
    helper, caller, spins = m.sym("st!Helper"), m.sym("st!Caller"), m.sym("st!Spins")

    def a(x):
        return f"{x >> 32:08x}`{x & 0xFFFFFFFF:08x}"

    assert run(s, "bl") == [
        f"     0 e Disable Clear  {a(helper)}     0001 (0001) st!Helper",
        f'     1 d Enable Clear  {a(caller + 4)}     0003 (0003) st!Caller+0x4 "r rbx; g"',
        f"     2 e Disable Clear  {a(spins)} w 8 0001 (0001) st!Spins",
        f"     3 e Disable Clear  {a(m.sym('st!Result') + 4)} r 4 0001 (0001) st!Result+0x4",
    ]
    assert run(s, "bl 2") == run(s, "bl")[2:3]


def test_bp_on_the_same_address_redefines_it():
    m, s = live()
    run(s, "bp st!Helper")
    assert run(s, "bp st!Helper 2") == ["breakpoint 0 redefined"]
    assert len(s.breakpoints) == 1 and run(s, "bl")[0].split()[-3:-1] == ["0002", "(0002)"]


def test_bp_on_an_unknown_module_is_deferred_and_listed_as_such():
    _, s = live()
    assert run(s, "bp nosuch!Routine") == [
        "Bp expression 'nosuch!Routine' could not be resolved, adding deferred bp"]
    assert run(s, "bl") == ["     0 eu             0001 (0001) (nosuch!Routine)"]
    assert run(s, "bu nosuch!Other") == []
    assert run(s, "bl")[1] == "     1 eu             0001 (0001) (nosuch!Other)"


def test_bm_sets_one_breakpoint_per_matching_function():
    m, s = live()
    out = run(s, "bm st!*er")
    names = ["Caller", "Helper", "Spinner", "Crasher"]
    names.sort(key=lambda n: m.sym(f"st!{n}"))
    assert out == [f"{i:>3}: {m.sym(f'st!{n}') >> 32:08x}`{m.sym(f'st!{n}') & 0xFFFFFFFF:08x}"
                   f' @!"st!{n}"' for i, n in enumerate(names)]
    assert len(s.breakpoints) == 4
    assert run(s, "bm st!NoSuch*") == ["Couldn't resolve error at 'st!NoSuch*'"]


def test_g_to_an_address_stops_there_without_a_breakpoint_number():
    m, s = live("Caller")
    target = m.sym("st!Helper") + 1
    out = run(s, "g st!Helper+1")
    assert "Breakpoint" not in out[0]
    assert m.processors[s.processor].cpu.rip == target
    assert_location(m, s, out, "st!Helper+0x1")
    assert len(s.breakpoints) == 0


# -- stepping ------------------------------------------------------------------------------

def test_p_t_and_gu_follow_the_processor_and_print_each_location():
    m, s = live("Caller")
    run(s, "bp st!Helper")
    run(s, "g")
    cpu = m.processors[s.processor].cpu
    out = run(s, "p")
    assert cpu.rip == m.sym("st!Helper") + 1
    assert_location(m, s, out, "st!Helper+0x1")
    out = run(s, "t 2")
    assert len(out) == 4 and out[0] == "st!Helper+0x5:" and out[2] == "st!Helper+0x8:"
    assert cpu.rip == m.sym("st!Helper") + 8
    out = run(s, "gu")
    call = next(i for i in instructions(m, "Caller") if i.mnemonic == Mnemonic.CALL)
    assert cpu.rip == call.next_ip and cpu.regs[0] == 10
    assert_location(m, s, out, f"st!Caller+0x{call.next_ip - m.sym('st!Caller'):x}")
    assert run(s, "r rax") == ["rax=000000000000000a"]


@pytest.mark.parametrize("step,lands", [("p", "after"), ("t", "callee")])
def test_p_steps_over_a_call_and_t_steps_into_it(step, lands):
    m, s = live("Caller")
    call = next(i for i in instructions(m, "Caller") if i.mnemonic == Mnemonic.CALL)
    run(s, f"g {call.ip:x}")
    cpu = m.processors[s.processor].cpu
    rsp = cpu.regs[4]
    out = run(s, step)
    if lands == "after":
        assert cpu.rip == call.next_ip and cpu.regs[0] == 10 and cpu.regs[4] == rsp
    else:
        assert cpu.rip == m.sym("st!Helper") and out[0] == "st!Helper:"
        assert m.kspace.read_u64(cpu.regs[4]) == call.next_ip


@pytest.mark.parametrize("line", ["pc", "tc"])
def test_pc_and_tc_stop_at_the_next_call(line):
    m, s = live("Caller")
    run(s, "g st!Caller")
    call = next(i for i in instructions(m, "Caller") if i.mnemonic == Mnemonic.CALL)
    out = run(s, line)
    assert m.processors[s.processor].cpu.rip == call.ip
    assert len(out) == 2 and out[-1].split()[2] == "call"
    assert out[-1].endswith(f"st!Helper ({call.near_branch_target >> 32:08x}`"
                            f"{call.near_branch_target & 0xFFFFFFFF:08x})")


def test_pa_shows_every_step_until_the_address():
    m, s = live("Caller")
    run(s, "g st!Caller")
    call = next(i for i in instructions(m, "Caller") if i.mnemonic == Mnemonic.CALL)
    after = call.next_ip
    out = run(s, f"pa {after:x}")
    labels = [line for line in out if line.endswith(":")]
    assert labels == ["st!Caller+0x4:", "st!Caller+0x9:", "st!Caller+0xe:",
                      f"st!Caller+0x{after - m.sym('st!Caller'):x}:"]
    assert m.processors[s.processor].cpu.rip == after
    out = run(s, "ta st!Caller+0x1a")
    assert m.processors[s.processor].cpu.rip == m.sym("st!Caller") + 0x1a


# -- conditions, pass counts, command strings -------------------------------------------------

def test_a_pass_count_breaks_on_the_nth_hit_and_then_every_time():
    m, s = live("Spinner")
    store = spin_store(m)
    run(s, f"bp {store:x} 3")
    assert run(s, "g")[0] == "Breakpoint 0 hit"
    assert m.processors[s.processor].cpu.regs[3] == 3  # rbx: the third time round
    assert run(s, "bl")[0].split()[5:7] == ["0001", "(0003)"]
    run(s, "g")
    assert m.processors[s.processor].cpu.regs[3] == 4
    assert m.kspace.read_u64(m.sym("st!Spins")) == 3  # the 4th store has not run yet


def test_a_one_shot_breakpoint_is_gone_after_its_hit():
    m, s = live("Spinner")
    run(s, f"bp /1 {spin_store(m):x}")
    assert run(s, "g")[0] == "Breakpoint 0 hit"
    assert run(s, "bl") == []


@pytest.mark.parametrize("which", [0, 1])
def test_a_thread_filter_stops_only_in_that_thread(which):
    m, s = live("Spinner", "Spinner")
    ethread = [t.ethread for t in m.threads if t.tid == 0x4000 + 4 * which][0]
    run(s, f"bp /t {ethread:x} {spin_store(m):x}")
    shown = f"{ethread >> 32:08x}`{ethread & 0xFFFFFFFF:08x}"
    assert run(s, "bl")[1] == f"     Match thread data {shown}"
    for _ in range(3):
        assert run(s, "g")[0] == "Breakpoint 0 hit"
        assert current_thread(m, s.processor) == ethread
        assert run(s, "? @$thread")[0].split()[-1].replace("`", "") == f"{ethread:016x}"


def test_a_process_filter_reads_the_current_process():
    m, s = live("Spinner")
    system = next(p for p in m.processes if p.pid == 4).eprocess
    other = next(p for p in m.processes if p.pid != 4).eprocess
    run(s, f"bp /p {other:x} {spin_store(m):x}")
    s.run_budget = 2000  # each hit in the wrong process resumes the target
    out = run(s, "g")
    assert out[0].startswith("kdsim: the target ran")  # never in that process
    run(s, "bc 0")
    run(s, f"bp /p {system:x} {spin_store(m):x}")
    assert run(s, "g")[0] == "Breakpoint 0 hit"


def test_a_command_string_runs_at_each_hit_and_g_in_it_resumes():
    m, s = live("Spinner")
    run(s, f'bp {spin_store(m):x} "r rbx; g"')
    s.run_budget = 600
    out = run(s, "g")
    values = [int(line.split("=")[1], 16) for line in out if line.startswith("rbx=")]
    assert len(values) > 3 and values == list(range(1, len(values) + 1))
    assert out.count("Breakpoint 0 hit") == len(values)
    assert out[-3].startswith("kdsim: the target ran")


# -- data breakpoints -------------------------------------------------------------------------

def test_ba_write_stops_after_the_store_with_the_value_in_memory():
    m, s = live("Spinner")
    run(s, "ba w8 st!Spins")
    for expected in (1, 2):
        out = run(s, "g")
        assert out[0] == "Breakpoint 0 hit"
        assert m.kspace.read_u64(m.sym("st!Spins")) == expected
        assert m.processors[s.processor].cpu.rip == spin_store(m) + 7


def test_ba_execute_and_read_write():
    m, s = live("Caller")
    run(s, "ba e1 st!Helper")
    run(s, "ba r8 st!Result")
    assert run(s, "g")[0] == "Breakpoint 0 hit"
    assert m.processors[s.processor].cpu.rip == m.sym("st!Helper")
    assert run(s, "g")[0] == "Breakpoint 1 hit"
    assert m.kspace.read_u64(m.sym("st!Result")) == 10


@pytest.mark.parametrize("line,error", [
    ("ba w4 st!Spins+2", "Data breakpoint must be aligned"),
    ("ba w3 st!Spins", "Unsupported data breakpoint size"),
    ("ba e4 st!Helper", "Execution data breakpoint too large"),
])
def test_ba_refuses_what_debug_registers_cannot_hold(line, error):
    _, s = live()
    assert run(s, line) == [error]
    assert len(s.breakpoints) == 0


def test_a_fifth_data_breakpoint_is_refused():
    _, s = live()
    for i in range(4):
        assert run(s, f"ba w1 st!Spins+{i}") == []
    assert run(s, "ba w1 st!Spins+4")[0].startswith("kdsim: all 4 debug registers")


def test_bc_bd_be_take_star_lists_and_ranges():
    m, s = live("Spinner")
    for i in range(5):
        run(s, f"bp st!Spinner+{i}")
    run(s, "bd 1-3")
    assert [line.split()[1] for line in run(s, "bl")] == ["e", "d", "d", "d", "e"]
    run(s, "be 2, 3")
    assert [line.split()[1] for line in run(s, "bl")] == ["e", "d", "e", "e", "e"]
    run(s, "bc 0 4")
    assert [int(line.split()[0]) for line in run(s, "bl")] == [1, 2, 3]
    run(s, "bp st!Helper")  # the lowest free number
    assert run(s, "bl")[0].startswith("     0 e")
    run(s, "bd *")
    run(s, "be 2")
    out = run(s, "g")  # only breakpoint 2 (st!Spinner+2) is armed
    assert out[0] == "Breakpoint 2 hit"
    run(s, "bc *")
    assert run(s, "bl") == []
    assert "Syntax error" in run(s, "bc x")[0]


# -- processors, break-in, bug checks ---------------------------------------------------------

def test_switching_processor_changes_prompt_registers_and_current_thread():
    m, s = live("Spinner")
    for n in (1, 0):
        assert run(s, f"~{n}s") == []
        assert s.prompt == f"{n}: kd> "
        rip = s.target.registers(n)["rip"]
        assert run(s, "r rip") == [f"rip={rip:016x}"]
        thread = run(s, "? @$thread")[0].split()[-1].replace("`", "")
        assert int(thread, 16) == current_thread(m, n)
    assert run(s, "~2s") == ["        ^ Syntax error in '~2s'"]
    assert run(s, "~x") == ["        ^ Syntax error in '~x'"]


def test_break_in_stops_the_run_with_the_keyboard_banner():
    m, s = live("Spinner")
    s.break_in()
    out = run(s, "g")
    assert out[0] == "Break instruction exception - code 80000003 (first chance)"
    assert out[1] == "*" * 79 and out[14] == "*" * 79
    assert all(len(line) == 79 and line[0] == line[-1] == "*" for line in out[1:15])
    assert "THIS IS NOT A BUG OR A SYSTEM CRASH" in out[8]
    assert m.bugcheck is None and m.stop is None
    assert LOCATION.match(out[-1])


def test_g_into_a_bug_check_prints_the_fatal_error_break_in():
    m, s = live("Crasher")
    out = run(s, "g")
    halt = m.bugcheck
    assert halt is not None
    assert out[0] == "KDTARGET: Refreshing KD connection"
    assert out[2] == f"*** Fatal System Error: 0x{halt.code:08x}"
    assert out[3] == " " * 23 + "(" + ",".join(f"0x{p:016X}" for p in halt.params) + ")"
    assert "For analysis of this file, run !analyze -v" in out
    assert s.processor == halt.processor == s.target.stop_processor


@pytest.mark.parametrize("line", ["g", "t", "p", "gu", "p 3"])
def test_run_control_on_the_crashed_default_machine_reports_the_bug_check(app, session, line):
    out = run(session, line)
    halt = app.machine.bugcheck
    assert out[2] == f"*** Fatal System Error: 0x{halt.code:08x}"
    assert f"0x{halt.params[3]:016X}" in out[3]
    rip = app.target.registers(halt.processor)["rip"]
    assert out[-2] == f"{session.symbols.name_for(rip)}:"
    assert out[-1].startswith(f"{rip >> 32:08x}`{rip & 0xFFFFFFFF:08x}")
    assert session.processor == halt.processor


def test_breakpoints_on_the_crashed_machine_leave_its_memory_alone(app, session):
    address = session.symbols.address_of("myfault!MyfaultHighIrqlFault")
    before = app.machine.kspace.read(address, 1)
    run(session, "bp myfault!MyfaultHighIrqlFault; ba w8 nt!KiBugCheckData")
    run(session, "g")
    assert app.machine.kspace.read(address, 1) == before
    assert not app.machine.data_breakpoints.armed


class DumpLike:
    """A target that is not live: every read passes through, run control does not exist."""

    def __init__(self, target) -> None:
        self._t = target
        self.is_live = False

    def __getattr__(self, name):
        if name in ("go", "step_into", "step_over", "step_out", "break_in"):
            raise AttributeError(name)
        return getattr(self._t, name)


@pytest.mark.parametrize("line", ["g", "p", "t 2", "gu", "pc", "ta 0"])
def test_run_control_on_a_target_that_cannot_run(app, line):
    s = Session(DumpLike(app.target), processor=0)
    assert run(s, line) == [f"       ^ No runnable debuggees error in '{line}'"]
