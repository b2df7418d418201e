"""Driver Verifier's state in memory: nt!MmVerifierData (Level and the counters over all
verified drivers), the suspect list, the target driver table and each verified driver's
counters and tracked allocations, kept current as its drivers allocate and free."""

from __future__ import annotations

from functools import partial

import pytest

from machine.ex.verifier import POOL_TRACKING, SPECIAL_POOL
from machine.scenario import ScenarioError, boot_scenario, parse_scenario
from machine.types.view import Struct
from tests.machine import pool_code
from tests.machine.pool_views import tag

TAG = tag("VfT1")
alloc = partial(pool_code.alloc, tag=TAG)
free = partial(pool_code.free, tag=TAG)

# vfa: three blocks left (nonpaged 0x40, paged 0x100, a big nonpaged 0x1800 that special
# pool cannot hold), one freed (0x30); vfb: one block of 0x20; plain (not verified): 0x40.
VFA = (alloc("40h", "BlockA") + alloc("100h", "BlockB", pool=1) + alloc("30h", "BlockC")
       + free("BlockC") + alloc("1800h", "BlockD"))
VFB = alloc("20h", "BlockA")
PLAIN = alloc("40h", "BlockA")
LIVE = {"vfa": {"BlockA": (0x40, False), "BlockB": (0x100, True), "BlockD": (0x1800, False)},
        "vfb": {"BlockA": (0x20, False)}}


def driver(name: str, body: str, globals_: list[str]) -> str:
    code = "    sub     rsp, 28h\n" + body + "    add     rsp, 28h\n    xor     eax, eax\n    ret\n"
    parts = [f'[[driver]]\nname = "{name}"\nentry = "DriverEntry"\n']
    parts += [f'[[driver.global]]\nname = "{g}"\nsize = 8\n' for g in globals_]
    parts.append(f'[[driver.routine]]\nname = "DriverEntry"\ncode = """\n{code}"""\n')
    return "\n".join(parts)


def verifier_scenario(verified: str = '"vfa.sys", "vfb"', flags: str = "") -> str:
    """Three drivers, the first two under Driver Verifier (one named with its extension,
    one without) unless `verified` says otherwise."""
    options = f"verifier = [{verified}]\n" if verified else ""
    options += f"verifier_flags = {flags}\n" if flags else ""
    return ('[scenario]\nname = "vf"\n[machine]\ncpus = 1\n' + options
            + driver("vfa", VFA, ["BlockA", "BlockB", "BlockC", "BlockD"])
            + driver("vfb", VFB, ["BlockA"]) + driver("plain", PLAIN, ["BlockA"]))


def boot(verified: str = '"vfa.sys", "vfb"', flags: str = ""):
    m = boot_scenario(parse_scenario(verifier_scenario(verified, flags), "vf.toml"))
    assert m.bugcheck is None
    return m


@pytest.fixture(scope="module")
def machine():
    return boot()


def data(m) -> Struct:
    return Struct(m.kspace, "_MM_DRIVER_VERIFIER_DATA", m.sym("nt!MmVerifierData"))


def targets(m) -> list[int]:
    table = m.sym("nt!VfTargetDriverTable")
    return [m.kspace.read_u64(table + 8 + 8 * i) for i in range(m.kspace.read_u64(table))]


def verified_data(m, target: int) -> Struct:
    vd = Struct(m.kspace, "_VF_TARGET_DRIVER", target).get("VerifiedData")
    return Struct(m.kspace, "_VF_TARGET_VERIFIED_DRIVER_DATA", vd)


def unicode(m, address: int) -> str:
    us = Struct(m.kspace, "_UNICODE_STRING", address)
    return m.kspace.read(us.get("Buffer"), us.get("Length")).decode("utf-16-le")


def tracked(m, target: int) -> list[tuple[int, int, int, int]]:
    """(address, caller, bytes, tag) of the entries in use on the target's tracker pages,
    walked from PoolPageHeaders (an x64 SLIST: NextEntry is the address >> 4)."""
    page = verified_data(m, target).get("PoolPageHeaders.HeaderX64.NextEntry") << 4
    out = []
    while page:
        for entry in range(page + 0x20, page + 0x1000, 0x20):
            e = Struct(m.kspace, "_VI_POOL_ENTRY_INUSE", entry)
            if e.get("CallingAddress"):
                out.append((e.get("VirtualAddress"), e.get("CallingAddress"),
                            e.get("NumberOfBytes"), e.get("Tag")))
        page = Struct(m.kspace, "_VI_POOL_PAGE_HEADER", page).get("NextPage")
    return out


def live_blocks(m, name: str) -> dict[int, tuple[int, bool]]:
    return {m.kspace.read_u64(m.sym(f"{name}!{g}")): info for g, info in LIVE[name].items()}


def test_options_and_the_configured_drivers_are_published(machine) -> None:
    m = machine
    assert data(m).get("Level") == SPECIAL_POOL | POOL_TRACKING
    assert data(m).get("Loads") == 2
    head = m.sym("nt!VfSuspectDriversList")
    entries, entry = [], m.kspace.read_u64(head)
    while entry != head:
        s = Struct(m.kspace, "_VF_SUSPECT_DRIVER_ENTRY", entry)
        entries.append((unicode(m, s.addr("BaseName")), s.get("Loads"), s.get("Unloads")))
        entry = m.kspace.read_u64(entry)
    assert entries == [("vfa.sys", 1, 0), ("vfb.sys", 1, 0)]
    images = {img.name: img for img in m.modules}
    found = []
    for target in targets(m):
        t = Struct(m.kspace, "_VF_TARGET_DRIVER", target)
        img = next(i for i in images.values() if i.base == t.get("TreeNode.Base.p"))
        assert t.get("TreeNode.Base.RangeSize") == img.size
        suspect = verified_data(m, target).get("SuspectDriverEntry")
        name = unicode(m, Struct(m.kspace, "_VF_SUSPECT_DRIVER_ENTRY", suspect).addr("BaseName"))
        assert name == img.image
        found.append(img.name)
    assert found == ["vfa", "vfb"]  # load order; the plain driver has none


def test_global_counters_match_what_the_drivers_allocated(machine) -> None:
    m = machine
    blocks = {**live_blocks(m, "vfa"), **live_blocks(m, "vfb")}
    d = data(m)
    assert d.get("AllocationsAttempted") == 5  # four in vfa (one freed since), one in vfb
    assert d.get("AllocationsSucceeded") == 5
    freed = m.kspace.read_u64(m.sym("vfa!BlockC"))
    special = [b for b in [*blocks, freed] if m.pool.is_special(b)]
    assert d.get("AllocationsSucceededSpecialPool") == len(special) == 4
    assert not m.pool.is_special(m.kspace.read_u64(m.sym("vfa!BlockD")))  # above a page
    assert not m.pool.is_special(m.kspace.read_u64(m.sym("plain!BlockA")))
    nonpaged = [size for size, paged in blocks.values() if not paged]
    paged = [size for size, paged in blocks.values() if paged]
    assert (d.get("CurrentNonPagedPoolAllocations"), d.get("NonPagedBytes")) == \
        (len(nonpaged), sum(nonpaged))
    assert (d.get("CurrentPagedPoolAllocations"), d.get("PagedBytes")) == \
        (len(paged), sum(paged))
    # the peak: vfa's 0x40 + 0x1800 and vfb's 0x20, after the 0x30 block went
    assert (d.get("PeakNonPagedPoolAllocations"), d.get("PeakNonPagedBytes")) == (3, 0x1860)
    assert d.get("AllocationsWithNoTag") == d.get("AllocationsFailed") == 0


def test_each_driver_counts_its_own_blocks_and_tracks_them(machine) -> None:
    m = machine
    for name, target in zip(("vfa", "vfb"), targets(m), strict=True):
        img = next(i for i in m.modules if i.name == name)
        blocks = live_blocks(m, name)
        vd = verified_data(m, target)
        nonpaged = [size for size, paged in blocks.values() if not paged]
        paged = [size for size, paged in blocks.values() if paged]
        assert (vd.get("CurrentNonPagedPoolAllocations"), vd.get("NonPagedBytes")) == \
            (len(nonpaged), sum(nonpaged))
        assert (vd.get("CurrentPagedPoolAllocations"), vd.get("PagedBytes")) == \
            (len(paged), sum(paged))
        entries = tracked(m, target)
        assert sorted((a, n) for a, _c, n, _t in entries) == \
            sorted((a, size) for a, (size, _p) in blocks.items())
        assert all(t == TAG and img.base <= c < img.base + img.size
                   for _a, c, _n, t in entries)
    # vfa's freed entry went back on PoolTrackers: 127 entries a page, three in use
    assert verified_data(m, targets(m)[0]).get("PoolTrackers.HeaderX64.Depth") == 127 - 3


def test_without_special_pool_blocks_come_from_the_ordinary_pool() -> None:
    m = boot(flags="0x8")
    assert data(m).get("Level") == POOL_TRACKING
    assert not any(m.pool.is_special(b) for b in live_blocks(m, "vfa"))
    assert data(m).get("AllocationsSucceededSpecialPool") == 0
    assert len(tracked(m, targets(m)[0])) == 3


def test_without_pool_tracking_no_entries_are_kept_but_counters_are() -> None:
    m = boot(verified='"vfb"', flags="1")
    assert len(targets(m)) == 1
    vd = verified_data(m, targets(m)[0])
    assert vd.get("PoolPageHeaders.HeaderX64.NextEntry") == 0
    assert vd.get("CurrentNonPagedPoolAllocations") == 1
    assert m.pool.is_special(m.kspace.read_u64(m.sym("vfb!BlockA")))


def test_no_verified_driver_leaves_level_zero_and_empty_lists() -> None:
    m = boot(verified="")
    assert data(m).get("Level") == 0
    assert targets(m) == []
    head = m.sym("nt!VfSuspectDriversList")
    assert m.kspace.read_u64(head) == head
    assert data(m).get("AllocationsAttempted") == 0


def test_verifier_flags_must_be_a_number() -> None:
    with pytest.raises(ScenarioError, match="verifier_flags"):
        parse_scenario(verifier_scenario(flags='"x"'), "vf.toml")
