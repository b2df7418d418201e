"""!pte, !vtop and the physical dumps on the default machine: every entry compared with
the machine's own page tables, for code, stack, pool, user and paged-out addresses."""

from __future__ import annotations

import re

import pytest

from commands.fmt import addr
from tests.conftest import run


def _space(app):
    return app.machine.processors[app.target.stop_processor].cpu.mem


def _addresses(session):
    r = session.reader
    rsp = session.registers()["rsp"]
    device = r.u64(session.symbols.address_of("myfault!DeviceObject"))
    paged = r.u64(session.symbols.address_of("myfault!PagedBuffer"))
    hal = session.symbols.module_named("hal").base
    peb = r.field("_EPROCESS", session.current_process(), "Peb")  # user, U in the flags
    return {"nt": session.symbols.address_of("nt!KeBugCheckEx") + 0x10, "hal": hal,
            "stack": rsp, "pool": device, "paged": paged, "peb": peb}


def test_pte_shows_the_machines_entries(app, session):
    space = _space(app)
    for name, va in _addresses(session).items():
        assert va
        lines = run(session, f"!pte {va:x}")
        assert lines[0] == " " * 43 + f"VA {va:016x}", name
        pte = space.get_pte(va)
        assert lines[2].endswith(f"contains {pte:016X}"), name
        assert re.fullmatch("PXE at [0-9A-F]{16}    PPE at [0-9A-F]{16}    "
                            "PDE at [0-9A-F]{16}    PTE at [0-9A-F]{16}", lines[1]), name
        # the PTE column's address is where the machine keeps that entry
        pte_at = int(lines[1].rsplit(" ", 1)[1], 16)
        assert int.from_bytes(app.machine.phys.read(pte_at, 8), "little") == pte
        if pte & 1:
            flags = lines[3][81:]
            assert lines[3][81:85] == "pfn " and f"{(pte >> 12) & 0xFFFFFFFFFF:x}" in flags
            assert flags.endswith(("E" if not pte >> 63 else "-") + "V")
            assert ("W" if pte & 2 else "R") + ("E" if not pte >> 63 else "-") + "V" in flags
            assert ("U" if pte & 4 else "K") in flags[-4:]
            assert len(lines) == 4
        for col in range(3):
            assert lines[2][col * 27:col * 27 + 9] == "contains "


def test_pte_of_the_trimmed_paged_pool_page_is_a_page_file_pte(app, session):
    paged = _addresses(session)["paged"]
    pte = _space(app).get_pte(paged)
    assert pte and not pte & 1
    lines = run(session, f"!pte {paged:x}")
    assert lines[3].endswith("---DA--KWEV  not valid")
    assert lines[3].index("not valid") == 81
    assert lines[4:] == [" " * 81 + "PageFile:  0", " " * 81 + f"Offset: {pte >> 32:x}",
                         " " * 81 + "Protect: 4 - ReadWrite"]
    assert app.machine.pool.pagefile.get(pte >> 32) is not None  # the page-file slot named


def test_pte_of_unmapped_addresses(session):
    lines = run(session, "!pte 0")
    assert lines[1:] == [f"PXE at {session.registers()['cr3'] & ~0xFFF:016X}",
                         "contains 0000000000000000", "contains 0000000000000000",
                         "not valid"]
    assert run(session, "!pte zz") == ["Couldn't resolve error at 'zz'"]
    assert run(session, "!pte") == ["Numeric expression missing from '<EOL>'"]


def test_vtop_translates_like_the_machine(app, session):
    space = _space(app)
    cr3 = session.registers()["cr3"]
    for name, va in _addresses(session).items():
        if name == "paged":
            continue
        pa = space.translate(va)
        for base in ("0", f"{cr3:x}", f"{cr3 >> 12:x}"):
            lines = run(session, f"!vtop {base} {va:x}")
            assert lines[0] == f"Amd64VtoP: Virt {va:016x}, pagedir {cr3:016x}"
            assert [line.split()[1] for line in lines[1:5]] == ["PML4E", "PDPE", "PDE", "PTE"]
            assert lines[5] == f"Amd64VtoP: Mapped phys {pa:016x}"
            assert lines[6] == f"Virtual address {va:x} translates to physical address {pa:x}."
        assert run(session, f"!db {pa:x} L10")[0][10:57] == run(session, f"db {va:x} L10")[0][19:66]


def test_vtop_failures(app, session):
    paged = _addresses(session)["paged"]
    pte = _space(app).get_pte(paged)
    lines = run(session, f"!vtop 0 {paged:x}")
    assert lines[-2] == f"Amd64VtoP: PTE not present, pagefile 0:{(pte >> 32) << 12:016x}"
    assert lines[-1] == f"Virtual address {paged:x} translation fails, error 0x10000114."
    lines = run(session, "!vtop 0 0")
    assert lines[-2:] == ["Amd64VtoP: zero PML4E",
                          "Virtual address 0 translation fails, error 0xD0000147."]
    assert run(session, "!vtop 0") == ["Numeric expression missing from '<EOL>'"]


@pytest.mark.parametrize("kind,unit", [("!db", 1), ("!dd", 4), ("!dq", 8)])
def test_physical_dumps_read_page_table_frames(app, session, kind, unit):
    cr3 = session.registers()["cr3"] & ~0xFFF
    nt = session.symbols.module_named("nt").base
    index = (nt >> 39) & 0x1FF
    start = cr3 + index * 8
    lines = run(session, f"{kind} {start:x} L{16 // unit:x}")
    assert len(lines) == 1 and lines[0].startswith(f"#{start:8x} ")
    raw = app.machine.phys.read(start, 16)
    if unit == 8:
        assert lines[0] == f"#{start:8x} {addr(int.from_bytes(raw[:8], 'little'))} " \
            f"{addr(int.from_bytes(raw[8:], 'little'))}"
    elif unit == 4:
        words = [int.from_bytes(raw[i:i + 4], "little") for i in range(0, 16, 4)]
        assert lines[0] == f"#{start:8x} " + " ".join(f"{w:08x}" for w in words)
    else:
        assert lines[0][10:57] == " ".join(f"{b:02x}" for b in raw[:8]) + "-" + \
            " ".join(f"{b:02x}" for b in raw[8:])
    assert len(run(session, f"{kind} {cr3:x}")) == 8


def test_physical_read_failures(session):
    assert run(session, "!db 1 L10") == ["Physical memory read at 1 failed"]
    assert run(session, "!dq 7fffffff000") == ["Physical memory read at 7fffffff000 failed"]
