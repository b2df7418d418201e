"""`dt` on the crashed default machine: processes, threads, the PRCB, the crash IRP, driver
and device objects, lists and globals, with every option the command takes.  Values are
compared with what the machine's own structures hold."""

from __future__ import annotations

import re

import pytest

from machine.types.view import Struct
from tests.conftest import run
from tests.kdsim.test_io_cmds import crash_irp


def bt(value: int) -> str:
    return f"0x{value >> 32:08x}`{value & 0xFFFFFFFF:08x}"


def image_name(m, eprocess: int) -> str:
    return m.kspace.read(eprocess + 0x5A8, 15).split(b"\0")[0].decode()


def uchar(value: int) -> str:
    """A UChar as dt shows it: `0`, `0x2` (followed by the character)."""
    return "0" if value == 0 else f"0x{value:x}"


def pointer_value(value: int, pointee: str = "Void") -> str:
    return f"{bt(value)} {pointee}" if value else "(null) "


def drivers(m) -> list[tuple[str, int]]:
    return [(img.name, img.driver_object) for img in m.modules
            if getattr(img, "driver_object", 0)]


# -- fields of processes, threads, the PRCB -------------------------------------------------

def test_process_fields_of_every_process(app, session):
    m = app.machine
    assert len(m.processes) > 5
    for p in m.processes:
        lines = run(session, f"dt nt!_EPROCESS {p.eprocess:x} ImageFileName UniqueProcessId")
        assert lines == [
            f"   +0x440 UniqueProcessId : {bt(p.pid)} Void" if p.pid else
            "   +0x440 UniqueProcessId : (null) ",
            f'   +0x5a8 ImageFileName   : [15]  "{image_name(m, p.eprocess)}"',
        ]
        assert p.image.startswith(image_name(m, p.eprocess))
        dtb = Struct(m.kspace, "_EPROCESS", p.eprocess).get("Pcb.DirectoryTableBase")
        assert run(session, f"dt nt!_EPROCESS {p.eprocess:x} Pcb.DirectoryTableBase") == [
            "   +0x000 Pcb                    : ",
            f"      +0x028 DirectoryTableBase     : 0x{dtb:x}",
        ]


def test_thread_fields_of_every_thread(app, session):
    m = app.machine
    threads = [t for p in m.processes for t in p.threads][:40]
    assert len(threads) > 10
    for t in threads:
        k = Struct(m.kspace, "_KTHREAD", t.ethread)
        lines = run(session, f"dt nt!_KTHREAD {t.ethread:x} Process State WaitIrql")
        assert lines[0] == f"   +0x184 State    : {uchar(k.get('State'))} ''"
        assert lines[1] == f"   +0x186 WaitIrql : {uchar(k.get('WaitIrql'))} ''"
        assert lines[2] == f"   +0x220 Process  : {bt(t.process.eprocess)} _KPROCESS"
        cid = run(session, f"dt nt!_ETHREAD {t.ethread:x} Cid.UniqueThread")
        assert cid[1] == f"      +0x008 UniqueThread     : {pointer_value(t.tid)}"


def test_wildcard_fields_and_pseudo_registers(app, session):
    m = app.machine
    thread = m.processors[app.target.stop_processor].current
    lines = run(session, "dt nt!_KTHREAD @$thread Apc*")
    names = [ln.split()[1] for ln in lines]
    assert names == ["ApcInterruptRequest", "ApcQueueable", "ApcState", "ApcStateFill",
                     "ApcStateIndex"]
    assert run(session, "dt nt!_EPROCESS @$proc UniqueProcessId") == [
        f"   +0x440 UniqueProcessId : {bt(thread.process.pid)} Void"]
    assert run(session, "dt _EPROCESS Active*") == [
        "nt!_EPROCESS",
        "   +0x448 ActiveProcessLinks : _LIST_ENTRY",
        "   +0x5f0 ActiveThreads : Uint4B",
        "   +0x858 ActiveThreadsHighWatermark : Uint4B",
    ]


def test_prcb_with_module_omitted_and_recursion_into_an_array(app, session):
    m = app.machine
    prcb = session.prcb()
    data = Struct(m.kspace, "_KPRCB", prcb)
    assert run(session, "dt _KPRCB @$prcb DpcData") == [
        "nt!_KPRCB", "   +0x30c0 DpcData : [2] _KDPC_DATA"]
    lines = run(session, "dt -r1 nt!_KPRCB @$prcb DpcData")
    depth = data.get("DpcData[0].DpcQueueDepth")
    assert lines[0] == "   +0x30c0 DpcData : [2] _KDPC_DATA"
    assert lines[1] == "      +0x000 DpcList : _KDPC_LIST"
    assert f"      +0x018 DpcQueueDepth : 0n{depth}" in lines
    assert len(lines) == 6
    current = data.get("CurrentThread")
    assert run(session, "dt nt!_KPRCB @$prcb CurrentThread") == [
        f"   +0x008 CurrentThread : {bt(current)} _KTHREAD"]


# -- the crash IRP, driver and device objects --------------------------------------------

def test_irp_values_and_block_display(app, session):
    m = app.machine
    irp, thread = crash_irp(app)
    i = Struct(m.kspace, "_IRP", irp)
    lines = run(session, f"dt nt!_IRP {irp:x}")
    assert lines[0] == f"   +0x000 Type             : 0n{i.get('Type')}"
    flink, blink = i.get("ThreadListEntry.Flink"), i.get("ThreadListEntry.Blink")
    assert (f"   +0x020 ThreadListEntry  : _LIST_ENTRY [ {bt(flink)} - {bt(blink)} ]"
            in lines)
    block = run(session, f"dt -b nt!_IRP {irp:x}")
    k = block.index(f"   +0x020 ThreadListEntry  :  [ {bt(flink)} - {bt(blink)} ]")
    # -b: members of embedded structures, pointers as bare addresses.
    assert block[k + 1] == f"      +0x000 Flink            : {bt(flink)}"
    assert block[k + 2] == f"      +0x008 Blink            : {bt(blink)}"
    assert len(block) > len(lines)
    # The thread's IrpList leads to this IRP's ThreadListEntry.
    assert run(session, f"dt nt!_ETHREAD {thread:x} IrpList.Flink")[1].startswith(
        f"      +0x000 Flink         : {bt(irp + 0x20)} _LIST_ENTRY")


def test_driver_and_device_objects(app, session):
    m = app.machine
    objs = drivers(m)
    assert any(name.lower() == "myfault" for name, _ in objs)
    for name, drv in objs:
        d = Struct(m.kspace, "_DRIVER_OBJECT", drv)
        lines = run(session, f"dt nt!_DRIVER_OBJECT {drv:x}")
        assert lines[0] == "   +0x000 Type             : 0n4"
        assert f'   +0x038 DriverName       : _UNICODE_STRING "\\Driver\\{name}"' in lines
        assert lines[-1].startswith("   +0x070 MajorFunction    : [28] ")
        first = d.get("MajorFunction[0]")
        symbol = session.symbols.name_for(first)
        symbol = symbol if "+" in symbol else symbol + "+0"
        assert lines[-1] == f"   +0x070 MajorFunction    : [28] {bt(first)}     long  {symbol}"
        us = run(session, f"dt -r1 nt!_DRIVER_OBJECT {drv:x} DriverName")
        assert us[1] == f"      +0x000 Length     : 0x{d.get('DriverName.Length'):x}"
        dev = d.get("DeviceObject")
        if dev:
            assert run(session, f"dt nt!_DEVICE_OBJECT {dev:x} DriverObject") == [
                f"   +0x008 DriverObject : {bt(drv)} _DRIVER_OBJECT"]


def test_array_fields_element_by_element(app, session):
    m = app.machine
    _name, drv = drivers(m)[0]
    d = Struct(m.kspace, "_DRIVER_OBJECT", drv)
    lines = run(session, f"dt nt!_DRIVER_OBJECT {drv:x} -a3 MajorFunction")
    assert lines[0] == "   +0x070 MajorFunction : "
    assert len(lines) == 4
    for i in range(3):
        assert lines[1 + i].startswith(f"    [0{i}] {bt(d.get(f'MajorFunction[{i}]'))}     long ")
    everything = run(session, f"dt nt!_DRIVER_OBJECT {drv:x} -a MajorFunction")
    assert len(everything) == 29 and everything[-1].startswith("    [27] ")


# -- lists, arrays of structures, globals ---------------------------------------------------

def test_list_walk_of_the_active_processes(app, session):
    m = app.machine
    active = [p for p in m.processes if p.pid]  # the idle process is on no list
    first = active[0]
    lines = run(session, f"dt nt!_EPROCESS -l ActiveProcessLinks.Flink -y Ima -yoi Uni "
                         f"{first.eprocess:x}")
    heads = [ln for ln in lines if ln.startswith("ActiveProcessLinks.Flink at ")]
    walked = [int(h.split()[-1].replace("`", ""), 16) for h in heads]
    # Every process in list order, then the list head read as if it were one (as kd does).
    assert walked[:len(active)] == [p.eprocess for p in active]
    head = session.symbols.address_of("nt!PsActiveProcessHead")
    assert walked[len(active):] == [head - 0x448]
    assert lines[1] == "-" * 45
    assert '   ImageFileName : [15]  "System"' in lines
    assert f"   UniqueProcessId : {bt(first.pid)} Void" in lines


def test_list_walk_of_a_process_threads(app, session):
    m = app.machine
    p = next(p for p in m.processes if len(p.threads) > 1 and p.pid)
    lines = run(session, f"dt nt!_ETHREAD {p.threads[0].ethread:x} -l ThreadListEntry.Flink "
                         "Cid.UniqueThread")
    tids = [ln.split(" : ")[1] for ln in lines if "UniqueThread" in ln]
    assert tids[:len(p.threads)] == [pointer_value(t.tid) for t in p.threads]
    assert len(tids) == len(p.threads) + 1  # and the list head, read as a thread


def test_array_of_structures_at_an_address(app, session):
    head = session.symbols.address_of("nt!PsActiveProcessHead")
    lines = run(session, "dt -a2 nt!_LIST_ENTRY nt!PsActiveProcessHead")
    assert lines[0] == f"[0] @ {bt(head)[2:]} "
    assert lines[1] == "-" * 45
    flink = session.reader.u64(head)
    assert lines[3] == f"   +0x000 Flink            : {bt(flink)} _LIST_ENTRY" + \
        lines[3].split("_LIST_ENTRY", 1)[1]
    assert f"[1] @ {bt(head + 0x10)[2:]} " in lines
    compact = run(session, "dt -ca2 nt!_LIST_ENTRY nt!PsActiveProcessHead")
    assert len(compact) == 2 and compact[0].startswith("[0] [ ")


def test_globals(app, session):
    head = session.symbols.address_of("nt!PsActiveProcessHead")
    flink, blink = session.reader.u64(head), session.reader.u64(head + 8)
    lines = run(session, "dt nt!PsActiveProcessHead")
    assert lines[0] == f" [ {bt(flink)} - {bt(blink)} ]"
    assert lines[1].startswith(f"   +0x000 Flink            : {bt(flink)} _LIST_ENTRY")
    assert run(session, "dt nt!_LIST_ENTRY nt!PsActiveProcessHead")[0] == lines[0]
    # A public symbol without type information.
    assert run(session, "dt nt!KiProcessorBlock") == ["Symbol nt!KiProcessorBlock not found."]


# -- type names: wildcards, -v, -y --------------------------------------------------------

def test_type_name_wildcards(session):
    types = session.target.types
    lines = run(session, "dt nt!_KTHR*")
    expected = [n for n in types.names() if n.startswith("_KTHR")]
    assert lines == [f"          nt!{n}" for n in expected]
    dpc = run(session, "dt nt!*Dpc*")
    assert "          nt!_KDPC" in dpc and "          nt!_KDPC_DATA" in dpc
    assert all(re.fullmatch(r" {10}nt!\S+", ln) for ln in dpc)
    verbose = run(session, "dt -v nt!*Dpc*")
    assert verbose[:2] == ["Enumerating symbols matching nt!*Dpc*", "Address   Size Symbol"]
    assert "           040 nt!_KDPC" in verbose
    sized = run(session, "dt -s 10 nt!_K*")
    assert sized and all(types.get(ln.split("!")[1]).size == 0x10 for ln in sized)
    assert run(session, "dt nt!_NOSUCH*") == ["Symbol nt!_NOSUCH* not found."]


def test_verbose_layout(session):
    lines = run(session, "dt -v nt!_KDPC")
    assert lines[0] == "struct _KDPC, 11 elements, 0x40 bytes"
    assert "   +0x008 DpcListEntry     : struct _SINGLE_LIST_ENTRY, 1 elements, 0x8 bytes" \
        in lines
    assert "   +0x018 DeferredRoutine  : Ptr64 to     void " in lines
    assert "   +0x038 DpcData          : Ptr64 to Void" in lines
    eproc = run(session, "dt -v _EPROCESS")
    assert eproc[:2] == ["nt!_EPROCESS", "struct _EPROCESS, 235 elements, 0xa40 bytes"]
    assert "   +0x460 JobNotReallyActive : Bitfield Pos 0, 1 Bit" in eproc
    assert "   +0x4d8 RotateInProgress : Ptr64 to struct _ETHREAD, 120 elements, 0x898 bytes" \
        in eproc
    assert run(session, "dt -v nt!_OBJECT_TYPE_INITIALIZER PoolType")[1:] == [
        "   +0x024 PoolType : Enum _POOL_TYPE,  23 total enums", ""]


def test_prefix_search_lists_then_shows_the_first(session):
    lines = run(session, "dt -y _KTHR")
    assert lines[:3] == ["          nt!_KTHREAD", "          nt!_KTHREAD_COUNTERS",
                         "          nt!_KTHREAD_STATE"]
    assert lines[3] == "   +0x000 Header           : _DISPATCHER_HEADER"


def test_offsets_and_indentation_options(session):
    assert run(session, "dt -o nt!_LIST_ENTRY") == [
        "   Flink            : Ptr64 _LIST_ENTRY", "   Blink            : Ptr64 _LIST_ENTRY"]
    nested = run(session, "dt -i -r1 nt!_KDPC DpcListEntry")
    assert nested == ["   +0x008 DpcListEntry : _SINGLE_LIST_ENTRY",
                      "   +0x000 Next         : Ptr64 _SINGLE_LIST_ENTRY"]


def test_physical_address(app, session):
    m = app.machine
    head = session.symbols.address_of("nt!PsActiveProcessHead")
    pa = m.kspace.translate(head)
    virtual = run(session, "dt nt!_LIST_ENTRY nt!PsActiveProcessHead")
    assert run(session, f"dt -p nt!_LIST_ENTRY {pa:x}") == virtual


# -- kd's errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("line, expected", [
    ("dt nt!_FOO", ["Symbol nt!_FOO not found."]),
    ("dt _FOO 1234", ["Symbol _FOO not found."]),
    ("dt myfault!_EPROCESS", ["Symbol myfault!_EPROCESS not found."]),
    ("dt nt!_EPROCESS @$proc NoSuchField", ["Cannot find specified field members."]),
    ("dt nt!_KDPC @$foo", ["Bad register error at '@$foo'"]),
    ("dt", ["Invalid type name"]),
])
def test_errors(session, line, expected):
    assert run(session, line) == expected


def test_memory_read_errors(session):
    lines = run(session, "dt nt!_KDPC 1000")
    assert "   +0x018 DeferredRoutine  : ???? " in lines
    assert lines[-1] == "Memory read error 0000000000001038"
    assert run(session, "dt nt!_EPROCESS 1000 UniqueProcessId") == [
        "   +0x440 UniqueProcessId : ???? ", "Memory read error 0000000000001440"]
    # The session goes on.
    assert run(session, "dt nt!_LIST_ENTRY nt!PsActiveProcessHead")[0].startswith(" [ ")
