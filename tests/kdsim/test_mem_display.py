"""d* on the crashed default machine: values read back from memory, kd's layouts, ranges
and the shared "next address" of a bare repeat."""

from __future__ import annotations

import re
import struct

from commands.fmt import addr
from tests.conftest import run


def _module_entries(session):
    r = session.reader
    head = session.nt("PsLoadedModuleList")
    return r.list_entries(head)


def test_dd_dq_dw_rows_hold_the_module_headers(session):
    for module in session.symbols.modules():
        raw = session.target.read_virtual(module.base, 0x20)
        dwords = struct.unpack("<8I", raw)
        lines = run(session, f"dd {module.name} L8")
        assert lines == [
            f"{addr(module.base)}  " + " ".join(f"{v:08x}" for v in dwords[:4]),
            f"{addr(module.base + 0x10)}  " + " ".join(f"{v:08x}" for v in dwords[4:])]
        qwords = struct.unpack("<4Q", raw)
        assert run(session, f"dq {module.name} {module.name}+1f")[1] == \
            f"{addr(module.base + 0x10)}  {addr(qwords[2])} {addr(qwords[3])}"
        words = run(session, f"dw {module.name} L3")
        assert words == [f"{addr(module.base)}  5a4d 0090 0003"]


def test_db_range_forms_agree(session):
    nt = session.symbols.module_named("nt").base
    by_count = run(session, "db nt L20")
    assert run(session, "db nt nt+1f") == by_count
    assert run(session, "db nt L?20") == by_count
    assert by_count[0].startswith(f"{addr(nt)}  4d 5a 90 00")
    assert by_count[0].endswith("  MZ..............")
    assert run(session, "db nt+20 L-20") == by_count
    assert run(session, "db nt L20 junk")[0].endswith("^ Extra character error in 'db nt L20 junk'")


def test_bare_display_continues_where_the_last_one_ended(session):
    nt = session.symbols.module_named("nt").base
    run(session, "db nt L10")
    lines = run(session, "dd")
    assert lines[0].startswith(f"{addr(nt + 0x10)}  ")
    assert len(lines) == 8
    lines = run(session, "d")  # repeats dd
    assert lines[0].startswith(f"{addr(nt + 0x90)}  ") and len(lines[0].split()) == 5
    assert run(session, "dq")[0].startswith(f"{addr(nt + 0x110)}  ")
    lines = run(session, "d nt")  # repeats dq at a new address
    assert lines[0] == f"{addr(nt)}  {addr(session.reader.u64(nt))} " \
        f"{addr(session.reader.u64(nt + 8))}"


def test_dps_dqs_dds_name_return_addresses_on_the_stack(session):
    rsp = session.registers()["rsp"]
    lines = run(session, "dps rsp L6")
    assert len(lines) == 6
    for i, line in enumerate(lines):
        value = session.reader.u64(rsp + 8 * i)
        name = session.symbols.name_for(value)
        assert line == f"{addr(rsp + 8 * i)}  {addr(value)}" + (f" {name}" if name else "")
    assert "nt!KiBugCheckDispatch+0x" in lines[0]
    assert run(session, "dqs rsp L6") == lines
    dds = run(session, "dds rsp L4")
    for i, line in enumerate(dds):
        value = int.from_bytes(session.target.read_virtual(rsp + 4 * i, 4), "little")
        assert line.startswith(f"{addr(rsp + 4 * i)}  {value:08x}")


def test_ds_prints_each_modules_base_dll_name(session):
    off = session.reader.offset("_KLDR_DATA_TABLE_ENTRY", "BaseDllName")
    images = [m.image for m in session.symbols.modules()]
    seen = []
    for entry in _module_entries(session):
        us = entry + off
        buffer = session.reader.field("_UNICODE_STRING", us, "Buffer")
        lines = run(session, f"dS {us:x}")
        text = session.reader.unicode_string(us)
        assert lines == [f'{addr(buffer)}  "{text}"']
        seen.append(text)
    assert seen == images and len(seen) >= 3


def test_da_du_strings_of_the_machine(session):
    off = session.reader.offset("_KLDR_DATA_TABLE_ENTRY", "FullDllName")
    for entry in _module_entries(session):
        buffer = session.reader.field("_UNICODE_STRING", entry + off, "Buffer")
        text = session.reader.unicode_string(entry + off)
        lines = run(session, f"du {buffer:x}")
        chunks = [text[i:i + 32] for i in range(0, len(text), 32)]
        assert lines == [f'{addr(buffer + 64 * i)}  "{c}"' for i, c in enumerate(chunks)]
    proc = session.current_process()
    name = proc + session.reader.offset("_EPROCESS", "ImageFileName")
    image = session.reader.ascii_array(name, 15)
    assert run(session, f"da {name:x}") == [f'{addr(name)}  "{image}"']


def test_paged_out_and_user_addresses_show_question_marks(session):
    buffer = session.reader.u64(session.symbols.address_of("myfault!PagedBuffer"))
    lines = run(session, f"dq {buffer:x} L4")
    assert lines == [f"{addr(buffer)}  ????????`???????? ????????`????????",
                     f"{addr(buffer + 16)}  ????????`???????? ????????`????????"]
    lines = run(session, "db 0 L10")
    assert lines == ["00000000`00000000  " + "?? " * 7 + "??-" + "?? " * 7 + "??  " + "?" * 16]


def test_bad_input_gives_kd_errors(session):
    assert run(session, "db nosuchsym") == ["Couldn't resolve error at 'nosuchsym'"]
    assert re.search(r"\^ Range error in 'dd nt\+10 nt'", run(session, "dd nt+10 nt")[0])
    assert re.search(r"\^ Range error", run(session, "db 0 L20000000")[0])
