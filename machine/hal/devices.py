"""Simulated devices: each raises its interrupt vector on one processor on a seeded
schedule (a period in clock ticks with a bounded jitter), as a timer, disk or NIC would."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Device:
    name: str
    vector: int
    processor: int
    period_ticks: int
    jitter_ticks: int = 0
    raised: int = 0


def start_device(m, device: Device) -> None:
    rng = random.Random(f"device:{m.config.seed}:{device.name}")

    def fire(m) -> None:
        device.raised += 1
        m.request_interrupt(m.processors[device.processor], device.vector)
        schedule()

    def schedule() -> None:
        jitter = rng.randint(0, device.jitter_ticks) if device.jitter_ticks else 0
        m.at_tick(m.tick_count + device.period_ticks + jitter, fire)

    m.devices.append(device)
    schedule()
