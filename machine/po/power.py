"""The power manager: system power transitions and the power IRPs they send.

A transition (a scenario's `set_system_power` event) is carried out on a system worker
thread by PopSetDevicesSystemState: every device stack that has a driver handling
IRP_MJ_POWER gets an IRP_MJ_POWER / IRP_MN_SET_POWER IRP for the new system state, sent
to the top of the stack with PoCallDriver.  Each IRP is tracked in nt!PopIrpList by a
`_POP_IRP_DATA` whose own timer and DPC are the IRP's watchdog: if the IRP is still
outstanding when the timer expires, PopIrpWatchdog stops the machine with
DRIVER_POWER_STATE_FAILURE (0x9F) subtype 3: the stack's PDO, nt!_TRIAGE_9F_POWER and
the blocked IRP.  The transition waits until every IRP it sent has completed.
"""

from __future__ import annotations

from machine.io.irp import (
    IO_STACK_LOCATION_SIZE,
    SL_INVOKE_ON_CANCEL,
    SL_INVOKE_ON_ERROR,
    SL_INVOKE_ON_SUCCESS,
    STATUS_MORE_PROCESSING_REQUIRED,
    allocate_irp,
    free_irp,
)
from machine.ke.native import Call, routine
from machine.rtl.lists import (
    initialize_list_head,
    insert_tail_list,
    iterate_list,
    remove_entry_list,
)
from machine.types.view import Struct

IRP_MJ_POWER = 0x16
IRP_MN_SET_POWER = 0x02
SYSTEM_POWER_STATE, DEVICE_POWER_STATE = 0, 1  # _POWER_STATE_TYPE
POWER_SYSTEM_WORKING = 1  # _SYSTEM_POWER_STATE
DRIVER_POWER_STATE_FAILURE = 0x9F
BLOCKED_IRP = 3  # 0x9F parameter 1: a device object has been blocking an IRP too long
STATUS_NOT_SUPPORTED = 0xC00000BB  # what a power IRP holds until a driver sets a status
KERNEL_MODE = 0

# scenario state name -> (_SYSTEM_POWER_STATE, POWER_ACTION)
SYSTEM_STATES = {"sleep": (4, 2), "hibernate": (5, 3)}  # S3 PowerActionSleep, S4 Hibernate
# Windows gives a power IRP 120 s; the machine's watchdogs run 64 times faster (README),
# which is 120 ticks of 15.625 ms.
DEFAULT_TIMEOUT_TICKS = 120

# _TRIAGE_9F_POWER's identification, as the kernel fills it
TRIAGE_9F_SIGNATURE, TRIAGE_9F_REVISION = 0x8000, 1

# nt's data: the tracked power IRPs (_POP_IRP_DATA.Link), the dedicated power IRP
# threads (none: system worker threads do the work), and the triage block whose address
# is the 0x9F's parameter 3.
PO_DATA = (("PopIrpList", 0x10, "_LIST_ENTRY"), ("PopIrpThreadList", 0x10, "_LIST_ENTRY"),
           ("PopTriage9FPower", 0x28, "_TRIAGE_9F_POWER"))

# A transition's parameters, in the pool block that carries its work item:
# _WORK_QUEUE_ITEM, then the system state, the power action, the watchdog timeout in
# ticks and the interval (one tick, relative) the worker polls at while IRPs are out.
CTX_STATE, CTX_ACTION, CTX_TIMEOUT, CTX_INTERVAL, CTX_SIZE = 0x20, 0x24, 0x28, 0x30, 0x38


def init_power_manager(m) -> None:
    """At boot: empty lists and the triage block pointing at them."""
    irps, threads = m.sym("nt!PopIrpList"), m.sym("nt!PopIrpThreadList")
    initialize_list_head(m.kspace, irps)
    initialize_list_head(m.kspace, threads)
    t = Struct(m.kspace, "_TRIAGE_9F_POWER", m.sym("nt!PopTriage9FPower"))
    t.set("Signature", TRIAGE_9F_SIGNATURE)
    t.set("Revision", TRIAGE_9F_REVISION)
    t.set("IrpList", irps)
    t.set("ThreadList", threads)
    # The work queues are _KPRIQUEUEs on Windows; this machine's workers share one
    # _KQUEUE, so there is no triage work-queue block to point at.
    t.set("DelayedWorkQueue", 0)
    t.set("DelayedIoWorkQueue", 0)


def queue_system_power_transition(m, state: str, timeout_ticks: int) -> None:
    """NtSetSystemPowerState, in short: a system worker thread will run the transition."""
    from machine.ex.worker import insert_queue
    from machine.machine import TICK_100NS

    system_state, action = SYSTEM_STATES[state]
    ctx = m.pool.allocate(0, CTX_SIZE, "Pope")
    m.kspace.write(ctx, bytes(CTX_SIZE))
    w = Struct(m.kspace, "_WORK_QUEUE_ITEM", ctx)
    w.set("WorkerRoutine", m.sym("nt!PopSetDevicesSystemState"))
    w.set("Parameter", ctx)
    for offset, value in ((CTX_STATE, system_state), (CTX_ACTION, action),
                          (CTX_TIMEOUT, timeout_ticks)):
        m.kspace.write(ctx + offset, value.to_bytes(4, "little"))
    m.kspace.write_u64(ctx + CTX_INTERVAL, (-TICK_100NS) & 0xFFFFFFFFFFFFFFFF)
    insert_queue(m, m.work_queue, ctx)


# -- which stacks get a system power IRP -----------------------------------------------

def _driver_devices(m, driver: int) -> list[int]:
    out, dev = [], Struct(m.kspace, "_DRIVER_OBJECT", driver).get("DeviceObject")
    while dev:
        out.append(dev)
        dev = Struct(m.kspace, "_DEVICE_OBJECT", dev).get("NextDevice")
    return out[::-1]  # creation order (each new device goes to the head of the list)


def stack_bottom(m, device: int) -> int:
    """The PDO: follow each device's AttachedTo down the stack."""
    while True:
        dox = Struct(m.kspace, "_DEVICE_OBJECT", device).get("DeviceObjectExtension")
        below = Struct(m.kspace, "_DEVOBJ_EXTENSION", dox).get("AttachedTo")
        if not below:
            return device
        device = below


def stack_devices(m, pdo: int) -> list[int]:
    """Bottom to top."""
    out = [pdo]
    while above := Struct(m.kspace, "_DEVICE_OBJECT", out[-1]).get("AttachedDevice"):
        out.append(above)
    return out


def handles_power(m, device: int) -> bool:
    driver = Struct(m.kspace, "_DEVICE_OBJECT", device).get("DriverObject")
    dispatch = Struct(m.kspace, "_DRIVER_OBJECT", driver).get(f"MajorFunction[{IRP_MJ_POWER}]")
    return dispatch not in (0, m.sym("nt!IopInvalidDeviceRequest"))


def power_stacks(m) -> list[tuple[int, int]]:
    """(PDO, top device) of every stack of the loaded drivers' devices in which some
    driver handles IRP_MJ_POWER, in driver load order."""
    seen: list[int] = []
    for image in m.modules:
        driver = getattr(image, "driver_object", 0)
        if not driver:
            continue
        for dev in _driver_devices(m, driver):
            pdo = stack_bottom(m, dev)
            if pdo not in seen:
                seen.append(pdo)
    return [(pdo, stack_devices(m, pdo)[-1]) for pdo in seen
            if any(handles_power(m, d) for d in stack_devices(m, pdo))]


# -- the IRPs and their tracking ---------------------------------------------------------

def tracked_irps(m) -> list[int]:
    """The _POP_IRP_DATA blocks on nt!PopIrpList (Link is at offset 0)."""
    return list(iterate_list(m.kspace, m.sym("nt!PopIrpList")))


def irp_data_of(m, irp: int) -> int:
    return next((d for d in tracked_irps(m)
                 if Struct(m.kspace, "_POP_IRP_DATA", d).get("Irp") == irp), 0)


def system_context(system_state: int) -> int:
    """SYSTEM_POWER_STATE_CONTEXT: from S0 to the target state, no hibernation path."""
    return (system_state << 8) | (system_state << 12) | (POWER_SYSTEM_WORKING << 16)


def request_system_irp(m, proc, pdo: int, top: int, system_state: int, action: int,
                       timeout_ticks: int) -> int:
    """PoRequestPowerIrp for a system IRP: one stack location more than the stack needs
    is the power manager's own (as on Windows); the next one, the top driver's, carries
    the request and PopRequestCompletion.  Tracked and its watchdog armed."""
    from machine.ke.timer import interrupt_time, set_timer
    from machine.machine import TICK_100NS

    count = Struct(m.kspace, "_DEVICE_OBJECT", top).get("StackSize") + 1
    irp_addr = allocate_irp(m, count)
    irp = Struct(m.kspace, "_IRP", irp_addr)
    irp.set("IoStatus.Status", STATUS_NOT_SUPPORTED)
    # IoSetNextIrpStackLocation: the power manager owns the first location.
    irp.set("CurrentLocation", count)
    irp.set("Tail.Overlay.CurrentStackLocation",
            irp.get("Tail.Overlay.CurrentStackLocation") - IO_STACK_LOCATION_SIZE)
    size = m.catalog.get("_POP_IRP_DATA").size
    data = m.pool.allocate(0, size, "Pope")
    m.kspace.write(data, bytes(size))
    sl = Struct(m.kspace, "_IO_STACK_LOCATION",
                irp.get("Tail.Overlay.CurrentStackLocation") - IO_STACK_LOCATION_SIZE)
    sl.set("MajorFunction", IRP_MJ_POWER)
    sl.set("MinorFunction", IRP_MN_SET_POWER)
    sl.set("Parameters.Power.SystemContext", system_context(system_state))
    sl.set("Parameters.Power.Type", SYSTEM_POWER_STATE)
    sl.set("Parameters.Power.State", system_state)
    sl.set("Parameters.Power.ShutdownType", action)
    sl.set("CompletionRoutine", m.sym("nt!PopRequestCompletion"))
    sl.set("Context", data)
    sl.set("Control", SL_INVOKE_ON_SUCCESS | SL_INVOKE_ON_ERROR | SL_INVOKE_ON_CANCEL)
    d = Struct(m.kspace, "_POP_IRP_DATA", data)
    d.set("Irp", irp_addr)
    d.set("Pdo", pdo)
    d.set("TargetDevice", top)
    d.set("CurrentDevice", top)
    d.set("WatchdogStart", interrupt_time(m))
    d.set("MinorFunction", IRP_MN_SET_POWER)
    d.set("PowerStateType", SYSTEM_POWER_STATE)
    d.set("PowerState", system_state)
    d.set("WatchdogEnabled", 1)
    d.set("SystemTransition", 1)
    insert_tail_list(m.kspace, m.sym("nt!PopIrpList"), d.addr("Link"))
    from machine.ke.timer import initialize_timer

    initialize_timer(m, m.kspace, d.addr("WatchdogTimer"), 8)  # TimerNotificationObject
    dpc = Struct(m.kspace, "_KDPC", d.addr("WatchdogDpc"))
    dpc.set("Type", 0x13)  # DpcObject
    dpc.set("Importance", 1)
    dpc.set("DeferredRoutine", m.sym("nt!PopIrpWatchdog"))
    dpc.set("DeferredContext", data)
    set_timer(m, proc, d.addr("WatchdogTimer"),
              (-timeout_ticks * TICK_100NS) & 0xFFFFFFFFFFFFFFFF, 0, d.addr("WatchdogDpc"))
    return irp_addr


def untrack(m, data: int) -> None:
    from machine.ke.timer import cancel

    d = Struct(m.kspace, "_POP_IRP_DATA", data)
    cancel(m, d.addr("WatchdogTimer"))
    remove_entry_list(m.kspace, d.addr("Link"))
    m.pool.free(data)


def pending_system_irps(m) -> int:
    return sum(1 for d in tracked_irps(m)
               if Struct(m.kspace, "_POP_IRP_DATA", d).get("SystemTransition"))


# -- routines -------------------------------------------------------------------------------

@routine("PopSetDevicesSystemState", frame=0x88, size=0x300)
def PopSetDevicesSystemState(m, proc, a):
    """(Context): send the system IRP to every power-handling stack, then wait until all
    of them have completed (polling, one tick at a time, as the watchdogs run)."""
    ctx = a[0]
    state, action, timeout = (int.from_bytes(m.kspace.read(ctx + off, 4), "little")
                              for off in (CTX_STATE, CTX_ACTION, CTX_TIMEOUT))
    for pdo, top in power_stacks(m):
        irp = request_system_irp(m, m.processor_of(proc.current), pdo, top, state, action,
                                 timeout)
        yield Call(m.sym("nt!PoCallDriver"), (top, irp), ret=0x11C)
    while pending_system_irps(m):
        yield Call(m.sym("nt!KeDelayExecutionThread"), (KERNEL_MODE, 0, ctx + CTX_INTERVAL),
                   ret=0x1A7)
    m.pool.free(ctx)
    return 0


@routine("PoCallDriver", frame=0x38, size=0x80)
def PoCallDriver(m, proc, a):
    """(DeviceObject, Irp): IoCallDriver for a power IRP; the tracking block follows the
    IRP down the stack (CurrentDevice)."""
    data = irp_data_of(m, a[1])
    if data:
        Struct(m.kspace, "_POP_IRP_DATA", data).set("CurrentDevice", a[0])
    status = yield Call(m.sym("nt!IofCallDriver"), (a[0], a[1]), ret=0x4E)
    return status


@routine("PoStartNextPowerIrp", frame=0x28, size=0x40)
def PoStartNextPowerIrp(m, proc, a):
    """(Irp): since Windows Vista power IRPs are not serialized per device, so this has
    nothing left to do; drivers still call it."""
    return 0


@routine("PoSetPowerState", frame=0x28, size=0x80)
def PoSetPowerState(m, proc, a):
    """(DeviceObject, Type, State) -> the previous state: kept in the low (system) and
    next (device) four bits of the device's DEVOBJ_EXTENSION.PowerFlags."""
    dox = Struct(m.kspace, "_DEVOBJ_EXTENSION",
                 Struct(m.kspace, "_DEVICE_OBJECT", a[0]).get("DeviceObjectExtension"))
    shift = 4 if a[1] & 0xFFFFFFFF == DEVICE_POWER_STATE else 0
    flags = dox.get("PowerFlags")
    dox.set("PowerFlags", (flags & ~(0xF << shift)) | ((a[2] & 0xF) << shift))
    return (flags >> shift) & 0xF


@routine("PopRequestCompletion", frame=0x38, size=0x100)
def PopRequestCompletion(m, proc, a):
    """(DeviceObject, Irp, Context = its _POP_IRP_DATA): the IRP came back: stop tracking
    it and free it; the I/O manager must not touch it again."""
    untrack(m, a[2])
    free_irp(m, a[1])
    return STATUS_MORE_PROCESSING_REQUIRED


@routine("PopIrpWatchdog", frame=0x38, size=0x100)
def PopIrpWatchdog(m, proc, a):
    """The watchdog DPC of one power IRP (Context = its _POP_IRP_DATA): it is only
    queued while the IRP is outstanding, so the IRP has been blocked too long."""
    data = a[1]
    if data in tracked_irps(m):
        yield Call(m.sym("nt!PopIrpWatchdogBugcheck"), (data,), ret=0x32)
    return 0


@routine("PopIrpWatchdogBugcheck", frame=0x48, size=0x100)
def PopIrpWatchdogBugcheck(m, proc, a):
    d = Struct(m.kspace, "_POP_IRP_DATA", a[0])
    irp = Struct(m.kspace, "_IRP", d.get("Irp"))
    if irp.get("CurrentLocation") <= irp.get("StackCount"):
        current = Struct(m.kspace, "_IO_STACK_LOCATION",
                         irp.get("Tail.Overlay.CurrentStackLocation")).get("DeviceObject")
        if current:  # the device holding it, also when a driver used IoCallDriver
            d.set("CurrentDevice", current)
    yield Call(m.sym("nt!KeBugCheckEx"),
               (DRIVER_POWER_STATE_FAILURE, BLOCKED_IRP, d.get("Pdo"),
                m.sym("nt!PopTriage9FPower"), d.get("Irp")), ret=0x5A)
    return 0
