"""Per-tag counters in nt!PoolTrackTable: every allocation and free, small, big and
special pool, paged and nonpaged, is counted in the tag's `_POOL_TRACKER_TABLE` entry,
which is found by hashing the tag; the debugger's dt reads the new type."""

from __future__ import annotations

from functools import partial

from commands.session import Session
from kdsim.live import LiveTarget
from tests.conftest import run
from tests.machine import pool_code
from tests.machine.pool_views import tag, tracker
from tests.machine.probe import boot_probe, start_system_thread

TAG = tag("Trk1")
alloc = partial(pool_code.alloc, tag=TAG)
free = partial(pool_code.free, tag=TAG)


COUNT = ("    sub     rsp, 28h\n"
         + alloc("40h", "BlockA") + alloc("40h") + alloc("40h") + free("BlockA")
         + alloc("100h", "BlockB", pool=1) + alloc("100h", "BlockC", pool=1) + free("BlockB")
         + free("BlockC") + alloc("1800h") + "t_park:\n    jmp     t_park\n")
GLOBALS = {"BlockA": 8, "BlockB": 8, "BlockC": 8}


def test_allocations_and_frees_of_a_tag_are_counted_in_its_tracker_entry():
    m = boot_probe("pooler", {"Count": COUNT}, GLOBALS, cpus=1)
    start_system_thread(m, 0x8000, m.sym("pooler!Count"))
    m.run(20_000)
    assert m.bugcheck is None
    e = tracker(m, "Trk1")
    # three small nonpaged blocks of 5 units and one big one of two pages; one freed
    assert (e.get("NonPagedAllocs"), e.get("NonPagedFrees")) == (4, 1)
    assert e.get("NonPagedBytes") == 2 * 0x50 + 0x2000
    # two paged blocks of 0x11 units, both freed
    assert (e.get("PagedAllocs"), e.get("PagedFrees"), e.get("PagedBytes")) == (2, 2, 0)


def test_dt_shows_a_tracker_entry_read_from_memory():
    m = boot_probe("pooler", {"Count": COUNT}, GLOBALS, cpus=1)
    start_system_thread(m, 0x8000, m.sym("pooler!Count"))
    m.run(20_000)
    session = Session(LiveTarget(m), processor=0)
    lines = [ln.rstrip() for ln in run(session, f"dt nt!_POOL_TRACKER_TABLE "
                                                f"{tracker(m, 'Trk1').address:x}")]
    assert lines == [
        "   +0x000 Key              : 0n829125204",
        "   +0x008 NonPagedBytes    : 0x20a0",
        "   +0x010 NonPagedAllocs   : 4",
        "   +0x018 NonPagedFrees    : 1",
        "   +0x020 PagedBytes       : 0",
        "   +0x028 PagedAllocs      : 2",
        "   +0x030 PagedFrees       : 2",
    ]
    link = [ln.rstrip() for ln in run(session, "dt nt!_OBJECT_SYMBOLIC_LINK")]
    assert link[1] == "   +0x008 LinkTarget       : _UNICODE_STRING"
    assert link[-1] == "   +0x020 AccessMask       : Uint4B"


SPECIAL = ("    sub     rsp, 28h\n" + alloc("40h", "BlockA") + """
s_wait:
    cmp     qword ptr [BlockB], 0
    je      s_wait
""" + free("BlockA") + "s_park:\n    jmp     s_park\n")


def test_special_pool_blocks_are_counted_too():
    m = boot_probe("pooler", {"Special": SPECIAL}, GLOBALS, cpus=1, verified=True)
    start_system_thread(m, 0x8000, m.sym("pooler!Special"))
    m.run(20_000)
    block = m.kspace.read_u64(m.sym("pooler!BlockA"))
    assert m.pool.is_special(block)
    e = tracker(m, "Trk1")
    assert (e.get("NonPagedAllocs"), e.get("NonPagedFrees"), e.get("NonPagedBytes")) == \
        (1, 0, 0x50)
    m.kspace.write_u64(m.sym("pooler!BlockB"), 1)
    m.run(20_000)
    assert m.bugcheck is None
    assert (e.get("NonPagedAllocs"), e.get("NonPagedFrees"), e.get("NonPagedBytes")) == \
        (1, 1, 0)
