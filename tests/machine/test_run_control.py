"""Run control: breakpoints are int 3 bytes in memory; stepping (t, p), running to the
return address (gu); break-in; every processor stopped at the same global step."""

from __future__ import annotations

import pytest
from iced_x86 import Decoder, Mnemonic

from commands.session import Session
from kdsim.live import LiveTarget
from machine.cpu import strings
from machine.ex.pool import POOL_HEADER_SIZE, tag_value
from machine.kd.snapshot import memory_digest
from machine.scenario import boot_scenario, builtin_scenario
from machine.types.view import Struct
from tests.machine.probe import (
    DELAYED_THREAD_GLOBALS,
    boot_probe,
    decoded,
    delayed_thread,
    start_system_thread,
)


def machine():
    return boot_scenario(builtin_scenario("myfault"))


def test_a_breakpoint_in_driver_code_stops_every_processor_there():
    m = machine()
    target = m.sym("myfault!MyfaultHighIrqlFault")
    original = m.kspace.read(target, 1)
    m.set_breakpoint(target)
    assert m.kspace.read(target, 1) == b"\xcc"  # really in memory
    result = m.run()
    assert result.reason == "breakpoint" and m.bugcheck is None
    proc = m.processors[m.stop.processor]
    assert proc.cpu.rip == target == m.stop.address
    # one instruction (push rbx) executes with the original byte, the int 3 stays put
    sp = proc.cpu.regs[4]
    assert m.step_instruction(proc.number).reason == "step"
    assert proc.cpu.rip == target + len(bytes.fromhex("53"))
    assert proc.cpu.regs[4] == sp - 8
    assert m.kspace.read(target, 1) == b"\xcc"
    m.clear_breakpoint(target)
    assert m.kspace.read(target, 1) == original
    assert m.run().reason == "bugcheck" and m.bugcheck.code == 0xD1


def test_resuming_from_a_breakpoint_runs_on_until_the_next_stop():
    m = machine()
    target = m.sym("myfault!MyfaultHighIrqlFault")
    m.set_breakpoint(target)
    assert m.run().reason == "breakpoint"
    result = m.run()  # steps off the breakpoint, and the driver goes on to crash
    assert result.reason == "bugcheck" and m.bugcheck.code == 0xD1


def test_a_breakpoint_on_a_kernel_routine_stops_before_it_runs():
    m = machine()
    m.set_breakpoint(m.sym("nt!KeBugCheckEx"))
    result = m.run()
    assert result.reason == "breakpoint" and m.bugcheck is None
    assert m.processors[m.stop.processor].cpu.rip == m.sym("nt!KeBugCheckEx")
    assert m.run().reason == "bugcheck"


def test_break_in_stops_before_the_next_step():
    m = machine()
    m.request_break()
    assert m.run().reason == "break"
    assert m.bugcheck is None


# -- step over (p), run to return (gu), and every processor at the same step ----------------

BUDGET = 20_000  # steps a p or gu may take here (a wrong target runs out)
STEPPING = {
    "DriverEntry": """
    sub     rsp, 28h
    lea     rcx, [EventA]
    xor     edx, edx                ; NotificationEvent
    xor     r8d, r8d                ; not signaled
    call    nt!KeInitializeEvent
    lea     rcx, [EventB]
    xor     edx, edx
    mov     r8d, 1                  ; signaled
    call    nt!KeInitializeEvent
    xor     eax, eax
    add     rsp, 28h
    ret
""",
    "Caller": """
    sub     rsp, 28h
    mov     ebx, 11h
    mov     ecx, 5
    call    Helper
    mov     qword ptr [Result], rax
    mov     r8d, 74736554h          ; 'Test'
    mov     edx, 40h
    xor     ecx, ecx                ; NonPagedPool
    call    nt!ExAllocatePoolWithTag
    mov     qword ptr [Block], rax
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
    # Waiter and Releaser share the wait and what follows it: Waiter waits on EventA,
    # Releaser on EventB (already signaled), then sets EventA for the waiter.
    "Waiter": """
    sub     rsp, 38h
    lea     rbx, [EventA]
shared_wait:
    mov     qword ptr [rsp+20h], 0  ; no timeout
    xor     r9d, r9d
    xor     r8d, r8d
    xor     edx, edx
    mov     rcx, rbx
    call    nt!KeWaitForSingleObject
    lock inc qword ptr [Passed]
    lea     rcx, [EventB]
    cmp     rbx, rcx
    jne     w_park
    xor     r8d, r8d
    xor     edx, edx
    lea     rcx, [EventA]
    call    nt!KeSetEvent
w_park:
    pause
    jmp     w_park
""",
    "Releaser": """
    sub     rsp, 38h
    lea     rbx, [EventB]
    jmp     shared_wait
""",
    "Returner": """
    sub     rsp, 28h
    mov     eax, 7
    add     rsp, 28h
    ret
""",
    "Spinner": """
    xor     ebx, ebx
s_loop:
    inc     rbx
    jmp     s_loop
""",
    "Filler": """
    sub     rsp, 28h
    lea     rdi, [Buffer]
    mov     eax, 5Ah
    mov     ecx, 10h
    rep     stosb
    mov     qword ptr [Result], rcx
f_park:
    pause
    jmp     f_park
""",
}
STEPPING_GLOBALS = {"Result": 8, "Block": 8, "EventA": 24, "EventB": 24, "Passed": 8,
                    "Buffer": 16}


def stepping_machine(cpus: int = 2):
    return boot_probe("st", STEPPING, STEPPING_GLOBALS, cpus=cpus)


def system_thread(m, tid: int, routine: str, ideal: int = 0):
    """A system thread running st!routine, queued on processor `ideal`."""
    return start_system_thread(m, tid, m.sym(f"st!{routine}"), ideal)


def instructions(m, routine: str, mnemonic: int, limit: int = 0x80) -> list[int]:
    """Addresses of the instructions with `mnemonic` in st!routine, decoded from memory."""
    return [ins.ip for ins in decoded(m, m.sym(f"st!{routine}"), mnemonic, limit)]


def stop_at(m, address: int):
    """Run until a breakpoint at address stops a processor there; the breakpoint is
    cleared again.  Returns that processor."""
    m.set_breakpoint(address)
    assert m.run(50_000).reason == "breakpoint"
    m.clear_breakpoint(address)
    proc = m.processors[m.stop.processor]
    assert proc.cpu.rip == address
    return proc


def regs(m, proc) -> dict[str, int]:
    return LiveTarget(m).registers(proc.number)


def current_thread(m, proc) -> int:
    return Struct(m.kspace, "_KPRCB", proc.prcb).get("CurrentThread")


def test_step_over_a_driver_call_lands_after_it_with_the_callee_done():
    m = stepping_machine()
    system_thread(m, 0x4000, "Caller")
    call = instructions(m, "Caller", Mnemonic.CALL)[0]
    proc = stop_at(m, call)
    before = regs(m, proc)
    thread = current_thread(m, proc)
    result = m.step_over(proc.number, BUDGET)
    assert result.reason == "step" and result.processor == proc.number and m.stop is None
    after = regs(m, proc)
    assert after["rip"] == call + 5  # call rel32
    assert after["rsp"] == before["rsp"]  # the call's frame is popped
    assert after["rax"] == 10 and after["rbx"] == 0x11  # Helper ran, rbx restored
    assert current_thread(m, proc) == thread
    # a plain instruction is one step, as `t`
    assert m.step_over(proc.number, BUDGET).reason == "step"
    assert m.kspace.read_u64(m.sym("st!Result")) == 10


def test_step_over_a_native_call_returns_its_result():
    m = stepping_machine()
    system_thread(m, 0x4000, "Caller")
    call = instructions(m, "Caller", Mnemonic.CALL)[1]
    assert Decoder(64, m.kspace.read(call, 5), ip=call).decode().near_branch_target == \
        m.sym("nt!ExAllocatePoolWithTag")
    proc = stop_at(m, call)
    rsp = proc.cpu.regs[4]
    assert m.step_over(proc.number, BUDGET).reason == "step"
    after = regs(m, proc)
    assert after["rip"] == call + 5 and after["rsp"] == rsp
    header = Struct(m.kspace, "_POOL_HEADER", after["rax"] - POOL_HEADER_SIZE)
    assert header.get("PoolTag") == tag_value("Test")  # a real pool block came back


def test_step_over_a_blocking_wait_follows_the_thread_not_the_code():
    m = stepping_machine()
    waiter = system_thread(m, 0x4000, "Waiter", ideal=0)
    call = instructions(m, "Waiter", Mnemonic.CALL)[0]
    proc = stop_at(m, call)
    rsp = proc.cpu.regs[4]
    # Another thread runs the same wait and passes the same return address first.
    system_thread(m, 0x4004, "Releaser", ideal=1)
    result = m.step_over(proc.number, BUDGET)
    assert result.reason == "step"
    where = m.processors[result.processor]
    assert current_thread(m, where) == waiter.ethread
    assert where.cpu.rip == call + 5 and where.cpu.regs[4] == rsp
    assert where.cpu.regs[0] == 0  # STATUS_WAIT_0
    assert m.kspace.read_u64(m.sym("st!Passed")) == 1  # the releaser went by already
    assert Struct(m.kspace, "_KTHREAD", waiter.ethread).get("State") == 2  # Running


def test_step_over_stops_at_a_breakpoint_inside_the_callee():
    m = stepping_machine()
    system_thread(m, 0x4000, "Caller")
    call = instructions(m, "Caller", Mnemonic.CALL)[0]
    proc = stop_at(m, call)
    helper = m.sym("st!Helper")
    m.set_breakpoint(helper)
    result = m.step_over(proc.number, BUDGET)
    assert result.reason == "breakpoint" and m.stop.address == helper
    assert proc.cpu.rip == helper
    assert m.kspace.read_u64(proc.cpu.regs[4]) == call + 5  # the call's frame is there
    m.clear_breakpoint(helper)
    assert m.step_out(proc.number, BUDGET).reason == "step"  # gu from the callee's entry (leaf)
    assert proc.cpu.rip == call + 5 and proc.cpu.regs[0] == 10


def test_step_over_stops_at_a_data_breakpoint_inside_the_callee():
    m = stepping_machine()
    system_thread(m, 0x4000, "Caller")
    call = instructions(m, "Caller", Mnemonic.CALL)[0]
    proc = stop_at(m, call)
    slot = proc.cpu.regs[4] - 16  # where Helper's push rbx goes, below the return address
    m.set_data_breakpoint(slot, 8, "w")
    result = m.step_over(proc.number, BUDGET)
    assert result.reason == "breakpoint" and m.stop.access == "write"
    assert m.stop.accessed == slot and m.stop.processor == proc.number
    assert proc.cpu.rip == m.sym("st!Helper") + 1  # after the push
    assert m.kspace.read_u64(slot) == 0x11
    m.clear_data_breakpoint(m.stop.slot)
    assert m.step_out(proc.number, BUDGET).reason == "step"
    assert proc.cpu.rip == call + 5 and proc.cpu.regs[0] == 10


@pytest.mark.parametrize("where", [0, 1, 5, 8, 0xC, 0x10, 0x11])
def test_run_to_return_from_anywhere_in_a_driver_routine(where):
    """Entry, after each prologue instruction, the body, and the epilogue (add rsp / pop /
    ret): the return address comes from the unwind data (or the epilogue) every time."""
    m = stepping_machine()
    system_thread(m, 0x4000, "Caller")
    call = instructions(m, "Caller", Mnemonic.CALL)[0]
    rsp = stop_at(m, call).cpu.regs[4]
    proc = stop_at(m, m.sym("st!Helper") + where)
    assert proc.cpu.regs[4] < rsp
    result = m.step_out(proc.number, BUDGET)
    assert result.reason == "step"
    after = regs(m, proc)
    assert after["rip"] == call + 5 and after["rsp"] == rsp
    assert after["rax"] == 10 and after["rbx"] == 0x11


def test_run_to_return_from_a_routine_nt_called_lands_in_nt():
    m = stepping_machine()
    thread = system_thread(m, 0x4000, "Returner")
    proc = stop_at(m, m.sym("st!Returner") + 4)  # after sub rsp, 28h
    ret = m.kspace.read_u64(proc.cpu.regs[4] + 0x28)  # pushed by nt's call
    startup = m.sym("nt!PspSystemThreadStartup")
    assert startup < ret < startup + 0x80
    assert m.step_out(proc.number, BUDGET).reason == "step"
    assert proc.cpu.rip == ret and proc.cpu.regs[0] == 7
    assert current_thread(m, proc) == thread.ethread
    # the debugger's unwinder sees the thread inside nt's routine, its frame intact
    s = Session(LiveTarget(m), processor=proc.number)
    assert "nt!PspSystemThreadStartup+0x" in "\n".join(s.execute("k")[0].lines)
    assert m.run(2000).reason == "budget"  # nt goes on: the thread exits


def test_step_over_a_rep_string_instruction_runs_it_whole(monkeypatch):
    monkeypatch.setattr(strings, "REP_CHUNK", 4)  # four elements a step
    m = stepping_machine()
    system_thread(m, 0x4000, "Filler")
    start = m.sym("st!Filler")
    rep = next(ins for ins in Decoder(64, m.kspace.read(start, 0x40), ip=start)
               if ins.has_rep_prefix)
    proc = stop_at(m, rep.ip)
    assert m.step_instruction(proc.number).reason == "step"  # `t`: one chunk
    assert proc.cpu.rip == rep.ip and proc.cpu.regs[1] == 12
    assert m.step_over(proc.number, BUDGET).reason == "step"  # `p`: the rest
    assert proc.cpu.rip == rep.next_ip and proc.cpu.regs[1] == 0
    assert m.kspace.read(m.sym("st!Buffer"), 16) == b"Z" * 16


def twin_at(steps: int, threads):
    """An identical machine (same scenario, same threads) run for exactly `steps` global
    steps with no debugger involved."""
    twin = stepping_machine()
    for args in threads:
        system_thread(twin, *args)
    twin.run(steps - twin.steps)
    assert twin.steps == steps
    return twin


def test_a_breakpoint_stop_lets_every_other_processor_finish_the_step():
    threads = [(0x4000, "Caller", 0), (0x4004, "Spinner", 1)]
    m = stepping_machine()
    for args in threads:
        system_thread(m, *args)
    call = instructions(m, "Caller", Mnemonic.CALL)[0]
    proc = stop_at(m, call)
    assert proc.number == 0  # processor 1 comes after it in each step
    twin = twin_at(m.steps, threads)
    assert regs(m, m.processors[1]) == regs(twin, twin.processors[1])
    assert regs(m, m.processors[1])["rbx"] > 0  # the spinner is really moving
    # after p as well (processor 0 itself is an instruction behind the twin: it spent a
    # step on the breakpoint)
    assert m.step_over(0, BUDGET).reason == "step"
    twin = twin_at(m.steps, threads)
    assert regs(m, m.processors[1]) == regs(twin, twin.processors[1])
    assert regs(twin, twin.processors[0])["rip"] == call + 5 + 7  # past the next mov


def test_step_over_and_run_to_return_replay_from_a_snapshot():
    m = boot_probe("st", {**STEPPING, **delayed_thread("Caller")},
                   {**STEPPING_GLOBALS, **DELAYED_THREAD_GLOBALS})
    snap = m.snapshot()
    call = instructions(m, "Caller", Mnemonic.CALL)[0]
    m.set_breakpoint(call)
    assert m.run().reason == "breakpoint"
    m.clear_breakpoint(call)
    number = m.stop.processor
    m.set_breakpoint(m.sym("st!Helper"))
    assert m.step_over(number, BUDGET).reason == "breakpoint"
    m.clear_breakpoint(m.sym("st!Helper"))
    assert m.step_out(number, BUDGET).reason == "step"
    assert m.step_over(number, BUDGET).reason == "step"
    again = m.snapshot().restore()
    assert memory_digest(again) == memory_digest(m)
    assert regs(again, again.processors[number]) == regs(m, m.processors[number])
    assert [a[0] for a in again.journal[len(snap.journal):]] == \
        ["bp+", "run", "bp-", "bp+", "p", "bp-", "gu", "p"]
