"""!object and !handle on the default machine and on the stacked-device machine, compared
with the object manager's own structures (headers, directories, handle tables)."""

from __future__ import annotations

import pytest

from machine.ob.object import (
    DIRECTORY_BUCKETS,
    OBJECT_TYPES,
    handles_in,
    lookup_handle,
    name_hash,
    object_name,
    type_of,
)
from machine.ob.symlink import lookup_object
from machine.types.view import Struct
from tests.conftest import run
from tests.kdsim.io_scenario import build


@pytest.fixture(scope="module")
def stacked():
    return build()


def header(m, body: int) -> Struct:
    return Struct(m.kspace, "_OBJECT_HEADER", body - 0x30)


def type_object(m, body: int) -> int:
    return m.object_types[type_of(m, body)]


def object_lines(m, body: int, name_line: str | None, indent: int = 4) -> list[str]:
    h = header(m, body)
    pad = " " * indent
    lines = [f"Object: {body:016x}  Type: ({type_object(m, body):016x}) {type_of(m, body)}",
             f"    ObjectHeader: {body - 0x30:016x} (new version)",
             f"{pad}HandleCount: {h.get('HandleCount')}  PointerCount: {h.get('PointerCount')}"]
    if name_line is not None:
        lines.append(pad + name_line)
    return lines


def directory_rows(m, directory: int) -> list[tuple[int, int, str, str]]:
    """(bucket, object, type, name) in bucket and chain order, from the machine."""
    rows = []
    d = Struct(m.kspace, "_OBJECT_DIRECTORY", directory)
    for bucket in range(DIRECTORY_BUCKETS):
        entry = d.get(f"HashBuckets[{bucket}]")
        while entry:
            e = Struct(m.kspace, "_OBJECT_DIRECTORY_ENTRY", entry)
            body = e.get("Object")
            rows.append((bucket, body, type_of(m, body), object_name(m, body)))
            entry = e.get("ChainLink")
    return rows


# -- !object -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["\\", "\\Device", "\\Driver", "\\ObjectTypes", "\\GLOBAL??"])
def test_object_directory_lists_every_entry(app, session, path):
    m = app.machine
    body = m.directories[path]
    parent = Struct(m.kspace, "_OBJECT_HEADER_NAME_INFO", body - 0x50).get("Directory")
    name = path.rsplit("\\", 1)[-1] or "\\"
    out = run(session, f"!object {path}")
    assert out[:4] == object_lines(
        m, body, f"Directory Object: {parent:016x}  Name: {name}" if parent else
        "Directory Object: 00000000  Name: \\")
    assert out[4:7] == ["", "    Hash Address          Type          Name",
                        "    ---- -------          ----          ----"]
    rows = directory_rows(m, body)
    assert len(out) == 7 + len(rows)
    last = None
    for line, (bucket, child, kind, child_name) in zip(out[7:], rows, strict=True):
        hash_text = f"{bucket:02d}" if bucket != last else "  "
        last = bucket
        assert line == f"     {hash_text}  {child:016x} {kind:<13} {child_name}"
        assert bucket == name_hash(child_name) % DIRECTORY_BUCKETS


def test_object_types_directory_names_every_type(app, session):
    out = run(session, "!object \\ObjectTypes")
    names = {line.split()[-1] for line in out[7:]}
    assert names == set(OBJECT_TYPES)


def test_object_symbolic_link_shows_its_target_and_address_form_agrees(stacked):
    m, s = stacked
    link = lookup_object(m, "\\GLOBAL??\\Stacked", follow_last=False)
    directory = m.directories["\\GLOBAL??"]
    expected = object_lines(m, link, f"Directory Object: {directory:016x}  Name: Stacked") + [
        "    Flags: 00000000 ( Local )", "    Target String is '\\Device\\Stacked'"]
    assert run(s, "!object \\GLOBAL??\\Stacked") == expected
    assert run(s, "!object \\??\\Stacked") == expected
    assert run(s, f"!object {link:x}") == expected
    assert run(s, f"!object {link:x} 1") == expected[:4]
    assert run(s, f"!object {link:x} 0") == expected[:2]


def test_object_named_device_and_driver(stacked):
    m, s = stacked
    device = lookup_object(m, "\\Device\\Stacked")
    folder = m.directories["\\Device"]
    assert run(s, "!object \\Device\\Stacked") == object_lines(
        m, device, f"Directory Object: {folder:016x}  Name: Stacked")
    driver = lookup_object(m, "\\Driver\\stacked")
    drivers = m.directories["\\Driver"]
    out = run(s, f"!object {driver:x} 0x11")
    assert out[:4] == object_lines(
        m, driver, f"Directory Object: {drivers:016x}  Name: stacked")
    assert out[4:] == ["Optional Headers: ", f"    NameInfo({driver - 0x50:016x})"]


def test_object_unnamed_objects_have_no_name_line(stacked):
    m, s = stacked
    upper = m.kspace.read_u64(m.sym("stacked!UpperDevice"))
    assert run(s, f"!object {upper:x}") == object_lines(m, upper, None)
    proc = client_process(m).eprocess
    assert run(s, f"!object {proc:x}") == object_lines(m, proc, None)


def test_object_bad_input(stacked):
    m, s = stacked
    assert run(s, "!object \\Device\\Nothing") == ["Object \\Device\\Nothing not found"]
    assert run(s, "!object 10") == ["0000000000000010: Not a valid object (ObjectType invalid)"]
    irp_field = m.kspace.read_u64(m.sym("stacked!PendingIrp"))
    assert run(s, f"!object {irp_field:x}") == [
        f"{irp_field:016x}: Not a valid object (ObjectType invalid)"]
    assert run(s, "!object nosuch") == ["Couldn't resolve error at 'nosuch'"]


# -- !handle -------------------------------------------------------------------------------


def client_process(m):
    return next(p for p in m.processes if p.image == "client.exe")


def handle_block(m, table: int, handle: int, indent_name: str | None) -> list[str]:
    body = lookup_handle(m, table, handle)
    entry = Struct(m.kspace, "_HANDLE_TABLE", table).get("TableCode") + (handle // 4) * 0x10
    access = Struct(m.kspace, "_HANDLE_TABLE_ENTRY", entry).get("GrantedAccessBits")
    return [f"{handle:04x}: Object: {body:016x}  GrantedAccess: {access:08x} "
            f"Entry: {entry:016x}"] + object_lines(m, body, indent_name, indent=8) + [""]


def test_handle_lists_the_client_file_and_events(stacked):
    m, s = stacked
    proc = client_process(m)
    ep = Struct(m.kspace, "_EPROCESS", proc.eprocess)
    table = ep.get("ObjectTable")
    handles = handles_in(m, table)
    kinds = [type_of(m, lookup_handle(m, table, h)) for h in handles]
    assert kinds == ["File", "Event", "Event"]
    out = run(s, f"!handle 0 3 {proc.eprocess:x}")
    assert out[0] == "" and out[1] == f"PROCESS {proc.eprocess:016x}"
    assert out[4] == "    Image: client.exe"
    assert out[5:8] == ["", f"Handle table at {table:016x} with 3 entries in use", ""]
    expected = []
    for h, kind in zip(handles, kinds, strict=True):
        name = "Directory Object: 00000000  Name:  {Stacked}" if kind == "File" else None
        expected += handle_block(m, table, h, name)
    assert out[8:] == expected


def test_handle_by_pid_with_type_filter_and_single_handle(stacked):
    m, s = stacked
    proc = client_process(m)
    table = Struct(m.kspace, "_EPROCESS", proc.eprocess).get("ObjectTable")
    out = run(s, f"!handle 0 3 {proc.pid:x} Event")
    assert out[:2] == ["", "Searching for handles of type Event"]
    assert [line[:4] for line in out if ": Object: " in line] == ["0008", "000c"]
    out = run(s, f"!handle 8 1 {proc.eprocess:x}")
    assert out[-2:] == handle_block(m, table, 8, None)[:1] + [""]
    entry = Struct(m.kspace, "_HANDLE_TABLE", table).get("TableCode") + 0x40
    assert run(s, f"!handle 10 3 {proc.eprocess:x}")[-1] == (
        f"0010: free handle, Entry address {entry:016x}, Next Entry 0000000000000000")


def test_handle_default_is_the_current_process(app, session):
    m = app.machine
    proc = m.processors[app.target.stop_processor].current.process
    table = Struct(m.kspace, "_EPROCESS", proc.eprocess).get("ObjectTable")
    out = run(session, "!handle")
    assert out[1] == f"PROCESS {proc.eprocess:016x}"
    (handle,) = handles_in(m, table)
    assert out[8:] == handle_block(m, table, handle,
                                   "Directory Object: 00000000  Name:  {MyFault}")


def test_handle_of_every_process(stacked):
    m, s = stacked
    out = run(s, "!handle 0 1 0")
    assert sum(line.startswith("PROCESS ") for line in out) == len(
        [p for p in m.processes if Struct(m.kspace, "_EPROCESS", p.eprocess).get(
            "ActiveProcessLinks.Flink")])
    system = next(p for p in m.processes if p.pid == 4)
    table = Struct(m.kspace, "_EPROCESS", system.eprocess).get("ObjectTable")
    assert f"Kernel handle table at {table:016x} with {len(handles_in(m, table))} entries " \
        "in use" in out
    assert run(s, "!handle 0 1 1234") == ["Cannot find process 1234"]
