"""What the kernel debugger stub does to the machine: software breakpoints are `int 3`
bytes written over code in memory (the original byte kept aside), as KdSetBreakpoint
does, so the code a processor decodes really contains them."""

from __future__ import annotations

from dataclasses import dataclass, field

INT3 = 0xCC


class BreakpointHit(Exception):
    def __init__(self, processor: int, address: int) -> None:
        super().__init__(f"breakpoint at {address:#x} on processor {processor}")
        self.processor = processor
        self.address = address


@dataclass
class Breakpoints:
    saved: dict[int, int] = field(default_factory=dict)  # address -> original byte

    def insert(self, space, address: int) -> None:
        if address in self.saved:
            return
        self.saved[address] = space.read(address, 1)[0]
        space.write_image(address, bytes([INT3]))

    def remove(self, space, address: int) -> None:
        original = self.saved.pop(address, None)
        if original is not None:
            space.write_image(address, bytes([original]))

    def __contains__(self, address: int) -> bool:
        return address in self.saved
