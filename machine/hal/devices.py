"""Simulated devices: each raises its interrupt vector on one processor on a seeded
schedule (a period in clock ticks with a bounded jitter), as a timer, disk or NIC would.

A device may have a register block: one page of device memory at a fixed physical
address, which its driver maps with MmMapIoSpace.  The registers are kdsim's own simple
device, the same for every kind:

    +0x0 STATUS   ULONG  bit 0 set by the device when it raises its interrupt; the
                         driver acknowledges by clearing it
    +0x4 CONTROL  ULONG  bit 0: interrupts enabled (the device raises its line only then)
    +0x8 EVENTS   ULONG  events the device has signalled so far
    +0xC DATA     ULONG  the last event's data word (seeded)

A latched (edge) device requests its vector once per event.  A level-sensitive device
keeps its line asserted while STATUS bit 0 and CONTROL bit 0 are both set, so the vector
is requested again after every end of interrupt until the driver acknowledges it — an
ISR that does not is an interrupt storm.  A device without registers is latched.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from machine.mm.physical import PAGE_SHIFT, PAGE_SIZE

REG_STATUS = 0x0
REG_CONTROL = 0x4
REG_EVENTS = 0x8
REG_DATA = 0xC
STATUS_PENDING = 1
CONTROL_ENABLE = 1
LATCHED, LEVEL = "latched", "level"


@dataclass
class Device:
    name: str
    vector: int
    processor: int
    period_ticks: int
    jitter_ticks: int = 0
    raised: int = 0
    trigger: str = LATCHED
    registers: int = 0  # physical address of the register page, 0: none
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def read_register(self, m, offset: int) -> int:
        return int.from_bytes(m.phys.read(self.registers + offset, 4), "little")

    def write_register(self, m, offset: int, value: int) -> None:
        m.phys.write(self.registers + offset, (value & 0xFFFFFFFF).to_bytes(4, "little"))

    def line_asserted(self, m) -> bool:
        """A level-sensitive device's interrupt line: pending and enabled."""
        return (self.trigger == LEVEL and bool(self.registers)
                and self.read_register(m, REG_STATUS) & STATUS_PENDING != 0
                and self.read_register(m, REG_CONTROL) & CONTROL_ENABLE != 0)


def install_device_memory(m, physical: int) -> None:
    """Device memory: a frame at the device's own physical address, not taken from RAM."""
    m.phys.frames.setdefault(physical >> PAGE_SHIFT, bytearray(PAGE_SIZE))


def start_device(m, device: Device) -> None:
    device.rng = random.Random(f"device:{m.config.seed}:{device.name}")
    if device.registers:
        if device.registers & (PAGE_SIZE - 1):
            raise ValueError(f"device {device.name}: registers {device.registers:#x} "
                             "are not page aligned")
        install_device_memory(m, device.registers)

    def fire(m) -> None:
        device.raised += 1
        if device.registers:
            device.write_register(m, REG_EVENTS, device.read_register(m, REG_EVENTS) + 1)
            device.write_register(m, REG_DATA, device.rng.getrandbits(32))
            device.write_register(m, REG_STATUS,
                                  device.read_register(m, REG_STATUS) | STATUS_PENDING)
            if not device.read_register(m, REG_CONTROL) & CONTROL_ENABLE:
                schedule()
                return
        m.request_interrupt(m.processors[device.processor], device.vector)
        schedule()

    def schedule() -> None:
        jitter = device.rng.randint(0, device.jitter_ticks) if device.jitter_ticks else 0
        m.at_tick(m.tick_count + device.period_ticks + jitter, fire)

    m.devices.append(device)
    schedule()


def end_of_interrupt(m, proc, vector: int) -> None:
    """The EOI: a level-sensitive line still asserted raises its vector again at once."""
    for device in m.devices:
        if device.vector == vector and device.processor == proc.number \
                and device.line_asserted(m):
            m.request_interrupt(proc, vector)
