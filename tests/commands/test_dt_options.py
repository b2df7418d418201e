"""`dt`'s options: the command-line parser and the display options of the renderer
(-v, -b, -a, -o, -i, -c, -l), against the real type catalog and a fake memory."""

from __future__ import annotations

import pytest

from commands.dt import render_array, render_dt, render_list_entry_walk
from commands.dt_options import MAX_DEPTH, DtOptions, parse_dt_line
from commands.errors import KdError
from machine.types.catalog import load_catalog
from tests.commands.fakes import ModuleSymbols, PagedMemory


@pytest.fixture(scope="module")
def types():
    return load_catalog()


SYMBOLS = ModuleSymbols([("nt", 0xFFFFF80211000000, 0x1000000)],
                        [("nt", "KiDpcRoutine", 0xFFFFF80211002000)])


# -- the command line ----------------------------------------------------------------------

def test_parser_combined_letters_and_attached_numbers():
    line = parse_dt_line("-ca10 nt!_KDPC ffff8000`00001000")
    assert line.options.compact
    assert [(w.text, w.array) for w in line.words] == [
        ("nt!_KDPC", 10), ("ffff8000`00001000", None)]
    line = parse_dt_line("nt!_EPROCESS -l ActiveProcessLinks.Flink -y Ima -yoi Uni addr")
    opts = line.options
    assert opts.list_field == "ActiveProcessLinks.Flink"
    assert opts.no_offsets and opts.no_indent
    assert [(w.text, w.prefix) for w in line.words] == [
        ("nt!_EPROCESS", False), ("Ima", True), ("Uni", True), ("addr", False)]


@pytest.mark.parametrize("args, depth", [
    ("-r _X", MAX_DEPTH), ("-r1 _X", 1), ("-r3 _X", 3), ("-r0 _X", 0), ("-r12 _X", MAX_DEPTH),
    ("_X", 0),
])
def test_parser_recursion_depth(args, depth):
    assert parse_dt_line(args).options.recurse == depth


def test_parser_other_options():
    line = parse_dt_line("-b -v -p -n abc -s 10 nt!*")
    o = line.options
    assert (o.block, o.verbose, o.physical, o.size) == (True, True, True, 0x10)
    assert [(w.text, w.name) for w in line.words] == [("abc", True), ("nt!*", False)]
    assert parse_dt_line("-s 0x20 _X").options.size == 0x20
    with pytest.raises(KdError):
        parse_dt_line("-q _X")
    with pytest.raises(KdError):
        parse_dt_line("_X -l")


# -- -v ---------------------------------------------------------------------------------------

def test_verbose_type_lines(types):
    assert render_dt(types, "nt!_LIST_ENTRY", opts=DtOptions(verbose=True)) == [
        "struct _LIST_ENTRY, 2 elements, 0x10 bytes",
        "   +0x000 Flink            : Ptr64 to struct _LIST_ENTRY, 2 elements, 0x10 bytes",
        "   +0x008 Blink            : Ptr64 to struct _LIST_ENTRY, 2 elements, 0x10 bytes",
    ]
    irp = render_dt(types, "_IRP", opts=DtOptions(verbose=True))
    assert irp[:2] == ["nt!_IRP", "struct _IRP, 23 elements, 0xd0 bytes"]
    assert "   +0x018 AssociatedIrp    : union <anonymous-tag>, 3 elements, 0x8 bytes" in irp
    assert "   +0x068 CancelRoutine    : Ptr64 to     void " in irp
    assert "   +0x070 UserBuffer       : Ptr64 to Void" in irp
    drv = render_dt(types, "nt!_DRIVER_OBJECT", opts=DtOptions(verbose=True))
    assert drv[-1] == "   +0x070 MajorFunction    : [28] Ptr64 to     long"
    assert render_dt(types, "nt!_KTHREAD_STATE", opts=DtOptions(verbose=True))[0] == (
        "Enum _KTHREAD_STATE,  10 total enums")
    lock = render_dt(types, "nt!_EX_PUSH_LOCK", opts=DtOptions(verbose=True))
    assert lock[1] == "   +0x000 Locked           : Bitfield Pos 0, 1 Bit"


# -- -b, -a ---------------------------------------------------------------------------------

IRP = 0xFFFF800000010000


def irp_memory() -> PagedMemory:
    mem = PagedMemory()
    mem.map(IRP, 0xD0)
    mem.w(IRP, 6)
    mem.q(IRP + 0x20, 0xFFFF800000020020)
    mem.q(IRP + 0x28, 0xFFFF800000030020)
    mem.q(IRP + 0x48, 0xFFFF800000040000)
    return mem


def test_block_expands_embedded_structures_and_shows_bare_pointers(types):
    mem = irp_memory()
    lines = render_dt(types, "nt!_IRP", IRP, mem.read, SYMBOLS, opts=DtOptions(block=True))
    i = lines.index("   +0x020 ThreadListEntry  :  [ 0xffff8000`00020020 - 0xffff8000`00030020 ]")
    assert lines[i + 1:i + 3] == [
        "      +0x000 Flink            : 0xffff8000`00020020",
        "      +0x008 Blink            : 0xffff8000`00030020",
    ]
    assert "   +0x048 UserIosb         : 0xffff8000`00040000" in lines
    assert "   +0x018 AssociatedIrp    : " in lines
    assert "      +0x000 MasterIrp        : (null) " in lines
    # Deeper: Tail.Overlay's anonymous members are expanded too.
    assert any(line.startswith("         +0x0") for line in lines)


def test_block_shows_arrays_element_by_element(types):
    mem = PagedMemory()
    prcb = 0xFFFF800000100000
    mem.map(prcb + 0x30C0, 0x50)
    mem.d(prcb + 0x30C0 + 0x28 + 0x18, 3)  # DpcData[1].DpcQueueDepth
    lines = render_dt(types, "nt!_KPRCB", prcb, mem.read, SYMBOLS, ["DpcData"],
                      opts=DtOptions(block=True))
    assert lines[:3] == ["   +0x30c0 DpcData : ", "    [00]", "      +0x000 DpcList : "]
    j = lines.index("    [01]")
    assert "      +0x018 DpcQueueDepth : 0n3" in lines[j:]
    assert "      +0x018 DpcQueueDepth : 0n0" in lines[:j]


def test_array_field_elements(types):
    mem = PagedMemory()
    ep = 0xFFFF800000200000
    mem.map(ep, 0xA40)
    mem.q(ep + 0x470, 0x3838)
    mem.q(ep + 0x478, 0x12)
    lines = render_dt(types, "nt!_EPROCESS", ep, mem.read, SYMBOLS, ["ProcessQuotaUsage"],
                      arrays={"processquotausage": 0})
    assert lines == ["   +0x470 ProcessQuotaUsage : ", "    [00] 0x3838", "    [01] 0x12"]
    one = render_dt(types, "nt!_EPROCESS", ep, mem.read, SYMBOLS, ["ProcessQuotaUsage"],
                    arrays={"processquotausage": 1})
    assert one == ["   +0x470 ProcessQuotaUsage : ", "    [00] 0x3838"]
    # Character arrays stay strings.
    mem.write(ep + 0x5A8, b"Idle\0")
    assert render_dt(types, "nt!_EPROCESS", ep, mem.read, SYMBOLS, ["ImageFileName"],
                     arrays={"imagefilename": 0}) == [
        '   +0x5a8 ImageFileName : [15]  "Idle"']


def test_array_of_structures_at_an_address(types):
    mem = PagedMemory()
    a = 0xFFFF800000300000
    mem.map(a, 0x20)
    mem.q(a, 0x11)
    mem.q(a + 0x10, 0x22)
    lines = render_array(types, "nt!_SINGLE_LIST_ENTRY", a, 2, mem.read, SYMBOLS)
    assert lines == [
        "[0] @ ffff8000`00300000 ",
        "-" * 45,
        "   +0x000 Next             : 0x00000000`00000011 _SINGLE_LIST_ENTRY",
        "",
        "[1] @ ffff8000`00300008 ",
        "-" * 45,
        "   +0x000 Next             : (null) ",
        "",
    ]
    compact = render_array(types, "nt!_SINGLE_LIST_ENTRY", a, 3, mem.read, SYMBOLS,
                           opts=DtOptions(compact=True))
    assert compact[0] == "[0] +0x000 Next 0x00000000`00000011 _SINGLE_LIST_ENTRY"
    assert compact[2] == "[2] +0x000 Next 0x00000000`00000022 _SINGLE_LIST_ENTRY"


# -- -o, -i, -c -----------------------------------------------------------------------------

def test_no_offsets_no_indent_and_compact(types):
    mem = irp_memory()
    assert render_dt(types, "nt!_IRP", IRP, mem.read, SYMBOLS, ["Type"],
                     opts=DtOptions(no_offsets=True)) == ["   Type : 0n6"]
    nested = render_dt(types, "nt!_IRP", IRP, mem.read, SYMBOLS, ["ThreadListEntry."],
                       opts=DtOptions(no_indent=True))
    assert [line[:10] for line in nested] == ["   +0x020 ", "   +0x000 ", "   +0x008 "]
    compact = render_dt(types, "nt!_IRP", IRP, mem.read, SYMBOLS, ["Type", "Size"],
                        opts=DtOptions(compact=True))
    assert compact == ["   +0x000 Type 0n6 +0x002 Size 0"]


# -- -l ---------------------------------------------------------------------------------------

def test_list_walk_by_the_list_entry_itself(types):
    # `-l ThreadListEntry` (the _LIST_ENTRY, not its Flink) walks the same list.
    mem = PagedMemory()
    a, b = 0xFFFF800000070000, 0xFFFF800000071000
    for irp, nxt, kind in ((a, b, 6), (b, a, 7)):
        mem.map(irp, 0xD0)
        mem.w(irp, kind)
        mem.q(irp + 0x20, nxt + 0x20)
    lines = render_list_entry_walk(types, "nt!_IRP", a, mem.read, SYMBOLS,
                                   "ThreadListEntry", ["Type"],
                                   opts=DtOptions(no_offsets=True))
    assert lines == [
        "ThreadListEntry at 0xffff8000`00070000", "-" * 45, "   Type : 0n6", "",
        "ThreadListEntry at 0xffff8000`00071000", "-" * 45, "   Type : 0n7", "",
    ]


def test_list_walk_is_bounded(types):
    mem = PagedMemory()
    base = 0xFFFF800000400000
    mem.map(base, 0x10 * 50)
    for i in range(50):  # a chain that never returns to its start
        mem.q(base + 0x10 * i, base + 0x10 * (i + 1))
    lines = render_list_entry_walk(types, "nt!_LIST_ENTRY", base, mem.read, SYMBOLS,
                                   "Flink", ["Blink"], limit=10)
    assert sum(line.startswith("Flink at ") for line in lines) == 10


def test_function_pointer_outside_every_module(types):
    mem = PagedMemory()
    dpc = 0xFFFF800000500000
    mem.map(dpc, 0x40)
    mem.q(dpc + 0x18, 0xFFFF8488AA5624E0)
    assert render_dt(types, "nt!_KDPC", dpc, mem.read, SYMBOLS, ["DeferredRoutine"]) == [
        "   +0x018 DeferredRoutine : 0xffff8488`aa5624e0     void  +ffff8488aa5624e0"]
