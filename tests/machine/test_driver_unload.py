"""Unloading a driver (the scenario event `unload_driver`): a system worker thread runs its
DriverUnload, then the image leaves nt!PsLoadedModuleList and its pages are unmapped.
A timer the driver left set fires into the unloaded code: bug check 0xCE
(DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS) with the address referenced."""

from __future__ import annotations

import pytest

from machine.io.unload import unloaded_images
from machine.rtl.lists import iterate_list
from machine.scenario import ScenarioError, boot_scenario, parse_scenario
from machine.types.view import Struct


def scenario(cancel: bool, unload_at: int = 5, in_pool: bool = False) -> str:
    """A driver that sets a 100 ms timer with a DPC at load; its DriverUnload cancels the
    timer or not.  The KTIMER and KDPC are the driver's globals, or (in_pool) nonpaged pool
    blocks the globals point to."""
    cancel_code = """
    mov     rcx, qword ptr [TimerAt]
    call    nt!KeCancelTimer
""" if cancel else ""
    place = """
    mov     r8d, 72656D54h                  ; 'Tmer'
    mov     edx, 80h
    xor     ecx, ecx
    call    nt!ExAllocatePoolWithTag
    mov     qword ptr [TimerAt], rax
    add     rax, 40h
    mov     qword ptr [DpcAt], rax
""" if in_pool else """
    lea     rax, [Timer]
    mov     qword ptr [TimerAt], rax
    lea     rax, [Dpc]
    mov     qword ptr [DpcAt], rax
"""
    return f'''
[scenario]
name = "unloader"
[machine]
cpus = 2
seed = 3

[[driver]]
name = "tmr"
entry = "DriverEntry"

[[driver.global]]
name = "Timer"
size = 64

[[driver.global]]
name = "Dpc"
size = 64

[[driver.global]]
name = "Fired"

[[driver.global]]
name = "TimerAt"

[[driver.global]]
name = "DpcAt"

[[driver.routine]]
name = "DriverEntry"
code = """
    push    rbx
    sub     rsp, 20h
    mov     rbx, rcx
    lea     rax, [TmrUnload]
    mov     qword ptr [rbx+68h], rax        ; DriverUnload
{place}
    mov     rcx, qword ptr [TimerAt]
    call    nt!KeInitializeTimer
    xor     r8d, r8d
    lea     rdx, [TmrDpc]
    mov     rcx, qword ptr [DpcAt]
    call    nt!KeInitializeDpc
    mov     r8, qword ptr [DpcAt]
    mov     rdx, -1000000                   ; in 100 ms
    mov     rcx, qword ptr [TimerAt]
    call    nt!KeSetTimer
    xor     eax, eax
    add     rsp, 20h
    pop     rbx
    ret
"""

[[driver.routine]]
name = "TmrUnload"
code = """
    sub     rsp, 28h
{cancel_code}
    add     rsp, 28h
    ret
"""

[[driver.routine]]
name = "TmrDpc"
code = """
    mov     qword ptr [Fired], 1
    ret
"""

[[event]]
at_tick = {unload_at}
action = "unload_driver"
driver = "tmr"
'''


def loaded_names(m) -> list[str]:
    head = m.sym("nt!PsLoadedModuleList")
    out = []
    for entry in iterate_list(m.kspace, head):
        e = Struct(m.kspace, "_KLDR_DATA_TABLE_ENTRY", entry)
        us = Struct(m.kspace, "_UNICODE_STRING", e.addr("BaseDllName"))
        out.append(m.kspace.read(us.get("Buffer"), us.get("Length")).decode("utf-16-le"))
    return out


def test_a_dpc_left_queued_runs_into_the_unloaded_driver():
    """The timer is in pool: it expires, its DPC is queued and its routine's address is
    in the unloaded image: the instruction fetch faults there."""
    m = boot_scenario(parse_scenario(scenario(cancel=False, in_pool=True), "unloader.toml"))
    dpc_routine = m.sym("tmr!TmrDpc")
    image = next(i for i in m.modules if i.name == "tmr")
    base, end = image.base, image.base + image.size
    m.run(2_000_000)
    assert m.bugcheck is not None and m.bugcheck.code == 0xCE
    va, write, referencing, reserved = m.bugcheck.params
    assert va == dpc_routine and write == 0 and referencing == dpc_routine and reserved == 0
    assert "tmr.sys" not in loaded_names(m)
    assert m.kspace.get_pte(base) == 0 and m.kspace.get_pte(end - 0x1000) == 0
    assert [(u.name, u.base, u.end) for u in unloaded_images(m)] == [("tmr.sys", base, end)]
    # nt's own record, which the debugger reads
    assert m.kspace.read_u64(m.sym("nt!MmLastUnloadedDriver")) == 1
    e = Struct(m.kspace, "_UNLOADED_DRIVERS", m.kspace.read_u64(m.sym("nt!MmUnloadedDrivers")))
    name = Struct(m.kspace, "_UNICODE_STRING", e.addr("Name"))
    assert m.kspace.read(name.get("Buffer"), name.get("Length")).decode("utf-16-le") == "tmr.sys"
    assert (e.get("StartAddress"), e.get("EndAddress")) == (base, end)
    assert 0 < m.kspace.read_u64(e.addr("CurrentTime")) <= m.tick_count * 156250


def test_a_timer_in_the_unloaded_image_faults_the_clock():
    """The KTIMER itself was in the driver's data: the clock's walk of the timer list
    reaches its unmapped page."""
    m = boot_scenario(parse_scenario(scenario(cancel=False), "unloader.toml"))
    timer = m.sym("tmr!Timer")
    m.run(2_000_000)
    assert m.bugcheck is not None and m.bugcheck.code == 0xCE
    va, write, _, _ = m.bugcheck.params
    assert timer <= va < timer + 0x40 and write == 0


@pytest.mark.parametrize("in_pool", [False, True])
def test_a_driver_that_cancels_its_timer_unloads_cleanly(in_pool):
    m = boot_scenario(parse_scenario(scenario(cancel=True, in_pool=in_pool), "unloader.toml"))
    assert "tmr.sys" in loaded_names(m)
    assert m.kspace.read_u64(m.sym("nt!MmUnloadedDrivers")) == 0  # until the first unload
    m.run(2_000_000)
    assert m.bugcheck is None
    assert "tmr.sys" not in loaded_names(m)
    assert not any(i.name == "tmr" for i in m.modules)


def test_unload_event_must_name_a_driver_of_the_scenario():
    text = scenario(cancel=True).replace('driver = "tmr"\n', 'driver = "nosuch"\n')
    with pytest.raises(ScenarioError) as err:
        boot_scenario(parse_scenario(text, "unloader.toml"))
    assert err.value.message.startswith("unknown driver `nosuch` in `driver`")
    assert err.value.line == text.splitlines().index('driver = "nosuch"') + 1
