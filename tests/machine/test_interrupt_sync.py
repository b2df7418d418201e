"""Device registers, level-sensitive lines, the interrupt spin lock and disconnection:
a driver maps its device's registers with MmMapIoSpace, acknowledges in its ISR,
synchronizes with KeSynchronizeExecution and disconnects; an ISR that never claims a
level-sensitive interrupt storms into HARDWARE_INTERRUPT_STORM."""

from __future__ import annotations

import pytest

from machine.hal.devices import REG_CONTROL, REG_EVENTS, REG_STATUS
from machine.ke.idt import read_gate
from machine.ke.interrupt import CONNECTION_PREFIX, STORM_THRESHOLD
from machine.machine import STEPS_PER_TICK
from machine.scenario import ScenarioError, boot_scenario, parse_scenario
from machine.types.view import Struct
from tests.machine.probe import connect_interrupt_code, probe_scenario, start_system_thread

REGISTERS = 0xFED40000


def entry(mask: int) -> str:
    return f"""
    sub     rsp, 68h
    mov     ecx, 0{REGISTERS:X}h
    mov     edx, 1000h
    xor     r8d, r8d                        ; MmNonCached
    call    nt!MmMapIoSpace
    mov     qword ptr [Regs], rax
    mov     dword ptr [rax+4], 1            ; CONTROL: interrupts enabled
""" + connect_interrupt_code(mask) + """
    xor     eax, eax
    add     rsp, 68h
    ret
"""


ACKING_ISR = """
    mov     rax, qword ptr [Regs]
    mov     ecx, dword ptr [rax]            ; STATUS
    test    ecx, 1
    jz      not_ours
    mov     dword ptr [rax], 0              ; acknowledge: the line drops
    lock inc qword ptr [IsrCount]
    mov     al, 1
    ret
not_ours:
    xor     eax, eax
    ret
"""

# Tests the wrong status bit: never sees its interrupt, never acknowledges it.
BUGGY_ISR = ACKING_ISR.replace("test    ecx, 1", "test    ecx, 2")

SYNC_CALLER = """
    sub     rsp, 28h
    mov     r8d, 55h
    lea     rdx, [SyncRoutine]
    mov     rcx, qword ptr [Interrupt]
    call    nt!KeSynchronizeExecution
    mov     qword ptr [SyncResult], rax
    mov     rax, cr8
    mov     qword ptr [AfterIrql], rax
    mov     rax, qword ptr [Regs]
    mov     dword ptr [rax+4], 0            ; CONTROL: interrupts off before disconnecting
    mov     rcx, qword ptr [Interrupt]
    call    nt!IoDisconnectInterrupt
    lock inc qword ptr [Done]
    add     rsp, 28h
    ret
"""

SYNC_ROUTINE = """
    mov     rax, cr8
    mov     qword ptr [SyncIrql], rax
    mov     rax, qword ptr [Interrupt]
    mov     rax, qword ptr [rax+48h]        ; ActualLock
    mov     rax, qword ptr [rax]
    mov     qword ptr [SyncLock], rax
    mov     qword ptr [SyncContext], rcx
    mov     eax, 1
    ret
"""

GLOBALS = {name: 8 for name in ("Regs", "Interrupt", "ConnectStatus", "IsrCount", "SyncResult",
                                "AfterIrql", "SyncIrql", "SyncLock", "SyncContext", "Done")}


def device(trigger: str = "level", registers: int = REGISTERS) -> str:
    return f'''
[[event]]
at_tick = 1
action = "start_device"
name = "nic"
vector = 0x80
processor = 0
period_ticks = 2
trigger = "{trigger}"
registers = {registers}
'''


def boot(isr: str, mask: int = 1, trigger: str = "level"):
    routines = {"DriverEntry": entry(mask), "Isr": isr, "SyncCaller": SYNC_CALLER,
                "SyncRoutine": SYNC_ROUTINE}
    text = probe_scenario("nic", routines, GLOBALS) + device(trigger)
    m = boot_scenario(parse_scenario(text, "nic.toml"))
    return m, (lambda name: m.kspace.read_u64(m.sym(f"nic!{name}")))


def test_the_driver_reaches_its_registers_through_the_mapping_and_acknowledges():
    m, read = boot(ACKING_ISR)
    regs = read("Regs")
    assert read("ConnectStatus") == 0
    # The mapping's PTE names the device's own frame.
    assert m.kspace.translate(regs) == REGISTERS
    m.run(STEPS_PER_TICK * 12)
    dev = m.devices[0]
    assert dev.raised >= 5
    events = m.kspace.read_int(regs + REG_EVENTS, 4)
    # Every event was acknowledged, except the latest if its interrupt is still to come.
    pending = m.kspace.read_int(regs + REG_STATUS, 4)
    assert pending == (0x80 in m.processors[0].pending)
    assert events == dev.raised == read("IsrCount") + pending
    assert m.kspace.read_int(regs + REG_CONTROL, 4) == 1
    k = Struct(m.kspace, "_KINTERRUPT", read("Interrupt"))
    assert k.get("ServiceCount") == events - pending and k.get("DispatchCount") == 0
    assert m.bugcheck is None


def test_an_isr_that_never_claims_a_level_interrupt_storms():
    m, read = boot(BUGGY_ISR)
    m.run(STEPS_PER_TICK * 12)
    interrupt = read("Interrupt")
    assert m.bugcheck is not None and m.bugcheck.code == 0xF2
    assert m.bugcheck.params == (m.sym("nic!Isr"), 0x1234, interrupt, 1)
    k = Struct(m.kspace, "_KINTERRUPT", interrupt)
    assert k.get("DispatchCount") == STORM_THRESHOLD
    assert k.get("ServiceCount") == STORM_THRESHOLD
    assert m.kspace.read_int(read("Regs") + REG_STATUS, 4) & 1  # never acknowledged
    assert m.bugcheck.processor == 0


def test_a_latched_device_does_not_storm_an_isr_that_misses_it():
    m, read = boot(BUGGY_ISR, trigger="latched")
    m.run(STEPS_PER_TICK * 12)
    assert m.bugcheck is None
    k = Struct(m.kspace, "_KINTERRUPT", read("Interrupt"))
    late = 0x80 in m.processors[0].pending
    assert m.devices[0].raised >= 5 and k.get("ServiceCount") == m.devices[0].raised - late


def test_synchronize_execution_holds_the_interrupt_lock_then_disconnect():
    m, read = boot(ACKING_ISR)
    m.run(STEPS_PER_TICK * 4)
    interrupt = read("Interrupt")
    start_system_thread(m, 0x9000, m.sym("nic!SyncCaller"))
    m.run(STEPS_PER_TICK * 2)
    assert read("Done") == 1
    assert read("SyncIrql") == 8 and read("SyncLock") == 1 and read("SyncContext") == 0x55
    assert read("SyncResult") & 0xFF == 1 and read("AfterIrql") == 0
    k = Struct(m.kspace, "_KINTERRUPT", interrupt)
    assert m.kspace.read_u64(k.get("ActualLock")) == 0
    proc = m.processors[0]
    assert Struct(m.kspace, "_KPRCB", proc.prcb).get("InterruptObject[128]") == 0
    # The gate stays on the vector's thunk; nothing is connected behind it.
    assert read_gate(m.kspace, proc.idt, 0x80) == m.sym("nt!KiIsrThunk") + 0x80 * 8
    # The connection block went back to the pool.
    header = Struct(m.kspace, "_POOL_HEADER", interrupt - CONNECTION_PREFIX - 0x10)
    assert header.get("PoolType") == 0
    count = read("IsrCount")
    m.run(STEPS_PER_TICK * 8)
    assert read("IsrCount") == count and m.bugcheck is None


def test_one_interrupt_object_per_processor():
    m, read = boot(ACKING_ISR, mask=3)
    first = read("Interrupt")
    objects = []
    for proc in m.processors:
        obj = Struct(m.kspace, "_KPRCB", proc.prcb).get("InterruptObject[128]")
        objects.append(obj)
        k = Struct(m.kspace, "_KINTERRUPT", obj)
        assert k.get("Number") == proc.number and k.get("Connected") == 1
        assert k.get("ActualLock") == first + k.offset("SpinLock")  # one lock for all
    assert objects[0] == first and objects[1] == first + m.catalog.get("_KINTERRUPT").size
    assert m.kspace.read_u64(first - CONNECTION_PREFIX) == 2


@pytest.mark.parametrize("field,value,message", [
    ("trigger", '"sideways"', "trigger"),
    ("registers", "0xFED40010", "page-aligned"),
])
def test_a_bad_device_event_names_the_file_and_line(field, value, message):
    text = probe_scenario("nic", {"Isr": ACKING_ISR}, GLOBALS) + device().replace(
        f"{field} = " + ('"level"' if field == "trigger" else str(REGISTERS)),
        f"{field} = {value}")
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, "nic.toml")
        boot_scenario(parse_scenario(text, "nic.toml"))
    assert "nic.toml" in str(err.value) and message in str(err.value)
