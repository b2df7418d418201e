"""Driver Verifier's state in nt's memory: its options, the verified drivers and what they
allocated, kept current as they allocate and free.

nt!MmVerifierData (`_MM_DRIVER_VERIFIER_DATA`) holds the options (Level) and the counters
over all verified drivers.  nt!VfSuspectDriversList links a `_VF_SUSPECT_DRIVER_ENTRY` for
every driver configured for verification (its base name, loads and unloads).  A verified
driver that is loaded has a `_VF_TARGET_DRIVER` (TreeNode: its image's range) whose
VerifiedData (`_VF_TARGET_VERIFIED_DRIVER_DATA`) points back at its suspect entry and
holds the driver's own pool counters and, under pool tracking, its outstanding
allocations: pages of `_VI_POOL_ENTRY` on PoolPageHeaders (each page's first entry is its
`_VI_POOL_PAGE_HEADER`), an allocation's entry holding its address, caller, size and tag,
and the unused entries on PoolTrackers.

Windows finds a target driver by address in an AVL tree whose layout the public symbols
do not give; the simulator keeps its target drivers in a table of its own instead,
nt!VfTargetDriverTable: a ULONG64 count, then pointers to the `_VF_TARGET_DRIVER`
entries in load order.

Which entry tracks which block is the verifier's own bookkeeping (Windows hashes the
address); everything a debugger reads is in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from machine.mm.physical import PAGE_SIZE
from machine.rtl.lists import initialize_list_head, insert_tail_list
from machine.types.view import Struct, sizeof

# Level bits (verifier /flags) the machine backs.
SPECIAL_POOL = 0x1
POOL_TRACKING = 0x8
DEFAULT_LEVEL = SPECIAL_POOL | POOL_TRACKING

TARGET_TABLE_ENTRIES = 31
TARGET_TABLE_SIZE = 8 + 8 * TARGET_TABLE_ENTRIES

# nt's data symbols the verifier keeps its state in: (name, size, type for the debugger)
VERIFIER_DATA = (
    ("MmVerifierData", 0xA8, "_MM_DRIVER_VERIFIER_DATA"),
    ("VfSuspectDriversList", 0x10, "_LIST_ENTRY"),
    ("VfTargetDriverTable", TARGET_TABLE_SIZE, ""),
)

NO_TAG = (0, int.from_bytes(b"None", "little"))  # ExAllocatePool without a tag


@dataclass
class Tracked:
    """One outstanding allocation of a verified driver."""

    target: int  # its driver's _VF_TARGET_DRIVER
    entry: int  # its _VI_POOL_ENTRY (0 without pool tracking)
    size: int  # bytes requested
    paged: bool


@dataclass
class DriverVerifier:
    level: int = 0
    names: set[str] = field(default_factory=set)  # configured, lower case
    suspects: dict[str, int] = field(default_factory=dict)  # lower-case name -> entry
    targets: dict[str, int] = field(default_factory=dict)  # module name -> target driver
    blocks: dict[int, Tracked] = field(default_factory=dict)

    # -- setup ------------------------------------------------------------------------

    def init(self, m) -> None:
        """Phase 0, with the pool: no driver verified yet (Level 0, empty lists)."""
        m.kspace.write(m.sym("nt!MmVerifierData"), bytes(sizeof("_MM_DRIVER_VERIFIER_DATA")))
        initialize_list_head(m.kspace, m.sym("nt!VfSuspectDriversList"))
        m.kspace.write(m.sym("nt!VfTargetDriverTable"), bytes(TARGET_TABLE_SIZE))

    def configure(self, m, names: list[str], level: int = DEFAULT_LEVEL) -> None:
        """The boot-time settings (verifier /flags level /driver names): Level and one
        suspect entry per driver name."""
        from machine.ldr.loader import write_unicode_string

        if not names:
            return
        self.level = level
        self._data(m).set("Level", level)
        for name in names:
            if name.lower() in self.suspects:
                continue
            entry = m.pool.allocate(0, sizeof("_VF_SUSPECT_DRIVER_ENTRY"), "Vfsd")
            write_unicode_string(m, Struct(m.kspace, "_VF_SUSPECT_DRIVER_ENTRY", entry)
                                 .addr("BaseName"), name, "Vfsd")
            insert_tail_list(m.kspace, m.sym("nt!VfSuspectDriversList"), entry)
            self.suspects[name.lower()] = entry
            self.names.add(name.lower())

    def _suspect_for(self, image) -> int | None:
        for key in (image.image.lower(), image.name.lower()):
            if key in self.suspects:
                return self.suspects[key]
        return None

    def verifies(self, image) -> bool:
        return image.name in self.targets

    def driver_loaded(self, m, image) -> None:
        """A configured driver's image is in memory: its target driver entry, and the
        loads counted."""
        suspect = self._suspect_for(image)
        if suspect is None or image.name in self.targets:
            return
        table = m.sym("nt!VfTargetDriverTable")
        count = m.kspace.read_u64(table)
        if count >= TARGET_TABLE_ENTRIES:
            raise RuntimeError("too many verified drivers")
        data = m.pool.allocate(0, sizeof("_VF_TARGET_VERIFIED_DRIVER_DATA"), "Vfvd")
        Struct(m.kspace, "_VF_TARGET_VERIFIED_DRIVER_DATA", data).set(
            "SuspectDriverEntry", suspect)
        initialize_list_head(m.kspace, data + Struct(
            m.kspace, "_VF_TARGET_VERIFIED_DRIVER_DATA", data).offset("EtwHandlesListHead"))
        initialize_list_head(m.kspace, data + Struct(
            m.kspace, "_VF_TARGET_VERIFIED_DRIVER_DATA", data).offset(
            "ContiguousMemoryListHead"))
        target = m.pool.allocate(0, sizeof("_VF_TARGET_DRIVER"), "Vftd")
        t = Struct(m.kspace, "_VF_TARGET_DRIVER", target)
        t.set("TreeNode.Base.p", image.base)
        t.set("TreeNode.Base.RangeSize", image.size)
        t.set("VerifiedData", data)
        m.kspace.write_u64(table + 8 + 8 * count, target)
        m.kspace.write_u64(table, count + 1)
        s = Struct(m.kspace, "_VF_SUSPECT_DRIVER_ENTRY", suspect)
        s.set("Loads", s.get("Loads") + 1)
        self._bump(self._data(m), "Loads")
        self.targets[image.name] = target

    # -- the pool calls of a verified driver -------------------------------------------

    def allocate(self, m, image, pool_type: int, size: int, tag: int, caller: int,
                 zero: bool) -> int:
        """ExAllocatePool* by a verified driver: special pool under SPECIAL_POOL (the pool
        falls back to ordinary pool above a page), the counters, and under
        POOL_TRACKING an entry for the block.  PoolCorruption passes through."""
        from machine.ex.pool import PAGED_POOL

        target = self.targets[image.name]
        vd = self._verified_data(m, target)
        data = self._data(m)
        self._bump(data, "AllocationsAttempted")
        if tag & 0xFFFFFFFF in NO_TAG:
            self._bump(data, "AllocationsWithNoTag")
            self._bump(vd, "AllocationsWithNoTag")
        if self.level & SPECIAL_POOL:
            block = m.pool.allocate_special(pool_type, size, tag)
        else:
            block = m.pool.allocate_block(pool_type, size, tag, zero)
        if not block:
            self._bump(data, "AllocationsFailed")
            self._bump(vd, "AllocationsFailed")
            return 0
        self._bump(data, "AllocationsSucceeded")
        if m.pool.is_special(block):
            self._bump(data, "AllocationsSucceededSpecialPool")
        paged = pool_type & 1 == PAGED_POOL
        entry = self._track(m, target, block, caller, size, tag) \
            if self.level & POOL_TRACKING else 0
        self.blocks[block] = Tracked(target, entry, size, paged)
        for counters in (data, vd):
            self._charge(counters, paged, size, +1)
        return block

    def freed(self, m, address: int) -> None:
        """A verified driver's block was freed (after the pool accepted the free)."""
        tracked = self.blocks.pop(address, None)
        if tracked is None:
            return
        for counters in (self._data(m), self._verified_data(m, tracked.target)):
            self._charge(counters, tracked.paged, tracked.size, -1)
        if tracked.entry:
            self._release_entry(m, tracked.target, tracked.entry)

    # -- counters ---------------------------------------------------------------------

    @staticmethod
    def _data(m) -> Struct:
        return Struct(m.kspace, "_MM_DRIVER_VERIFIER_DATA", m.sym("nt!MmVerifierData"))

    @staticmethod
    def _verified_data(m, target: int) -> Struct:
        data = Struct(m.kspace, "_VF_TARGET_DRIVER", target).get("VerifiedData")
        return Struct(m.kspace, "_VF_TARGET_VERIFIED_DRIVER_DATA", data)

    @staticmethod
    def _bump(s: Struct, name: str, by: int = 1) -> None:
        s.set(name, s.get(name) + by)

    def _charge(self, s: Struct, paged: bool, size: int, sign: int) -> None:
        """Current and peak allocations and bytes (same field names in both structures)."""
        kind = "Paged" if paged else "NonPaged"
        count = s.get(f"Current{kind}PoolAllocations") + sign
        nbytes = s.get(f"{kind}Bytes") + sign * size
        s.set(f"Current{kind}PoolAllocations", count)
        s.set(f"{kind}Bytes", nbytes)
        if count > s.get(f"Peak{kind}PoolAllocations"):
            s.set(f"Peak{kind}PoolAllocations", count)
        if nbytes > s.get(f"Peak{kind}Bytes"):
            s.set(f"Peak{kind}Bytes", nbytes)

    # -- pool tracking: _VI_POOL_ENTRY pages --------------------------------------------

    def _track(self, m, target: int, block: int, caller: int, size: int, tag: int) -> int:
        vd = self._verified_data(m, target)
        entry = self._pop(vd.sub("PoolTrackers"))
        if entry == 0:
            self._add_page(m, target, vd)
            entry = self._pop(vd.sub("PoolTrackers"))
        e = Struct(m.kspace, "_VI_POOL_ENTRY_INUSE", entry)
        e.set("VirtualAddress", block)
        e.set("CallingAddress", caller)
        e.set("NumberOfBytes", size)
        e.set("Tag", tag & 0xFFFFFFFF)
        return entry

    def _release_entry(self, m, target: int, entry: int) -> None:
        m.kspace.write(entry, bytes(sizeof("_VI_POOL_ENTRY")))
        self._push(self._verified_data(m, target).sub("PoolTrackers"), entry)

    def _add_page(self, m, target: int, vd: Struct) -> None:
        """A page of entries: the first its page header (pushed on PoolPageHeaders), the
        others free (pushed on PoolTrackers, the lowest taken first)."""
        page = m.pool.take_nonpaged_pages(PAGE_SIZE)
        m.kspace.write(page, bytes(PAGE_SIZE))
        Struct(m.kspace, "_VI_POOL_PAGE_HEADER", page).set("VerifierEntry", target)
        self._push(vd.sub("PoolPageHeaders"), page)
        size = sizeof("_VI_POOL_ENTRY")
        for entry in range(page + PAGE_SIZE - size, page, -size):
            self._push(vd.sub("PoolTrackers"), entry)

    @staticmethod
    def _push(head: Struct, entry: int) -> None:
        """InterlockedPushEntrySList on an x64 `_SLIST_HEADER` (NextEntry is the address
        >> 4); an entry's first 8 bytes link to the next one."""
        first = head.get("HeaderX64.NextEntry") << 4
        head.space.write_u64(entry, first)
        head.set("HeaderX64.NextEntry", entry >> 4)
        head.set("HeaderX64.Depth", head.get("HeaderX64.Depth") + 1)
        head.set("HeaderX64.Sequence", head.get("HeaderX64.Sequence") + 1)

    @staticmethod
    def _pop(head: Struct) -> int:
        first = head.get("HeaderX64.NextEntry") << 4
        if first == 0:
            return 0
        head.set("HeaderX64.NextEntry", head.space.read_u64(first) >> 4)
        head.set("HeaderX64.Depth", head.get("HeaderX64.Depth") - 1)
        head.set("HeaderX64.Sequence", head.get("HeaderX64.Sequence") + 1)
        head.space.write_u64(first, 0)
        return first
