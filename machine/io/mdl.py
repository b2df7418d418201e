"""The I/O manager's side of MDLs: allocating them (optionally on an IRP's chain) and
freeing them.  What an MDL describes is the memory manager's business (machine.mm.mdl)."""

from __future__ import annotations

from machine.ke.native import Call, routine
from machine.mm.mdl import (
    MDL_ALLOCATED_FIXED_SIZE,
    MDL_PARTIAL_HAS_BEEN_MAPPED,
    initialize_mdl,
    mdl_header_size,
    spanned_pages,
    unmap_locked_pages,
)
from machine.types.view import Struct

# MDLs for up to this many pages come from the I/O manager's fixed-size lookaside
# allocation (all the same size, flagged MDL_ALLOCATED_FIXED_SIZE), as on Windows.
IOP_FIXED_SIZE_MDL_PFNS = 0x17
MAXIMUM_MDL_LENGTH = 0x80000000
MDL_TAG = "Mdl "


def allocate_mdl(m, va: int, length: int, secondary: bool, irp_addr: int) -> int:
    """IoAllocateMdl; 0 when the buffer is too big to describe."""
    pages = spanned_pages(va, length)
    needed = mdl_header_size(m) + 8 * pages
    if length >= MAXIMUM_MDL_LENGTH or needed > 0xFFFF:
        return 0
    fixed = pages <= IOP_FIXED_SIZE_MDL_PFNS
    size = mdl_header_size(m) + 8 * IOP_FIXED_SIZE_MDL_PFNS if fixed else needed
    mdl = m.pool.allocate(0, size, MDL_TAG)
    initialize_mdl(m, mdl, va, length)
    d = Struct(m.kspace, "_MDL", mdl)
    if fixed:
        d.set("MdlFlags", d.get("MdlFlags") | MDL_ALLOCATED_FIXED_SIZE)
    if irp_addr:
        irp = Struct(m.kspace, "_IRP", irp_addr)
        if not secondary or not irp.get("MdlAddress"):
            irp.set("MdlAddress", mdl)
        else:  # a secondary buffer goes at the end of the IRP's chain
            tail = irp.get("MdlAddress")
            while Struct(m.kspace, "_MDL", tail).get("Next"):
                tail = Struct(m.kspace, "_MDL", tail).get("Next")
            Struct(m.kspace, "_MDL", tail).set("Next", mdl)
    return mdl


def release_mdl_block(m, mdl: int) -> None:
    """The MDL's pool block goes back (IoFreeMdl's free, for the I/O manager's own use)."""
    m.pool.free(mdl)


@routine("IoAllocateMdl", frame=0x58, size=0x200)
def IoAllocateMdl(m, proc, a):
    """(VirtualAddress, Length, SecondaryBuffer, ChargeQuota, Irp)"""
    return allocate_mdl(m, a[0], a[1] & 0xFFFFFFFF, bool(a[2] & 0xFF), a[4])


@routine("IoFreeMdl", frame=0x38, size=0x100)
def IoFreeMdl(m, proc, a):
    """MmPrepareMdlForReuse (a partial MDL's mapping goes), then the block is freed.
    The lookaside list is not modelled: the block goes back to pool, whose checks catch
    an MDL freed twice."""
    d = Struct(m.kspace, "_MDL", a[0])
    if d.get("MdlFlags") & MDL_PARTIAL_HAS_BEEN_MAPPED:
        unmap_locked_pages(m, d.get("MappedSystemVa"), a[0])
    yield Call(m.sym("ExFreePoolWithTag"), (a[0], 0), ret=0x4A)
    return 0
