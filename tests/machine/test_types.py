from __future__ import annotations

from machine.mm.paging import AddressSpace
from machine.mm.physical import PhysicalMemory
from machine.types.catalog import load_catalog
from machine.types.view import Struct


def test_catalog_has_every_type_and_enum_of_the_build():
    cat = load_catalog()
    assert cat.build == "10.0.19045.2965"
    # 219 from the reference facts, 16 from layouts-supplement.json (2 + 11 of Driver
    # Verifier's + _UNLOADED_DRIVERS + the power manager's _TRIAGE_9F_POWER, _POP_IRP_DATA)
    assert len([n for n in cat.names() if cat.get(n).kind != "enum"]) == 219 + 16
    assert len([n for n in cat.names() if cat.get(n).kind == "enum"]) == 43
    assert cat.get("nt!_eprocess").size == 0xA40
    assert cat.resolve("_EPROCESS", "Pcb.DirectoryTableBase")[0] == 0x28
    assert cat.resolve("_IRP", "Tail.Overlay.CurrentStackLocation")[0] == 0xB8
    assert cat.resolve("_DRIVER_OBJECT", "MajorFunction[14]")[0] == 0x70 + 14 * 8
    off, f = cat.resolve("_IO_STACK_LOCATION", "Parameters.DeviceIoControl.IoControlCode")
    assert off == 0x18 and f.size == 4


def test_views_read_and_write_fields_bitfields_and_array_elements():
    phys = PhysicalMemory()
    space = AddressSpace(phys)
    base = 0xFFFFC98300002000
    space.map_new(base, 0x2000)
    t = Struct(space, "_KTHREAD", base)
    t.set("Alertable", 1)  # bit 4 of MiscFlags
    t.set("SystemThread", 1)  # bit 10
    assert t.get("MiscFlags") == (1 << 4) | (1 << 10)
    t.set("Alertable", 0)
    assert t.get("MiscFlags") == 1 << 10
    t.set("Priority", -3)
    assert t.get("Priority") == -3 and space.read(base + 0xC3, 1) == b"\xfd"
    d = Struct(space, "_DRIVER_OBJECT", base + 0x1000)
    d.set("MajorFunction[14]", 0xFFFFF80512345678)
    assert space.read_u64(base + 0x1000 + 0x70 + 14 * 8) == 0xFFFFF80512345678
    assert d.get("MajorFunction[14]") == 0xFFFFF80512345678
