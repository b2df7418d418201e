"""!analyze for DRIVER_POWER_STATE_FAILURE (0x9F) subtype 3, a blocked power IRP: the
culprit is not on the crashing stack (that is the power manager's watchdog DPC) but the
driver that holds the IRP: the one whose device is in the IRP's current stack location."""

from __future__ import annotations

from dataclasses import dataclass, field

from commands.symbols import Module
from commands.target import MemoryAccessError

DRIVER_POWER_STATE_FAILURE = 0x9F
BLOCKED_IRP = 3
# _POWER_STATE_TYPE, and the lightest sleeping states: a transition to one of these or
# deeper is a power-down
SYSTEM_POWER_STATE, POWER_SYSTEM_SLEEPING1, POWER_DEVICE_D1 = 0, 2, 2
IRP_MJ_POWER = 0x16


@dataclass
class BlockedIrp:
    irp: int
    device: int = 0
    driver: int = 0
    module: Module | None = None
    power_down: bool = True
    lines: list[str] = field(default_factory=list)  # after the BUGCHECK_Pn lines


def applies(code: int, params: list[int]) -> bool:
    return code == DRIVER_POWER_STATE_FAILURE and params[0] == BLOCKED_IRP


def blocked_irp(s, irp: int) -> BlockedIrp:
    """Who holds the IRP of parameter 4, read from the IRP's current stack location."""
    r = s.reader
    b = BlockedIrp(irp)
    try:
        location = r.field("_IRP", irp, "Tail.Overlay.CurrentStackLocation")
        b.device = r.field("_IO_STACK_LOCATION", location, "DeviceObject")
        if r.field("_IO_STACK_LOCATION", location, "MajorFunction") == IRP_MJ_POWER:
            kind = r.field("_IO_STACK_LOCATION", location, "Parameters.Power.Type")
            state = r.field("_IO_STACK_LOCATION", location, "Parameters.Power.State")
            lightest = POWER_SYSTEM_SLEEPING1 if kind == SYSTEM_POWER_STATE else POWER_DEVICE_D1
            b.power_down = state >= lightest
        if b.device:
            b.driver = r.field("_DEVICE_OBJECT", b.device, "DriverObject")
            start = r.field("_DRIVER_OBJECT", b.driver, "DriverStart")
            b.module = s.symbols.module_at(start)
    except MemoryAccessError:
        pass
    b.lines = [f"DRVPOWERSTATE_SUBCODE:  {BLOCKED_IRP}", "", f"IRP_ADDRESS:  {irp:016x}", ""]
    if b.device:
        b.lines += [f"DEVICE_OBJECT: {b.device:016x}", "", f"DRIVER_OBJECT: {b.driver:016x}",
                    ""]
    if b.module is not None:
        b.lines += [f"IMAGE_NAME:  {b.module.image}", "", f"MODULE_NAME: {b.module.name}", "",
                    f"FAULTING_MODULE: {b.module.base:016x} {b.module.name}", ""]
    return b


def bucket(b: BlockedIrp) -> str:
    """0x9F_3_POWER_DOWN_IMAGE_x.sys, as kd buckets a blocked power IRP by its holder."""
    direction = "POWER_DOWN" if b.power_down else "POWER_UP"
    image = b.module.image if b.module is not None else "Unknown_Image"
    return f"0x{DRIVER_POWER_STATE_FAILURE:X}_{BLOCKED_IRP}_{direction}_IMAGE_{image}"
