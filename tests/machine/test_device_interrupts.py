"""A driver connects an ISR; a simulated device raises its vector; the interrupt goes
through the IDT gate, KiIsrThunk and the KINTERRUPT to the ISR, at the device's IRQL."""

from __future__ import annotations

from machine.ke.idt import read_gate
from machine.machine import STEPS_PER_TICK
from machine.scenario import boot_scenario, parse_scenario
from machine.types.view import Struct
from tests.machine.probe import connect_interrupt_code, probe_scenario

ROUTINES = {
    # ProcessorEnableMask 1: processor 0 only
    "DriverEntry": "    sub     rsp, 68h\n" + connect_interrupt_code(1) + """
    xor     eax, eax
    add     rsp, 68h
    ret
""",
    "Isr": """
    mov     rax, cr8
    mov     qword ptr [IsrIrql], rax
    mov     qword ptr [IsrContext], rdx
    lock inc qword ptr [IsrCount]
    mov     al, 1                           ; TRUE: ours
    ret
""",
}
GLOBALS = {"Interrupt": 8, "ConnectStatus": 8, "IsrIrql": 8, "IsrContext": 8, "IsrCount": 8}
DEVICE = '''
[[event]]
at_tick = 1
action = "start_device"
name = "disk"
vector = 0x80
processor = 0
period_ticks = 2
'''


def test_a_device_interrupt_reaches_the_connected_isr_at_its_irql():
    m = boot_scenario(parse_scenario(probe_scenario("isr", ROUTINES, GLOBALS) + DEVICE,
                                     "isr.toml"))
    read = lambda name: m.kspace.read_u64(m.sym(f"isr!{name}"))  # noqa: E731
    assert read("ConnectStatus") == 0
    interrupt = read("Interrupt")
    k = Struct(m.kspace, "_KINTERRUPT", interrupt)
    assert k.get("Vector") == 0x80 and k.get("ServiceRoutine") == m.sym("isr!Isr")
    proc = m.processors[0]
    assert Struct(m.kspace, "_KPRCB", proc.prcb).get("InterruptObject[128]") == interrupt
    assert read_gate(m.kspace, proc.idt, 0x80) == m.sym("nt!KiIsrThunk") + 0x80 * 8
    assert read_gate(m.kspace, m.processors[1].idt, 0x80) is None  # not on processor 1
    m.run(STEPS_PER_TICK * 11)
    device = m.devices[0]
    assert device.raised >= 5
    assert read("IsrCount") == device.raised == k.get("ServiceCount")
    assert read("IsrIrql") == 8 and read("IsrContext") == 0x1234
    assert m.bugcheck is None
