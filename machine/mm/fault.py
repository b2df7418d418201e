"""MmAccessFault: resolve a page fault if the page can be brought in."""

from __future__ import annotations

from machine.ke.processor import DISPATCH_LEVEL


def mm_access_fault(m, proc, va: int, write: bool) -> bool:
    """True when the fault was resolved (the faulting instruction can run again)."""
    if proc.irql >= DISPATCH_LEVEL:
        return False  # the memory manager cannot wait for a page-in here
    return m.pool.page_in(va)
