"""The object namespace and object types, walked through memory as a debugger would."""

from __future__ import annotations

from machine.ob.object import OBJECT_HEADER_BODY
from machine.types.view import Struct


def unicode(m, us: int) -> str:
    s = Struct(m.kspace, "_UNICODE_STRING", us)
    return m.kspace.read(s.get("Buffer"), s.get("Length")).decode("utf-16-le")


def object_name(m, body: int) -> str | None:
    header = Struct(m.kspace, "_OBJECT_HEADER", body - OBJECT_HEADER_BODY)
    if not header.get("InfoMask") & 2:
        return None
    info = Struct(m.kspace, "_OBJECT_HEADER_NAME_INFO", header.address - 0x20)
    return unicode(m, info.addr("Name"))


def type_name(m, body: int) -> str:
    header = body - OBJECT_HEADER_BODY
    cookie = m.kspace.read_int(m.sym("nt!ObHeaderCookie"), 1)
    stored = Struct(m.kspace, "_OBJECT_HEADER", header).get("TypeIndex")
    index = stored ^ cookie ^ ((header >> 8) & 0xFF)
    kind = m.kspace.read_u64(m.sym("nt!ObTypeIndexTable") + 8 * index)
    return unicode(m, Struct(m.kspace, "_OBJECT_TYPE", kind).addr("Name"))


def directory_entries(m, directory: int) -> dict[str, int]:
    d = Struct(m.kspace, "_OBJECT_DIRECTORY", directory)
    out = {}
    for bucket in range(37):
        entry = d.get(f"HashBuckets[{bucket}]")
        while entry:
            e = Struct(m.kspace, "_OBJECT_DIRECTORY_ENTRY", entry)
            obj = e.get("Object")
            out[object_name(m, obj)] = obj
            entry = e.get("ChainLink")
    return out


def test_the_namespace_holds_the_driver_and_its_device_with_their_types(app):
    m = app.machine
    root = m.kspace.read_u64(m.sym("nt!ObpRootDirectoryObject"))
    assert type_name(m, root) == "Directory" and object_name(m, root) == "\\"
    top = directory_entries(m, root)
    assert {"Device", "Driver", "GLOBAL??", "ObjectTypes", "BaseNamedObjects"} <= set(top)
    driver = directory_entries(m, top["Driver"])["myfault"]
    assert type_name(m, driver) == "Driver"
    device = directory_entries(m, top["Device"])["MyFault"]
    assert type_name(m, device) == "Device"
    assert Struct(m.kspace, "_DEVICE_OBJECT", device).get("DriverObject") == driver
    types = directory_entries(m, top["ObjectTypes"])
    assert {"Process", "Thread", "Driver", "Device", "File", "Event"} <= set(types)
    for name, kind in types.items():
        assert type_name(m, kind) == "Type"
        assert unicode(m, Struct(m.kspace, "_OBJECT_TYPE", kind).addr("Name")) == name


def test_every_process_and_thread_object_decodes_to_its_type(app):
    m = app.machine
    for proc in m.processes:
        assert type_name(m, proc.eprocess) == "Process"
        for t in proc.threads:
            assert type_name(m, t.ethread) == "Thread"
    kind = m.object_types["Process"]
    assert Struct(m.kspace, "_OBJECT_TYPE", kind).get("TotalNumberOfObjects") == len(m.processes)
