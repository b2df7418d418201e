"""Symbolic links are objects in the namespace: a driver's IoCreateSymbolicLink puts an
_OBJECT_SYMBOLIC_LINK named in \\GLOBAL?? whose LinkTarget a lookup follows; a second
create collides; IoDeleteSymbolicLink takes it out of the directory."""

from __future__ import annotations

from machine.ob.object import object_name, type_of
from machine.ob.symlink import LinkError, create_symbolic_link, lookup_object
from machine.scenario import boot_scenario, parse_scenario
from machine.types.view import Struct
from tests.machine.probe import device_driver, scenario_header

AGAIN = """
    lea     rdx, [DeviceName]
    lea     rcx, [LinkName]
    call    nt!IoCreateSymbolicLink
    mov     qword ptr [SecondStatus], rax
"""

DELETE = """
    sub     rsp, 28h
    lea     rcx, [LinkName]
    call    nt!IoDeleteSymbolicLink
    mov     qword ptr [DeleteStatus], rax
    add     rsp, 28h
    ret
"""


def boot():
    text = scenario_header("links") + device_driver(
        "links", "Links", {}, {"Delete": DELETE}, {"SecondStatus": 8, "DeleteStatus": 8},
        entry_tail=AGAIN)
    return boot_scenario(parse_scenario(text, "links.toml"))


def read_target(m, link: int) -> str:
    us = Struct(m.kspace, "_UNICODE_STRING",
                Struct(m.kspace, "_OBJECT_SYMBOLIC_LINK", link).addr("LinkTarget"))
    return m.kspace.read(us.get("Buffer"), us.get("Length")).decode("utf-16-le")


def test_the_link_is_an_object_in_global_dos_devices():
    m = boot()
    link = lookup_object(m, "\\GLOBAL??\\Links", follow_last=False)
    assert link is not None and type_of(m, link) == "SymbolicLink"
    assert object_name(m, link) == "Links"
    assert read_target(m, link) == "\\Device\\Links"
    assert Struct(m.kspace, "_OBJECT_SYMBOLIC_LINK", link).get("CreationTime") > 0
    header = Struct(m.kspace, "_OBJECT_HEADER", link - 0x30)
    info = Struct(m.kspace, "_OBJECT_HEADER_NAME_INFO", header.address - 0x20)
    assert info.get("Directory") == lookup_object(m, "\\GLOBAL??")
    device = lookup_object(m, "\\Device\\Links")
    assert type_of(m, device) == "Device"
    # \??, \DosDevices and the link's own name all reach the device through it.
    for path in ("\\??\\Links", "\\DosDevices\\Links", "\\GLOBAL??\\links"):
        assert lookup_object(m, path) == device
    assert m.kspace.read_u64(m.sym("links!SecondStatus")) == 0xC0000035  # collision


def test_links_to_links_and_loops():
    m = boot()
    create_symbolic_link(m, "\\GLOBAL??\\Alias", "\\??\\Links")
    assert lookup_object(m, "\\??\\Alias") == lookup_object(m, "\\Device\\Links")
    create_symbolic_link(m, "\\GLOBAL??\\LoopA", "\\??\\LoopB")
    create_symbolic_link(m, "\\GLOBAL??\\LoopB", "\\??\\LoopA")
    assert lookup_object(m, "\\??\\LoopA") is None
    try:
        create_symbolic_link(m, "\\NoSuchDirectory\\X", "\\Device\\Links")
    except LinkError as err:
        assert err.status == 0xC000003A
    else:
        raise AssertionError("a link in a missing directory was created")


def test_delete_takes_the_link_out_of_the_namespace():
    from tests.machine.probe import start_system_thread

    m = boot()
    link = lookup_object(m, "\\??\\Links", follow_last=False)
    start_system_thread(m, 0x9000, m.sym("links!Delete"))
    m.run(20_000)
    assert m.kspace.read_u64(m.sym("links!DeleteStatus")) == 0
    assert lookup_object(m, "\\??\\Links") is None
    assert lookup_object(m, "\\Device\\Links") is not None  # the device stays
    # The object and its target string went back to the pool.
    header = Struct(m.kspace, "_POOL_HEADER", link - 0x30 - 0x20 - 0x10)
    assert header.get("PoolType") == 0
