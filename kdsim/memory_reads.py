"""Reading the machine's memory model as a debugger does, for the live target and for a
dump (whose pages are loaded into the same model): address spaces by DirectoryTableBase,
and reads whose failures become the debugger's MemoryAccessError."""

from __future__ import annotations

from commands.target import MemoryAccessError
from machine.mm.paging import AddressSpace, PageFault
from machine.mm.physical import PhysicalAccessError, PhysicalMemory


class Spaces:
    """One AddressSpace per page-table root, made on first use."""

    def __init__(self, phys: PhysicalMemory) -> None:
        self.phys = phys
        self._spaces: dict[int, AddressSpace] = {}

    def at(self, dtb: int) -> AddressSpace:
        pfn = (dtb & 0x000FFFFFFFFFF000) >> 12
        space = self._spaces.get(pfn)
        if space is None:
            space = self._spaces[pfn] = AddressSpace(self.phys, pml4_pfn=pfn)
        return space


def read_virtual(space: AddressSpace, address: int, size: int) -> bytes:
    try:
        return space.read(address, size)
    except PageFault as exc:
        raise MemoryAccessError(exc.va) from None
    except PhysicalAccessError as exc:
        raise MemoryAccessError(address) from exc


def read_physical(phys: PhysicalMemory, address: int, size: int) -> bytes:
    try:
        return phys.read(address, size)
    except PhysicalAccessError as exc:
        raise MemoryAccessError(exc.pa) from None
