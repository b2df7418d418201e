"""Data breakpoints (kd `ba`): the processors' debug registers, checked on every access
an x64 instruction makes (and on kernel routines' writes); write and read/write hits trap
after the instruction, execute hits fault before it."""

from __future__ import annotations

import pytest
from iced_x86 import Decoder, Mnemonic

from kdsim.live import LiveTarget
from machine.asm.assembler import assemble as asm
from machine.cpu import DebugException
from machine.cpu.debugregs import RW_READWRITE, encode_dr7
from machine.cpu.harness import CODE, DATA, Harness
from machine.kd.databp import DataBreakpointError, DataBreakpointHit
from machine.kd.snapshot import memory_digest
from machine.types.view import Struct
from tests.machine.probe import (
    DELAYED_THREAD_GLOBALS,
    boot_probe,
    decoded,
    delayed_thread,
    start_system_thread,
)

BUDGET = 20_000  # steps a p or gu may take here (a wrong target runs out)
ROUTINES = {
    "DriverEntry": """
    sub     rsp, 28h
    lea     rcx, [Event]
    xor     edx, edx                ; NotificationEvent
    xor     r8d, r8d
    call    nt!KeInitializeEvent
    xor     eax, eax
    add     rsp, 28h
    ret
""",
    "Writer": """
    xor     eax, eax
w_loop:
    inc     rax
    mov     qword ptr [Counter], rax
    mov     rcx, qword ptr [Other]
    jmp     w_loop
""",
    "Spinner": """
    xor     ebx, ebx
s_loop:
    inc     rbx
    jmp     s_loop
""",
    "Strings": """
    sub     rsp, 28h
    lea     rdi, [Buffer]
    mov     rax, 1111111111111111h
    mov     ecx, 4
    rep     stosq                   ; Buffer[0..3], element 2 is watched
    lock xadd qword ptr [Counter], rax
    lea     rsi, [Buffer]
    lea     rdi, [Copy]
    mov     ecx, 20h
    rep     movsb                   ; reads Buffer again
str_park:
    pause
    jmp     str_park
""",
    "Setter": """
    sub     rsp, 28h
    xor     r8d, r8d
    xor     edx, edx
    lea     rcx, [Event]
    call    nt!KeSetEvent
    lock inc qword ptr [Counter]
set_park:
    pause
    jmp     set_park
""",
}
GLOBALS = {"Counter": 8, "Other": 8, "Buffer": 32, "Copy": 32, "Event": 24}


def machine(cpus: int = 2):
    return boot_probe("db", ROUTINES, GLOBALS, cpus=cpus)


def system_thread(m, tid: int, routine: str, ideal: int):
    return start_system_thread(m, tid, m.sym(f"db!{routine}"), ideal)


def instruction(m, routine: str, mnemonic: int, nth: int = 0):
    return decoded(m, m.sym(f"db!{routine}"), mnemonic, 0x60)[nth]


def special_registers(m, proc) -> Struct:
    """Where kd reads a processor's debug registers: KPRCB.ProcessorState."""
    return Struct(m.kspace, "_KPRCB", proc.prcb).sub("ProcessorState.SpecialRegisters")


def writer_on(cpu: int):
    """Writer on processor `cpu`, Spinner on the other."""
    m = machine()
    system_thread(m, 0x4000, "Writer", cpu)
    system_thread(m, 0x4004, "Spinner", 1 - cpu)
    m.run(300)
    return m


def test_a_write_breakpoint_traps_after_the_store_on_another_processor():
    m = writer_on(1)
    counter = m.sym("db!Counter")
    bp = m.set_data_breakpoint(counter, 8, "w")
    for p in m.processors:  # every processor's DR0/DR7, in the KPRCB too
        special = special_registers(m, p)
        assert special.get("KernelDr0") == counter
        # L0, RW0 = 01 (write), LEN0 = 10 (8 bytes), and DR7's always-one bit 10
        assert special.get("KernelDr7") == 0x1 | 0x1 << 16 | 0b10 << 18 | 0x400
        assert LiveTarget(m).registers(p.number)["dr7"] == special.get("KernelDr7")
    store = instruction(m, "Writer", Mnemonic.MOV)
    assert m.run(5000).reason == "breakpoint"
    hit = m.stop
    assert isinstance(hit, DataBreakpointHit)
    assert (hit.processor, hit.slot, hit.access, hit.accessed) == (1, bp.slot, "write", counter)
    proc = m.processors[1]
    regs = LiveTarget(m).registers(1)
    assert regs["rip"] == store.next_ip == hit.rip  # a trap: after the instruction
    assert m.kspace.read_u64(counter) == regs["rax"]  # the store is done
    assert regs["dr6"] & 0xF == 1 and special_registers(m, proc).get("KernelDr6") & 1
    assert special_registers(m, m.processors[0]).get("KernelDr6") & 0xF == 0
    # continuing: the next iteration's store is the next hit
    first = regs["rax"]
    assert m.run(5000).reason == "breakpoint" and m.stop.slot == bp.slot
    assert m.kspace.read_u64(counter) == first + 1
    assert LiveTarget(m).registers(1)["rip"] == store.next_ip


def test_a_write_breakpoint_stop_lets_the_later_processor_finish_the_step():
    m = writer_on(0)
    twin = writer_on(0)
    m.set_data_breakpoint(m.sym("db!Counter"), 8, "w")
    assert m.run(5000).reason == "breakpoint" and m.stop.processor == 0
    twin.run(m.steps - twin.steps)
    assert twin.steps == m.steps
    for n in (0, 1):  # the store (a trap) and the spinner both completed this step
        mine = LiveTarget(m).registers(n)
        theirs = LiveTarget(twin).registers(n)
        for name in ("rip", "rsp", "rax", "rbx", "rcx"):
            assert mine[name] == theirs[name], (n, name)


def test_a_read_write_breakpoint_catches_a_read_and_a_write_one_does_not():
    m = writer_on(1)
    other = m.sym("db!Other")
    load = instruction(m, "Writer", Mnemonic.MOV, 1)
    w = m.set_data_breakpoint(other, 8, "w")
    assert m.run(3000).reason == "budget"  # Other is only read
    m.clear_data_breakpoint(w.slot)
    rw = m.set_data_breakpoint(other, 8, "r")
    assert m.run(3000).reason == "breakpoint"
    assert (m.stop.slot, m.stop.access, m.stop.accessed) == (rw.slot, "read", other)
    assert m.processors[1].cpu.rip == load.next_ip
    assert m.run(3000).reason == "breakpoint" and m.stop.access == "read"  # again


def test_an_execute_breakpoint_faults_before_the_instruction_and_resumes_over_it():
    m = writer_on(1)
    counter = m.sym("db!Counter")
    store = instruction(m, "Writer", Mnemonic.MOV)
    bp = m.set_data_breakpoint(store.ip, 1, "e")
    assert special_registers(m, m.processors[0]).get("KernelDr7") == 0x401  # RW0=00 LEN0=00
    assert m.run(5000).reason == "breakpoint"
    proc = m.processors[1]
    assert (m.stop.access, m.stop.slot, proc.cpu.rip) == ("execute", bp.slot, store.ip)
    assert m.kspace.read_u64(counter) == proc.cpu.regs[0] - 1  # not stored yet
    assert proc.cpu.dr[6] & 1
    # `t` executes it (RF), without stopping on it again
    assert m.step_instruction(1).reason == "step"
    assert proc.cpu.rip == store.next_ip and m.kspace.read_u64(counter) == proc.cpu.regs[0]
    assert proc.cpu.dr[6] & 0xF == 0
    # the next time round, it stops again
    assert m.run(5000).reason == "breakpoint" and proc.cpu.rip == store.ip


def test_an_execute_breakpoint_on_a_kernel_routine_stops_before_it_runs():
    m = machine()
    system_thread(m, 0x4000, "Setter", 0)
    set_event = m.sym("nt!KeSetEvent")
    m.set_data_breakpoint(set_event, 1, "e")
    assert m.run(5000).reason == "breakpoint"
    proc = m.processors[m.stop.processor]
    assert proc.cpu.rip == set_event and m.stop.access == "execute"
    assert Struct(m.kspace, "_DISPATCHER_HEADER", m.sym("db!Event")).get("SignalState") == 0
    assert m.run(3000).reason == "budget"  # resumed over it: the routine runs once
    assert Struct(m.kspace, "_DISPATCHER_HEADER", m.sym("db!Event")).get("SignalState") == 1


def test_a_kernel_routines_write_stops_after_its_step_with_its_frame_intact():
    m = machine()
    system_thread(m, 0x4000, "Setter", 0)
    event = m.sym("db!Event")
    header = Struct(m.kspace, "_DISPATCHER_HEADER", event)
    m.set_data_breakpoint(header.addr("SignalState"), 4, "w")
    assert m.run(5000).reason == "breakpoint"
    hit = m.stop
    assert hit.routine == "KeSetEvent" and hit.access == "write"
    assert hit.accessed == header.addr("SignalState")
    assert header.get("SignalState") == 1  # the write happened
    proc = m.processors[hit.processor]
    assert proc.cpu.dr[6] & 1
    assert m.kspace.read_u64(m.sym("db!Counter")) == 0
    assert m.run(3000).reason == "budget"  # KeSetEvent returns, the driver goes on
    assert m.kspace.read_u64(m.sym("db!Counter")) == 1


def test_string_and_locked_instructions_hit_too():
    m = machine()
    buffer = m.sym("db!Buffer")
    rep = instruction(m, "Strings", Mnemonic.STOSQ)
    m.set_data_breakpoint(buffer + 16, 8, "w")
    m.set_data_breakpoint(m.sym("db!Counter"), 8, "w")
    system_thread(m, 0x4000, "Strings", 1)
    assert m.run(5000).reason == "breakpoint"
    cpu = m.processors[m.stop.processor].cpu
    # after the third element: rip still on the rep instruction, one element left
    assert (m.stop.slot, m.stop.accessed) == (0, buffer + 16)
    assert cpu.rip == rep.ip and cpu.regs[1] == 1 and cpu.regs[7] == buffer + 24
    assert m.kspace.read_u64(buffer + 24) == 0
    assert m.run(5000).reason == "breakpoint"  # lock xadd on Counter
    assert m.stop.slot == 1 and m.stop.access == "write"
    assert m.kspace.read_u64(buffer + 24) == 0x1111111111111111  # the rep finished first
    assert m.kspace.read_u64(m.sym("db!Counter")) == 0x1111111111111111
    m.clear_data_breakpoint(0)
    m.set_data_breakpoint(buffer + 16, 8, "r")  # the movsb reads it
    assert m.run(5000).reason == "breakpoint" and m.stop.access == "read"
    assert m.stop.accessed == buffer + 16 and cpu.regs[1] == 0x20 - 17


def test_requests_the_debug_registers_cannot_hold_are_rejected():
    m = machine()
    counter = m.sym("db!Counter")
    journal = len(m.journal)
    with pytest.raises(DataBreakpointError, match="aligned"):
        m.set_data_breakpoint(counter + 4, 8, "w")
    with pytest.raises(DataBreakpointError, match="aligned"):
        m.set_data_breakpoint(counter + 1, 2, "r")
    with pytest.raises(DataBreakpointError):
        m.set_data_breakpoint(counter, 3, "w")
    with pytest.raises(DataBreakpointError):
        m.set_data_breakpoint(counter, 4, "e")
    for i in range(4):
        m.set_data_breakpoint(counter + 8 * i, 8, "w")
    with pytest.raises(DataBreakpointError, match="in use"):
        m.set_data_breakpoint(counter + 32, 8, "w")
    with pytest.raises(DataBreakpointError):
        m.clear_data_breakpoint(7)
    assert [a[0] for a in m.journal[journal:]] == ["ba+"] * 4
    assert m.processors[0].cpu.dr[0:4] == [counter + 8 * i for i in range(4)]


def test_the_debuggers_own_reads_never_hit():
    m = writer_on(1)
    other = m.sym("db!Other")
    m.set_data_breakpoint(other, 8, "w")
    m.set_data_breakpoint(m.sym("db!Copy"), 8, "r")  # nobody runs the Strings routine
    target = LiveTarget(m)
    assert target.read_virtual(m.sym("db!Copy"), 8) == bytes(8)
    assert m.run(2000).reason == "budget"


def test_data_breakpoint_runs_replay_from_a_snapshot():
    m = boot_probe("db", {**ROUTINES, **delayed_thread("Writer")},
                   {**GLOBALS, **DELAYED_THREAD_GLOBALS})
    snap = m.snapshot()
    counter = m.sym("db!Counter")
    m.set_data_breakpoint(counter, 8, "w")
    assert m.run().reason == "breakpoint"
    number = m.stop.processor
    assert m.run().reason == "breakpoint"
    store = instruction(m, "Writer", Mnemonic.MOV)
    m.set_data_breakpoint(store.ip, 1, "e")
    assert m.run().reason == "breakpoint" and m.stop.access == "execute"
    assert m.step_over(number, BUDGET).reason == "breakpoint" and m.stop.slot == 0  # the store
    m.clear_data_breakpoint(0)
    assert m.run().reason == "breakpoint" and m.stop.slot == 1
    again = m.snapshot().restore()
    assert memory_digest(again) == memory_digest(m)
    assert again.processors[number].cpu.dr == m.processors[number].cpu.dr
    assert LiveTarget(again).registers(number) == LiveTarget(m).registers(number)
    assert str(again.stop) == str(m.stop)
    assert [a[0] for a in again.journal[len(snap.journal):]] == \
        ["ba+", "run", "run", "ba+", "run", "p", "ba-", "run"]
    # and both go on the same way
    assert (m.run().reason, again.run().reason) == ("breakpoint", "breakpoint")
    assert memory_digest(again) == memory_digest(m)


def test_the_cpu_checks_overlap_byte_by_byte_even_across_pages():
    """At the CPU alone: a read/write slot over DATA+0x1000..+0x1003 (a page start)."""
    code = asm("""
    mov     rax, qword ptr [rdi+0FFCh]      ; crosses into the watched page: hit
    mov     eax, dword ptr [rdi+0FF8h]      ; beside it: no hit
    mov     byte ptr [rdi+1003h], al        ; its last byte: hit
    mov     byte ptr [rdi+1004h], al        ; just past it: no hit
    nop
""", CODE)
    h = Harness(code.code)
    h.cpu.regs[7] = DATA
    h.cpu.set_debug_registers([DATA + 0x1000, 0, 0, 0],
                              encode_dr7([(RW_READWRITE, 4), None, None, None]))
    traps = []
    while h.cpu.rip != h.end:
        try:
            h.cpu.step()
        except DebugException as exc:
            traps.append((exc.rip - CODE, exc.hits))
    ends = [ins.next_ip - CODE for ins in Decoder(64, code.code, ip=CODE)]
    assert [t[0] for t in traps] == [ends[0], ends[2]]  # after the 1st and the 3rd
    assert traps[0][1] == ((0, DATA + 0xFFC, 8, "read"),)
    assert traps[1][1] == ((0, DATA + 0x1003, 1, "write"),)
    assert h.cpu.dr[6] == 0xFFFF0FF1
    h.cpu.set_debug_registers([0, 0, 0, 0], encode_dr7([None] * 4))
    assert "step" not in vars(h.cpu)  # plain stepping again
