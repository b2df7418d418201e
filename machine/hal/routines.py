"""The HAL's exported services that kernel code calls."""

from __future__ import annotations

from machine.ke.native import routine
from machine.ke.processor import DPC_VECTOR


@routine("HalRequestSoftwareInterrupt", module="hal", frame=0, size=0x40)
def HalRequestSoftwareInterrupt(m, proc, a):
    """Request a DISPATCH_LEVEL software interrupt on this processor."""
    if (a[0] & 0xF) == 2:
        m.request_interrupt(proc, DPC_VECTOR)
    return 0

