"""Kernel memory as the pool touches it."""

from __future__ import annotations

from collections.abc import Callable

from machine.mm.paging import IntAccess, PageFault


class PoolMemory(IntAccess):
    """Kernel memory as the pool touches it: a trimmed paged-pool page is brought back
    before the access (the pool runs where it may wait for a page-in)."""

    def __init__(self, space, page_in: Callable[[int], bool]) -> None:
        self.space = space
        self.page_in = page_in

    def read(self, va: int, size: int) -> bytes:
        try:
            return self.space.read(va, size)
        except PageFault as fault:
            if not self.page_in(fault.va):
                raise
        return self.read(va, size)

    def write(self, va: int, data: bytes) -> None:
        try:
            self.space.write(va, data)
            return
        except PageFault as fault:
            if not self.page_in(fault.va):
                raise
        self.write(va, data)

    def peek_u64(self, va: int) -> int | None:
        """A pointer's target, or None when nothing readable is there."""
        try:
            return self.read_u64(va & 0xFFFFFFFFFFFFFFFF)
        except PageFault:
            return None
