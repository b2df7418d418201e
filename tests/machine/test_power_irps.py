"""Power IRPs: a system sleep transition sends IRP_MJ_POWER / IRP_MN_SET_POWER to each
power-handling device stack; a stack that completes it is untracked, one whose driver
pends it and never completes it trips the IRP's watchdog: bug check 0x9F subtype 3 with
the stack's PDO, nt!_TRIAGE_9F_POWER and the blocked IRP.  All read from memory."""

from __future__ import annotations

import pytest

from machine.machine import STEPS_PER_TICK
from machine.po.power import tracked_irps
from machine.scenario import ScenarioError, boot_scenario, parse_scenario
from machine.types.view import Struct

BOOT_TICKS = 58_000  # the uptime the machine boots at; event ticks count from it
EVENT_TICK = 5

# A bus driver with a named PDO that completes every power IRP, and a function driver
# over it whose SET_POWER handling is chosen per test; plus a driver with a device but no
# IRP_MJ_POWER handler (its stack gets no power IRP).
BUS = '''
[[driver]]
name = "pbus"
entry = "DriverEntry"
source = """
global Pdo: *_DEVICE_OBJECT;
string PdoName = "\\\\Device\\\\PBUS-1";
routine DriverEntry(DriverObject: *_DRIVER_OBJECT, RegistryPath: ptr): u32 {
    DriverObject->MajorFunction[IRP_MJ_POWER] = &BusPower;
    IoCreateDevice(DriverObject, 0, &PdoName, FILE_DEVICE_UNKNOWN, 0, FALSE, &Pdo);
    return STATUS_SUCCESS;
}
routine BusPower(Device: *_DEVICE_OBJECT, Irp: *_IRP): u32 {
    PoStartNextPowerIrp(Irp);
    Irp->IoStatus.Status = STATUS_SUCCESS;
    IofCompleteRequest(Irp, IO_NO_INCREMENT);
    return STATUS_SUCCESS;
}
"""
[[driver]]
name = "plain"
entry = "DriverEntry"
source = """
global Device: *_DEVICE_OBJECT;
routine DriverEntry(DriverObject: *_DRIVER_OBJECT, RegistryPath: ptr): u32 {
    IoCreateDevice(DriverObject, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &Device);
    return STATUS_SUCCESS;
}
"""
'''

FUNCTION = '''
[[driver]]
name = "pfunc"
entry = "DriverEntry"
source = """
global Fdo: *_DEVICE_OBJECT;
global Lower: *_DEVICE_OBJECT;
global SeenMinor: u64;
global SeenType: u64;
global SeenState: u64;
global SeenAction: u64;
global SeenContext: u64;
global Previous: u64;
string PdoName = "\\\\Device\\\\PBUS-1";
routine DriverEntry(DriverObject: *_DRIVER_OBJECT, RegistryPath: ptr): u32 {
    DriverObject->MajorFunction[IRP_MJ_POWER] = &FuncPower;
    IoCreateDevice(DriverObject, 0, NULL, FILE_DEVICE_UNKNOWN, 0, FALSE, &Fdo);
    IoAttachDevice(Fdo, &PdoName, &Lower);
    return STATUS_SUCCESS;
}
routine FuncPower(Device: *_DEVICE_OBJECT, Irp: *_IRP): u32 {
    let stack = Irp->Tail.Overlay.CurrentStackLocation;
    SeenMinor = stack->MinorFunction;
    SeenType = stack->Parameters.Power.Type;
    SeenState = stack->Parameters.Power.State.SystemState;
    SeenAction = stack->Parameters.Power.ShutdownType;
    SeenContext = stack->Parameters.Power.SystemContext;
    Previous = PoSetPowerState(Device, SystemPowerState, SeenState);
@@BODY@@
}
"""
'''
PASS_DOWN = '''    PoStartNextPowerIrp(Irp);
    Irp->CurrentLocation += 1;                      // IoSkipCurrentIrpStackLocation
    Irp->Tail.Overlay.CurrentStackLocation = stack + 1;
    return PoCallDriver(Lower, Irp);'''
PEND_AND_FORGET = '''    stack->Control |= 1;                            // IoMarkIrpPending
    return STATUS_PENDING;'''


def scenario(body: str, extra: str = "") -> str:
    return (f'[scenario]\nname = "power"\n[machine]\ncpus = 2\nseed = 3\n{BUS}'
            + FUNCTION.replace("@@BODY@@", body)
            + f'[[event]]\nat_tick = {EVENT_TICK}\naction = "set_system_power"\n'
              f'state = "sleep"\n{extra}')


def boot(body: str, extra: str = ""):
    return boot_scenario(parse_scenario(scenario(body, extra), "power.toml"))


def run_to_tick(m, tick: int) -> None:
    while m.bugcheck is None and m.tick_count < BOOT_TICKS + tick:
        m.run(STEPS_PER_TICK)


def g(m, name: str) -> int:
    return m.kspace.read_u64(m.sym(name))


def tracked(m) -> list[int]:
    return tracked_irps(m)


def test_a_stack_that_passes_the_irp_down_completes_the_transition_and_is_untracked():
    m = boot(PASS_DOWN)
    pdo, fdo = g(m, "pbus!Pdo"), g(m, "pfunc!Fdo")
    assert Struct(m.kspace, "_DEVICE_OBJECT", pdo).get("AttachedDevice") == fdo
    assert g(m, "pfunc!Lower") == pdo
    run_to_tick(m, EVENT_TICK + 200)  # well past the 120-tick watchdog
    assert m.bugcheck is None
    # The function driver saw a system SET_POWER for S3 (PowerActionSleep), from S0.
    assert g(m, "pfunc!SeenMinor") == 2 and g(m, "pfunc!SeenType") == 0
    assert g(m, "pfunc!SeenState") == 4 and g(m, "pfunc!SeenAction") == 2
    assert g(m, "pfunc!SeenContext") == 0x14400  # Target S3, Effective S3, Current S0
    # PoSetPowerState kept the new system state in the FDO's power flags.
    dox = Struct(m.kspace, "_DEVICE_OBJECT", fdo).get("DeviceObjectExtension")
    assert Struct(m.kspace, "_DEVOBJ_EXTENSION", dox).get("PowerFlags") & 0xF == 4
    assert g(m, "pfunc!Previous") == 0
    assert tracked(m) == []  # PopRequestCompletion untracked and freed it


def test_a_pended_and_forgotten_irp_is_tracked_then_its_watchdog_bugchecks_0x9f():
    m = boot(PEND_AND_FORGET, "timeout_ticks = 40\n")
    pdo, fdo = g(m, "pbus!Pdo"), g(m, "pfunc!Fdo")
    run_to_tick(m, EVENT_TICK + 20)
    assert m.bugcheck is None
    [data] = tracked(m)  # only pbus/pfunc's stack: the plain driver handles no power IRPs
    d = Struct(m.kspace, "_POP_IRP_DATA", data)
    irp_addr = d.get("Irp")
    assert (d.get("Pdo"), d.get("TargetDevice"), d.get("CurrentDevice")) == (pdo, fdo, fdo)
    assert d.get("MinorFunction") == 2 and d.get("PowerState.SystemState") == 4
    assert d.get("SystemTransition") == 1 and d.get("WatchdogEnabled") == 1
    assert d.get("WatchdogDpc.DeferredRoutine") == m.sym("nt!PopIrpWatchdog")
    assert d.get("WatchdogDpc.DeferredContext") == data
    assert d.get("WatchdogTimer.Dpc") == d.addr("WatchdogDpc")
    assert d.get("WatchdogTimer.DueTime") - d.get("WatchdogStart") == 40 * 156250
    irp = Struct(m.kspace, "_IRP", irp_addr)
    # Stack size 2 plus the power manager's own location; the FDO's is current, pended.
    assert irp.get("StackCount") == 3 and irp.get("CurrentLocation") == 2
    assert irp.get("Tail.Overlay.Thread") == 0
    sl = Struct(m.kspace, "_IO_STACK_LOCATION", irp.get("Tail.Overlay.CurrentStackLocation"))
    assert (sl.get("MajorFunction"), sl.get("MinorFunction")) == (0x16, 2)
    assert sl.get("DeviceObject") == fdo and sl.get("Control") & 1
    assert sl.get("CompletionRoutine") == m.sym("nt!PopRequestCompletion")
    assert sl.get("Parameters.Power.State.SystemState") == 4
    assert sl.get("Parameters.Power.ShutdownType") == 2

    run_to_tick(m, EVENT_TICK + 60)
    assert m.bugcheck is not None
    assert m.tick_count == BOOT_TICKS + EVENT_TICK + 40  # exactly when its watchdog expired
    triage = m.sym("nt!PopTriage9FPower")
    assert (m.bugcheck.code, m.bugcheck.params) == (0x9F, (3, pdo, triage, irp_addr))
    t = Struct(m.kspace, "_TRIAGE_9F_POWER", triage)
    assert t.get("Signature") == 0x8000 and t.get("Revision") == 1
    assert t.get("IrpList") == m.sym("nt!PopIrpList")
    assert m.kspace.read_u64(t.get("IrpList")) == data  # the blocked IRP's tracking block
    assert t.get("ThreadList") == m.sym("nt!PopIrpThreadList")


def test_the_event_needs_a_known_state():
    text = scenario(PASS_DOWN).replace('state = "sleep"', 'state = "nap"')
    with pytest.raises(ScenarioError, match="`state`"):
        boot_scenario(parse_scenario(text, "power.toml"))
