"""db / dw / dd / dc / dq / dps / da / du layouts over a fake paged memory."""

from __future__ import annotations

import struct

import pytest

from commands.memdump import dump, read_ascii, read_unicode
from tests.commands.fakes import PagedMemory


class Symbols:
    def __init__(self, names: dict[int, str]) -> None:
        self.names = names

    def name_for(self, address: int) -> str | None:
        return self.names.get(address)


IMAGE = 0xFFFFF80015E50000


def image_memory() -> PagedMemory:
    mem = PagedMemory()
    mem.write(IMAGE, "4d 5a 90 00 03 00 00 00 04 00 00 00 ff ff 00 00"
                     "b8 00 00 00 00 00 00 00 40 00 00 00 00 00 00 00")
    mem.write(IMAGE + 0x3C, "d8 00 00 00")
    return mem


def test_db_default_is_eight_rows():
    lines, nxt = dump(image_memory().read, None, "db", IMAGE, None)
    assert lines[:4] == [
        "fffff800`15e50000  4d 5a 90 00 03 00 00 00-04 00 00 00 ff ff 00 00  MZ..............",
        "fffff800`15e50010  b8 00 00 00 00 00 00 00-40 00 00 00 00 00 00 00  ........@.......",
        "fffff800`15e50020  00 00 00 00 00 00 00 00-00 00 00 00 00 00 00 00  ................",
        "fffff800`15e50030  00 00 00 00 00 00 00 00-00 00 00 00 d8 00 00 00  ................",
    ]
    assert len(lines) == 8
    assert lines[7].startswith("fffff800`15e50070  00 00")
    assert nxt == IMAGE + 0x80


def test_db_unaligned_start_and_short_last_row():
    lines, nxt = dump(image_memory().read, None, "db", IMAGE + 1, 0x14)
    assert lines == [
        "fffff800`15e50001  5a 90 00 03 00 00 00 04-00 00 00 ff ff 00 00 b8  Z...............",
        "fffff800`15e50011  00 00 00 00" + " " * 36 + "  ....",
    ]
    assert nxt == IMAGE + 0x15
    lines, _ = dump(image_memory().read, None, "db", IMAGE, 1)
    assert lines == ["fffff800`15e50000  4d" + " " * 47 + "M"]


def test_db_unreadable_rows_and_page_edges():
    mem = PagedMemory()
    lines, _ = dump(mem.read, None, "db", 0xFFFFFFFF00000090, 0x20)
    assert lines == [
        "ffffffff`00000090  ?? ?? ?? ?? ?? ?? ?? ??-?? ?? ?? ?? ?? ?? ?? ??  ????????????????",
        "ffffffff`000000a0  ?? ?? ?? ?? ?? ?? ?? ??-?? ?? ?? ?? ?? ?? ?? ??  ????????????????",
    ]
    mem.write(0xFFFF800000000FF8, b"ABCDEFGH")
    lines, _ = dump(mem.read, None, "db", 0xFFFF800000000FF8, 16)
    assert lines == [
        "ffff8000`00000ff8  41 42 43 44 45 46 47 48-?? ?? ?? ?? ?? ?? ?? ??  ABCDEFGH????????"]


DD_DATA = [
    0x487E9220, 0xFFFFE000, 0x49D2F130, 0xFFFFE000, 0x4837C468, 0xFFFFE000, 0x18221570,
    0xFFFFC000, 0x4436F8E0, 0xFFFFE000, 0x487E9220, 0xFFFFE000,
]


def test_dd_rows_and_count():
    mem = PagedMemory()
    base = 0xFFFFD001C8ACCFD0  # the data ends at a page boundary
    mem.write(base, struct.pack("<12I", *DD_DATA))
    lines, nxt = dump(mem.read, None, "dd", base, 12)
    assert lines == [
        "ffffd001`c8accfd0  487e9220 ffffe000 49d2f130 ffffe000",
        "ffffd001`c8accfe0  4837c468 ffffe000 18221570 ffffc000",
        "ffffd001`c8accff0  4436f8e0 ffffe000 487e9220 ffffe000",
    ]
    assert nxt == base + 48
    lines, _ = dump(mem.read, None, "dd", base, 1)
    assert lines == ["ffffd001`c8accfd0  487e9220"]
    lines, _ = dump(mem.read, None, "dd", base + 0x28, 4)
    assert lines == ["ffffd001`c8accff8  487e9220 ffffe000 ???????? ????????"]
    assert len(dump(mem.read, None, "dd", base, None)[0]) == 8


def test_dq_dp_dw_and_dc():
    mem = PagedMemory()
    rsp = 0x00000000F6000FE8
    mem.write(rsp, struct.pack("<3Q", 0xFFFFF80011039131, 0, 0x1337DEADBEEF))
    lines, nxt = dump(mem.read, None, "dq", rsp, 4)
    assert lines == [
        "00000000`f6000fe8  fffff800`11039131 00000000`00000000",
        "00000000`f6000ff8  00001337`deadbeef ????????`????????",
    ]
    assert nxt == rsp + 32
    assert dump(mem.read, None, "dp", rsp, 4) == (lines, nxt)
    assert len(dump(mem.read, None, "dq", rsp, None)[0]) == 8

    lines, _ = dump(mem.read, None, "dw", rsp, 10)
    assert lines == [
        "00000000`f6000fe8  9131 1103 f800 ffff 0000 0000 0000 0000",
        "00000000`f6000ff8  beef dead",
    ]

    text = 0x002E573C
    mem.write(text, b"I am string\0%s\n\0" + struct.pack("<3I", 0x10000, 0, 1))
    lines, _ = dump(mem.read, None, "dc", text, 7)
    assert lines == [
        "00000000`002e573c  6d612049 72747320 00676e69 000a7325  I am string.%s..",
        "00000000`002e574c  00010000 00000000 00000001" + " " * 9 + "  ............",
    ]


def test_dps_symbols():
    mem = PagedMemory()
    table = 0xFFFFF80015ED7FE8
    mem.write(table, struct.pack("<3Q", 0xFFFFF8001083C380, 0, 0xFFFFF800128E1450))
    syms = Symbols({0xFFFFF8001083C380: "nt!KeQueryPerformanceCounter",
                    0xFFFFF800128E1450: "ndis!NdisGetJobObjectCompartmentId+0x10"})
    lines, nxt = dump(mem.read, syms, "dps", table, 4)
    assert lines == [
        "fffff800`15ed7fe8  fffff800`1083c380 nt!KeQueryPerformanceCounter",
        "fffff800`15ed7ff0  00000000`00000000",
        "fffff800`15ed7ff8  fffff800`128e1450 ndis!NdisGetJobObjectCompartmentId+0x10",
        "fffff800`15ed8000  ????????`????????",
    ]
    assert nxt == table + 32
    assert dump(mem.read, syms, "dqs", table, 4) == (lines, nxt)
    assert len(dump(mem.read, syms, "dps", table, None)[0]) == 16


def test_da_wraps_at_32_and_stops_at_nul():
    mem = PagedMemory()
    name = 0xFFFFF80015EDB4DC
    mem.write(name, b".\0ExFreeCacheAwareRundownProtection\0")
    lines, nxt = dump(mem.read, None, "da", name, None)
    assert lines == ['fffff800`15edb4dc  "."']
    assert nxt == name + 2
    lines, nxt = dump(mem.read, None, "da", name + 2, None)
    assert lines == [
        'fffff800`15edb4de  "ExFreeCacheAwareRundownProtectio"',
        'fffff800`15edb4fe  "n"',
    ]
    assert nxt == name + 2 + 34
    lines, nxt = dump(mem.read, None, "da", name + 2, 6)
    assert lines == ['fffff800`15edb4de  "ExFree"'] and nxt == name + 8
    mem.write(0x1000, b"a\tb\x80\0")
    assert dump(mem.read, None, "da", 0x1000, None)[0] == ['00000000`00001000  "a.b."']


def test_du_empty_long_and_unreadable():
    mem = PagedMemory()
    empty = 0xFFFFB780B7EEE664
    mem.write(empty, b"\0\0")
    assert dump(mem.read, None, "du", empty, None) == (['ffffb780`b7eee664  ""'], empty + 2)
    text = "The server is slow and all connections are refused."
    base = 0xFFFFFADFE653C7A8
    mem.write(base, text.encode("utf-16-le") + b"\0\0")
    lines, nxt = dump(mem.read, None, "du", base, None)
    assert lines == [
        'fffffadf`e653c7a8  "The server is slow and all conne"',
        'fffffadf`e653c7e8  "ctions are refused."',
    ]
    assert nxt == base + 2 * (len(text) + 1)
    lines, _ = dump(mem.read, None, "du", 0x10000, None)
    assert lines == ['00000000`00010000  "' + "?" * 32 + '"']
    lines, _ = dump(mem.read, None, "da", 0x10000, 5)
    assert lines == ['00000000`00010000  "?????"']


def test_string_helpers_and_bad_kind():
    mem = PagedMemory()
    mem.write(0x2000, "notepad.exe".encode("utf-16-le") + b"\0\0")
    mem.write(0x3000, b"System\0")
    assert read_unicode(mem.read, 0x2000) == "notepad.exe"
    assert read_ascii(mem.read, 0x3000) == "System"
    assert read_ascii(mem.read, 0x9000) is None
    with pytest.raises(ValueError):
        dump(mem.read, None, "dz", 0, 1)
