"""!irp, !irpfind, !drvobj, !devobj and !devstack on the crashed default machine (myfault's
IOCTL IRP) and on a machine with a filtered device stack and two pending IRPs; every value
is compared with what the machine's own structures hold."""

from __future__ import annotations

import pytest

from machine.io.irp import IO_STACK_LOCATION_SIZE, allocate_irp, next_stack_location
from machine.types.view import Struct
from tests.conftest import run
from tests.kdsim.io_scenario import build


@pytest.fixture(scope="module")
def stacked():
    return build()


def thread_irps(m, ethread: int) -> list[int]:
    et = Struct(m.kspace, "_ETHREAD", ethread)
    head = et.addr("IrpList")
    off = m.catalog.resolve("_IRP", "ThreadListEntry")[0]
    out, entry = [], m.kspace.read_u64(head)
    while entry != head:
        out.append(entry - off)
        entry = m.kspace.read_u64(entry)
    return out


def crash_irp(app) -> tuple[int, int]:
    m = app.machine
    thread = m.processors[app.target.stop_processor].current.ethread
    (irp,) = thread_irps(m, thread)
    return irp, thread


def client(m):
    return next(p for p in m.processes if p.image == "client.exe")


def client_irps(m) -> list[int]:
    return thread_irps(m, client(m).threads[0].ethread)


def devices(m) -> tuple[int, int]:
    """(upper filter, lower named device) of the stacked machine."""
    return (m.kspace.read_u64(m.sym("stacked!UpperDevice")),
            m.kspace.read_u64(m.sym("stacked!LowerDevice")))


# -- !irp ----------------------------------------------------------------------------------


def test_irp_of_the_crash_shows_its_one_stack_location_as_kd_does(app, session):
    m = app.machine
    irp, thread = crash_irp(app)
    i = Struct(m.kspace, "_IRP", irp)
    sl = Struct(m.kspace, "_IO_STACK_LOCATION", i.get("Tail.Overlay.CurrentStackLocation"))
    out = run(session, f"!irp {irp:x}")
    assert out[0] == (f"Irp is active with {i.get('StackCount')} stacks "
                      f"{i.get('CurrentLocation')} is current "
                      f"(= 0x{i.get('Tail.Overlay.CurrentStackLocation'):016x})")
    assert out[1] == f" No Mdl: No System Buffer: Thread {thread:016x}:  Irp stack trace.  "
    assert out[2] == "     cmd  flg cl Device   File     Completion-Context"
    assert out[3] == ">[IRP_MJ_DEVICE_CONTROL(e), N/A(0)]"
    assert out[4] == (f"            0  0 {sl.get('DeviceObject'):016x} "
                      f"{sl.get('FileObject'):016x} 00000000-00000000    ")
    assert out[5] == "\t       \\Driver\\myfault"
    arg4 = sl.get("Parameters.Others.Argument4")
    assert out[6] == f"\t\t\tArgs: 00000000 00000000 0x222003 {arg4:08x}"
    assert len(out) == 7


def test_irp_with_the_backtick_form_and_detail_flag_lists_the_irp_fields(app, session):
    m = app.machine
    irp, thread = crash_irp(app)
    i = Struct(m.kspace, "_IRP", irp)
    text = f"{irp >> 32:08x}`{irp & 0xFFFFFFFF:08x}"
    out = run(session, f"!irp {text} 1")
    assert out[2] == f"Flags = {i.get('Flags'):08x}"
    assert out[3] == f"ThreadListEntry.Flink = {i.get('ThreadListEntry.Flink'):016x}"
    assert f"RequestorMode = {i.get('RequestorMode'):08x}" in out
    assert f"UserIosb = {i.get('UserIosb'):08x}" in out
    assert f"UserBuffer = {i.get('UserBuffer'):08x}" in out
    assert "CancelRoutine = 00000000   " in out
    assert f"Tail.Overlay.Thread = {thread:016x}" in out
    assert (f"Tail.Overlay.OriginalFileObject = "
            f"{i.get('Tail.Overlay.OriginalFileObject'):016x}") in out
    assert (f"&Tail.Overlay.DeviceQueueEntry = "
            f"{i.addr('Tail.Overlay.DeviceQueueEntry'):016x}") in out
    assert out.index("Tail.CompletionKey = 00000000") == out.index(
        "     cmd  flg cl Device   File     Completion-Context") - 1


def test_irp_of_a_filtered_pending_read_shows_both_locations(stacked):
    m, s = stacked
    upper, lower = devices(m)
    read_irp = client_irps(m)[0]
    i = Struct(m.kspace, "_IRP", read_irp)
    file_obj = i.get("Tail.Overlay.OriginalFileObject")
    complete = m.sym("stacked!OnComplete")
    out = run(s, f"!irp {read_irp:x}")
    assert out[0].startswith("Irp is active with 2 stacks 1 is current (= 0x"
                             f"{read_irp + m.catalog.get('_IRP').size:016x})")
    assert out[3] == ">[IRP_MJ_READ(3), N/A(0)]"
    assert out[4] == (f"            0 e1 {lower:016x} {file_obj:016x} {complete:016x}-00001234"
                      " Success Error Cancel pending")
    assert out[5] == "\t       \\Driver\\stacked\tstacked!OnComplete"
    assert out[6] == "\t\t\tArgs: 00000010 00000000 00000000 00000000"
    assert out[7] == " [IRP_MJ_READ(3), N/A(0)]"
    assert out[8] == f"            0  0 {upper:016x} {file_obj:016x} 00000000-00000000    "
    assert out[9] == "\t       \\Driver\\stacked"
    ioctl = run(s, f"!irp {client_irps(m)[1]:x}")
    assert ioctl[3] == ">[IRP_MJ_DEVICE_CONTROL(e), N/A(0)]"
    assert ioctl[6] == "\t\t\tArgs: 00000000 00000000 0x222004 00000000"


def test_irp_detail_of_the_pending_read_shows_its_user_event(stacked):
    m, s = stacked
    read_irp = client_irps(m)[0]
    i = Struct(m.kspace, "_IRP", read_irp)
    assert i.get("UserEvent")
    out = run(s, f"!irp {read_irp:x} 1")
    assert f"UserEvent = {i.get('UserEvent'):016x}" in out
    assert f"IoStatus.Status = {i.get('IoStatus.Status'):08x}" in out
    assert f"ThreadListEntry.Blink = {i.get('ThreadListEntry.Blink'):016x}" in out


def test_irp_locations_no_driver_has_reached_print_as_not_applicable():
    """An IRP with three locations sent to the top of a stack: the two lower locations
    are still empty, and kd shows them as N/A with an empty driver line."""
    m, s = build()
    _, lower = devices(m)
    irp = allocate_irp(m, 3)
    sl = next_stack_location(m, irp)
    sl.set("MajorFunction", 3)
    i = Struct(m.kspace, "_IRP", irp)  # what IofCallDriver does on the way down
    i.set("CurrentLocation", 3)
    i.set("Tail.Overlay.CurrentStackLocation", sl.address)
    sl.set("DeviceObject", lower)
    out = run(s, f"!irp {irp:x}")
    assert out[0] == f"Irp is active with 3 stacks 3 is current (= 0x{sl.address:016x})"
    assert out[1] == " No Mdl: No System Buffer: Thread 00000000:  Irp stack trace.  "
    empty = [" [N/A(0), N/A(0)]",
             "            0  0 00000000 00000000 00000000-00000000    ", "",
             "\t\t\tArgs: 00000000 00000000 00000000 00000000"]
    assert out[3:11] == empty + empty
    assert out[11] == ">[IRP_MJ_READ(3), N/A(0)]"
    assert out[13] == "\t       \\Driver\\stacked"
    i.set("CurrentLocation", 4)  # completed: no location is current any more
    out = run(s, f"!irp {irp:x}")
    assert out[1].endswith("Irp is completed.  ")
    assert not any(line.startswith(">") for line in out)
    i.set("PendingReturned", 1)
    assert run(s, f"!irp {irp:x}")[1].endswith("Irp is completed.  Pending has been returned")


def test_irp_on_objects_that_are_no_irps(stacked):
    m, s = stacked
    upper, _ = devices(m)
    assert run(s, f"!irp {upper:x}") == ["IRP signature does not match, probably not an IRP"]
    assert run(s, "!irp 10") == ["00000010: Could not read Irp"]
    assert run(s, "!irp nosuchsymbol") == ["Couldn't resolve error at 'nosuchsymbol'"]


# -- !irpfind ------------------------------------------------------------------------------

HEADER = ("  Irp            [ Thread ]         irpStack: (Mj,Mn)   DevObj          "
          "[Driver]         MDL Process")


def test_irpfind_finds_the_crash_irp_in_nonpaged_pool(app, session):
    m = app.machine
    irp, thread = crash_irp(app)
    device = Struct(m.kspace, "_IO_STACK_LOCATION", Struct(m.kspace, "_IRP", irp).get(
        "Tail.Overlay.CurrentStackLocation")).get("DeviceObject")
    out = run(session, "!irpfind")
    table = m.kspace.read_u64(m.sym("nt!PoolBigPageTable"))
    entries = m.kspace.read_u64(m.sym("nt!PoolBigPageTableSize"))
    assert out[0] == (f"Scanning large pool allocation table for Tag 'Irp?' ({table:016x} : "
                      f"{table + entries * 0x18:016x})")
    start = m.kspace.read_u64(m.sym("nt!MmNonPagedPoolStart"))
    end = m.kspace.read_u64(m.sym("nt!MmNonPagedPoolEnd"))
    assert f"Searching NonPaged pool ({start:016x} : {end:016x}) for Tag 'Irp?'" in out
    assert HEADER in out
    rows = out[out.index(HEADER) + 1:]
    assert f"{irp:016x} [{thread:016x}] irpStack: ( e, 0)  {device:016x} [ \\Driver\\myfault]" \
        in rows


def test_irpfind_lists_exactly_the_irps_in_use(stacked):
    m, s = stacked
    _, lower = devices(m)
    out = run(s, "!irpfind")
    rows = out[out.index(HEADER) + 1:]
    found = {int(line[:16], 16) for line in rows}
    # every in-use 'Irp ' block: the two pending ones (the create and close IRPs of the
    # opens were freed)
    assert found == set(client_irps(m))
    thread = client(m).threads[0].ethread
    for line in rows:
        assert line[16:36] == f" [{thread:016x}] "
        assert line.endswith(f"  {lower:016x} [ \\Driver\\stacked]")


def test_irpfind_criteria_select_irps(stacked):
    m, s = stacked
    upper, lower = devices(m)
    read_irp, ioctl_irp = client_irps(m)
    out = run(s, "!irpfind 0 0 arg 222004")
    assert out[0] == "Looking for IRPs with arg == 00222004"
    assert [int(x[:16], 16) for x in out[out.index(HEADER) + 1:]] == [ioctl_irp]
    out = run(s, f"!irpfind 0 0 device {upper:x}")
    assert sorted(int(x[:16], 16) for x in out[out.index(HEADER) + 1:]) == sorted(
        [read_irp, ioctl_irp])
    user_event = Struct(m.kspace, "_IRP", read_irp).get("UserEvent")
    out = run(s, f"!irpfind 0 0 userevent {user_event:x}")
    assert [int(x[:16], 16) for x in out[out.index(HEADER) + 1:]] == [read_irp]
    out = run(s, "!irpfind 0 0 thread 1234")
    assert HEADER not in out


def test_irpfind_flag_4_dumps_each_irp(stacked):
    m, s = stacked
    read_irp, ioctl_irp = client_irps(m)
    out = run(s, "!irpfind 4")
    assert f"{read_irp:016x}: Irp is active with 2 stacks 1 is current (= 0x" \
        f"{read_irp + m.catalog.get('_IRP').size:016x})" in out
    assert any(line.startswith(f"{ioctl_irp:016x}: Irp is active") for line in out)


def test_irpfind_in_paged_pool_finds_none(stacked):
    m, s = stacked
    out = run(s, "!irpfind 1")
    assert out[-2].startswith("Searching Paged pool (")
    assert HEADER not in out


# -- !drvobj -------------------------------------------------------------------------------


def device_chain(m, driver: int) -> list[int]:
    out, d = [], Struct(m.kspace, "_DRIVER_OBJECT", driver).get("DeviceObject")
    while d:
        out.append(d)
        d = Struct(m.kspace, "_DEVICE_OBJECT", d).get("NextDevice")
    return out


def test_drvobj_by_name_lists_the_devices(stacked):
    m, s = stacked
    driver = m.modules[-1].driver_object
    chain = device_chain(m, driver)
    assert len(chain) == 2
    for text in ("stacked", "\\Driver\\stacked", "\\driver\\STACKED", f"{driver:x}"):
        out = run(s, f"!drvobj {text}")
        assert out == [f"Driver object ({driver:016x}) is for:", " \\Driver\\stacked", "",
                       "Driver Extension List: (id , addr)", "", "Device Object list:",
                       "".join(f"{d:016x}  " for d in chain)]


def test_drvobj_2_lists_entry_points_and_dispatch_routines(app, session):
    m = app.machine
    driver = next(i for i in m.modules if i.name == "myfault").driver_object
    d = Struct(m.kspace, "_DRIVER_OBJECT", driver)
    out = run(session, "!drvobj myfault 2")
    assert out[:3] == [f"Driver object ({driver:016x}) is for:", " \\Driver\\myfault", ""]
    assert out[3] == f"DriverEntry:   {d.get('DriverInit'):016x}\tmyfault!DriverEntry"
    assert out[4] == "DriverStartIo: 00000000\t"
    assert out[5] == f"DriverUnload:  {d.get('DriverUnload'):016x}\tmyfault!MyfaultUnload"
    assert out[6] == "AddDevice:     00000000\t"
    assert out[7:9] == ["", "Dispatch routines:"]
    rows = out[9:]
    assert len(rows) == 28
    invalid = m.sym("nt!IopInvalidDeviceRequest")
    for major, row in enumerate(rows):
        routine = d.get(f"MajorFunction[{major}]")
        assert row[:5] == f"[{major:02x}] "
        assert row[40:] == f"{routine:016x}\t" + (
            "nt!IopInvalidDeviceRequest" if routine == invalid else
            app.session.symbols.name_for(routine))
    assert rows[14] == ("[0e] IRP_MJ_DEVICE_CONTROL              "
                        f"{d.get('MajorFunction[14]'):016x}\tmyfault!MyfaultDeviceControl")
    assert rows[27].startswith("[1b] IRP_MJ_PNP                         ")


def test_drvobj_7_ends_with_each_devices_stack(stacked):
    m, s = stacked
    upper, lower = devices(m)
    out = run(s, "!drvobj stacked 7")
    at = out.index("Device Object stacks:")
    assert out[at - 2:at] == ["", ""]
    tail = out[at + 1:]
    assert tail[1] == f"!devstack {upper:016x} :"
    assert tail[3].startswith(f"> {upper:016x}  ")
    assert tail[4].startswith(f"  {lower:016x}  ")
    assert tail[5:7] == ["", f"!devstack {lower:016x} :"]
    assert tail[-1] == "Processed 2 device objects."
    assert "Dispatch routines:" in out and "Device Object list:" in out


def test_drvobj_errors(stacked):
    m, s = stacked
    upper, _ = devices(m)
    assert run(s, f"!drvobj {upper:x}") == [f"{upper:016x}: is not a driver object"]
    assert run(s, "!drvobj \\Driver\\Nothing") == ["Driver object \\Driver\\Nothing not found"]
    assert run(s, "!drvobj nothing") == ["Couldn't resolve error at 'nothing'"]


# -- !devobj -------------------------------------------------------------------------------


def test_devobj_of_the_named_device_shows_the_filter_above(stacked):
    m, s = stacked
    upper, lower = devices(m)
    dev = Struct(m.kspace, "_DEVICE_OBJECT", lower)
    driver = dev.get("DriverObject")
    for text in (f"{lower:x}", "\\Device\\Stacked", "Stacked"):
        out = run(s, f"!devobj {text}")
        assert out == [
            f"Device object ({lower:016x}) is for:",
            f" Stacked \\Driver\\stacked DriverObject {driver:016x}",
            f"Current Irp 00000000 RefCount {dev.get('ReferenceCount')} Type 00000022 "
            f"Flags {dev.get('Flags'):08x}",
            f"DevExt 00000000 DevObjExt {dev.get('DeviceObjectExtension'):016x} ",
            "ExtensionFlags (0000000000)  ",
            "Characteristics (0000000000)  ",
            f"AttachedDevice (Upper) {upper:016x} \\Driver\\stacked",
            "Device queue is not busy."]


def test_devobj_of_the_unnamed_filter_shows_the_device_below(stacked):
    m, s = stacked
    upper, lower = devices(m)
    dev = Struct(m.kspace, "_DEVICE_OBJECT", upper)
    out = run(s, f"!devobj {upper:x}")
    assert out[1] == f"  \\Driver\\stacked DriverObject {dev.get('DriverObject'):016x}"
    assert out[3] == (f"DevExt {dev.get('DeviceExtension'):016x} DevObjExt "
                      f"{dev.get('DeviceObjectExtension'):016x} ")
    assert out[6] == f"AttachedTo (Lower) {lower:016x} \\Driver\\stacked"


def test_devobj_of_myfault_and_bad_input(app, session):
    m = app.machine
    device = m.kspace.read_u64(m.sym("myfault!DeviceObject"))
    out = run(session, "!devobj \\Device\\MyFault")
    assert out[0] == f"Device object ({device:016x}) is for:"
    assert out[1].startswith(" MyFault \\Driver\\myfault DriverObject ")
    driver = Struct(m.kspace, "_DEVICE_OBJECT", device).get("DriverObject")
    assert run(session, f"!devobj {driver:x}") == [f"{driver:016x}: is not a device object"]
    assert run(session, "!devobj 10") == ["00000010: Could not read device object"]


# -- !devstack -----------------------------------------------------------------------------


def test_devstack_lists_the_stack_top_first_from_either_device(stacked):
    m, s = stacked
    upper, lower = devices(m)
    ext = Struct(m.kspace, "_DEVICE_OBJECT", upper).get("DeviceExtension")
    header = "  !DevObj           !DrvObj            !DevExt           ObjectName"
    top = f"{upper:016x}  \\Driver\\stacked    {ext:016x}  "
    bottom = f"{lower:016x}  \\Driver\\stacked    00000000  Stacked"
    assert run(s, f"!devstack {lower:x}") == [header, "  " + top, "> " + bottom]
    assert run(s, f"!devstack {upper:x}") == [header, "> " + top, "  " + bottom]
    assert run(s, "!devstack \\Device\\Stacked") == [header, "  " + top, "> " + bottom]


def test_devstack_of_myfault(app, session):
    m = app.machine
    device = m.kspace.read_u64(m.sym("myfault!DeviceObject"))
    assert run(session, "!devstack MyFault")[1] == \
        f"> {device:016x}  \\Driver\\myfault    00000000  MyFault"


def test_irp_stack_location_size_matches_the_layout(app):
    assert app.machine.catalog.get("_IO_STACK_LOCATION").size == IO_STACK_LOCATION_SIZE
