"""`s` on the default machine: hits are where memory holds the pattern, in every
module, on the stack and in pool; each hit printed in the display format of its kind."""

from __future__ import annotations

from commands.fmt import addr
from tests.conftest import run


def test_ascii_search_finds_every_modules_dos_stub(session):
    lines = run(session, 's -a 0 L?ffffffffffffffff "This program cannot"')
    # The current process's own images (its header pages, listed by its PEB) come first.
    from commands.peb_teb import process_reader, read_peb

    ep = session.current_process()
    peb = read_peb(process_reader(session, ep), session.reader.field("_EPROCESS", ep, "Peb"))
    bases = sorted(m.base for m in peb.modules) + [m.base for m in session.symbols.modules()]
    assert [line.split()[0] for line in lines] == [addr(b + 0x4E) for b in bases]
    for line in lines:
        assert line.endswith("  This program can")
        assert line[19:66] == "54 68 69 73 20 70 72 6f-67 72 61 6d 20 63 61 6e"


def test_unicode_search_finds_the_module_names_in_pool(session):
    lines = run(session, 's -u 0 L?ffffffffffffffff "myfault.sys"')
    assert lines
    for line in lines:
        where = int(line.split()[0].replace("`", ""), 16)
        assert session.target.read_virtual(where, 22) == "myfault.sys".encode("utf-16-le")
    off = session.reader.offset("_KLDR_DATA_TABLE_ENTRY", "BaseDllName")
    entry = session.reader.list_entries(session.nt("PsLoadedModuleList"))[2]
    buffer = session.reader.field("_UNICODE_STRING", entry + off, "Buffer")
    assert addr(buffer) in [line.split()[0] for line in lines]


def test_dword_qword_word_byte_searches(session):
    nt = session.symbols.module_named("nt")
    lines = run(session, "s -d nt L1000 00004550")
    assert lines == [run(session, f"dd {nt.base + 0xD8:x} L4")[0]]
    rsp = session.registers()["rsp"]
    ret = session.reader.u64(rsp)
    lines = run(session, f"s -q rsp L20 {ret:x}")
    assert lines[0] == run(session, "dq rsp L2")[0]
    assert run(session, "s -w nt L8 5a4d") == [run(session, "dw nt L8")[0]]
    assert run(session, "s -b hal L10 4d 5a 90") == [run(session, "db hal L10")[0]]
    assert run(session, "s nt L10 4d, 5a") == [run(session, "db nt L10")[0]]
    assert run(session, "s -b nt L10 12 34") == []


def test_bad_search_input(session):
    assert run(session, "s -x nt L10 1") == ["Syntax error at '-x'"]
    assert run(session, "s -a nt L10 abc") == ["Syntax error at 'abc'"]
    assert run(session, "s -b nt L10 100") == ["Overflow error at '100'"]
    assert run(session, "s -d nt")[0].endswith("^ Range error in 's -d nt'")
    assert run(session, "s -b nosuch L10 1") == ["Couldn't resolve error at 'nosuch '"]
