"""The per-processor IDT lives in memory and every vector is dispatched through it."""

from __future__ import annotations

from machine.ke.idt import idt_table, read_gate, write_gate
from machine.machine import STEPS_PER_TICK
from machine.types.view import Struct
from tests.machine.probe import boot_probe


def machine():
    routines = {"HookedClock": """
    lock inc qword ptr [Hits]
    jmp nt!HalpTimerClockInterrupt
"""}
    return boot_probe("hooker", routines, {"Hits": 8})


def test_every_processor_has_its_own_idt_with_the_windows_handlers():
    m = machine()
    idts = set()
    for proc in m.processors:
        idt = Struct(m.kspace, "_KPCR", proc.pcr).get("IdtBase")
        idts.add(idt)
        for gate in idt_table():
            assert read_gate(m.kspace, idt, gate.vector) == m.sym(f"nt!{gate.handler}")
        assert read_gate(m.kspace, idt, 0x0E) == m.sym("nt!KiPageFault")
        assert read_gate(m.kspace, idt, 0xD1) == m.sym("nt!HalpTimerClockInterrupt")
        e = Struct(m.kspace, "_KIDTENTRY64", idt + 0x0E * 16)
        assert (e.get("Present"), e.get("Type"), e.get("Selector")) == (1, 0xE, 0x10)
        assert read_gate(m.kspace, idt, 0x40) is None  # no device connected there
    assert len(idts) == len(m.processors)


def test_a_hooked_gate_on_one_cpu_really_runs_the_hook():
    m = machine()
    hits = m.sym("hooker!Hits")
    write_gate(m.kspace, m.processors[1].idt, 0xD1, m.sym("hooker!HookedClock"))
    start = m.kspace.read_u64(m.sym("nt!KeTickCount"))
    m.run(STEPS_PER_TICK * 3)
    for _ in range(50):  # let an interrupt taken in the last step finish
        m._global_step()
    ticks = m.kspace.read_u64(m.sym("nt!KeTickCount")) - start  # CPU 0 keeps time
    assert ticks >= 3
    assert m.kspace.read_u64(hits) == ticks  # every clock interrupt on CPU 1 went through it
    assert m.bugcheck is None
    assert all(p.irql == 0 for p in m.processors)


def test_rdmsr_reads_the_msrs_the_kernel_programmed():
    routines = {"ReadLstar": """
    mov     ecx, 0C0000082h             ; IA32_LSTAR
    rdmsr
    shl     rdx, 32
    or      rax, rdx
    mov     qword ptr [Lstar], rax
lstar_park:
    pause
    jmp     lstar_park
"""}
    from tests.machine.probe import start_system_thread

    m = boot_probe("msr", routines, {"Lstar": 8})
    start_system_thread(m, 0xB000, m.sym("msr!ReadLstar"))
    m.run(3000)
    assert m.kspace.read_u64(m.sym("msr!Lstar")) == m.sym("nt!KiSystemCall64")
