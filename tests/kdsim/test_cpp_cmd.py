"""`??` on the crashed default machine: values read back through memory."""

from __future__ import annotations

import re

import pytest

from commands.process import Kernel
from tests.conftest import run


@pytest.fixture()
def processes(session):
    return Kernel(session).process_list()


def _ptr(value: int) -> str:
    return f"0x{value >> 32:08x}`{value & 0xFFFFFFFF:08x}"


def test_unique_process_id_of_every_process(session, processes):
    r = session.reader
    assert len(processes) > 3
    for ep in processes:
        pid = r.field("_EPROCESS", ep, "UniqueProcessId")
        out = run(session, f"?? ((nt!_EPROCESS*)0x{ep:x})->UniqueProcessId")
        assert out == [f"void * {_ptr(pid)}"]
        dt = run(session, f"dt nt!_EPROCESS {ep:x} UniqueProcessId")
        assert dt[-1].endswith(f": {_ptr(pid)} Void")


def test_image_file_name_of_every_process(session, processes):
    for ep in processes:
        name = session.reader.ascii_array(
            session.reader.field_addr("_EPROCESS", ep, "ImageFileName"), 15)
        out = run(session, f"?? ((nt!_EPROCESS*)0x{ep:x})->ImageFileName")
        assert out == [f'unsigned char [15]  "{name}"']


def test_struct_pointer_prints_dt_fields(session, processes):
    for ep in processes[:3]:
        out = run(session, f"?? (nt!_EPROCESS*)0x{ep:x}")
        assert out[0] == f"struct _EPROCESS * {_ptr(ep)}"
        dt = run(session, f"dt nt!_EPROCESS {ep:x}")
        assert out[1:] == dt
        assert out[1] == "   +0x000 Pcb              : _KPROCESS"


def test_pseudo_registers(session):
    thread = session.current_thread()
    process = session.current_process()
    assert run(session, "?? @$thread")[0] == f"struct _ETHREAD * {_ptr(thread)}"
    assert run(session, "?? @$proc")[0] == f"struct _EPROCESS * {_ptr(process)}"
    assert run(session, "?? @$prcb")[0] == f"struct _KPRCB * {_ptr(session.prcb())}"
    out = run(session, "?? (_KTHREAD*)@$thread")
    assert out[0] == f"struct _KTHREAD * {_ptr(thread)}"
    assert out[1] == "   +0x000 Header           : _DISPATCHER_HEADER"
    out = run(session, "?? @$thread->Tcb.ApcState.Process")
    assert out[0] == f"struct _KPROCESS * {_ptr(process)}"
    assert run(session, "?? @$pcr->Prcb.CurrentThread")[0] == \
        f"struct _KTHREAD * {_ptr(thread)}"


def test_embedded_struct_value(session):
    out = run(session, "?? @$thread->Tcb.ApcState")
    assert out[0] == "struct _KAPC_STATE"
    assert out[1].startswith("   +0x000 ApcListHead      : [2] _LIST_ENTRY [ ")
    process = session.current_process()
    assert f"   +0x020 Process          : {_ptr(process)} _KPROCESS" in out


def test_globals(session):
    head = session.nt("PsActiveProcessHead")
    flink = session.reader.u64(head)
    out = run(session, "?? nt!PsActiveProcessHead")
    assert out[0] == "struct _LIST_ENTRY"
    assert out[1] == f" [ {_ptr(flink)} - {_ptr(session.reader.u64(head + 8))} ]"
    assert run(session, "?? &nt!PsActiveProcessHead")[0] == f"struct _LIST_ENTRY * {_ptr(head)}"
    first = run(session, "?? #CONTAINING_RECORD(nt!PsActiveProcessHead.Flink, nt!_EPROCESS, "
                         "ActiveProcessLinks)")[0]
    assert first == f"struct _EPROCESS * {_ptr(Kernel(session).process_list()[0])}"
    block = session.reader.u64(session.nt("KiProcessorBlock"))
    assert run(session, "?? nt!KiProcessorBlock") == [f"unsigned int64 {_ptr(block)}"]


def test_integers_and_bools(session):
    assert run(session, "?? 1+2") == ["int 0n3"]
    assert run(session, "?? sizeof(nt!_EPROCESS)") == ["unsigned int64 0xa40"]
    assert run(session, "?? sizeof(nt!_LIST_ENTRY)") == ["unsigned int64 0x10"]
    assert run(session, "?? sizeof(int)") == ["unsigned int64 4"]
    assert run(session, "?? #FIELD_OFFSET(nt!_EPROCESS, ActiveProcessLinks)") == ["long 0n1096"]
    assert run(session, "?? 1 < 2") == ["bool true"]
    assert run(session, "?? @$proc == 0") == ["bool false"]
    assert run(session, "?? (unsigned char)0x72") == ["unsigned char 0x72 'r'"]
    rax = session.register("rax")
    text = f"0x{rax:x}" if rax < 1 << 32 else _ptr(rax)
    assert run(session, "?? @rax") == [f"unsigned int64 {text if rax >= 10 else rax}"]


def test_unicode_string_member(session):
    """A driver object's name, read through the module list's driver section."""
    head = session.nt("PsLoadedModuleList")
    entry = session.reader.u64(head)
    out = run(session, f"?? ((nt!_KLDR_DATA_TABLE_ENTRY*)0x{entry:x})->BaseDllName")
    name = session.reader.unicode_string(
        session.reader.field_addr("_KLDR_DATA_TABLE_ENTRY", entry, "BaseDllName"))
    assert out[0] == "struct _UNICODE_STRING"
    assert out[1] == f' "{name}"'
    assert re.match(r"   \+0x000 Length           : 0x[0-9a-f]+$", out[2])


def test_char_pointer_string(session):
    entry = session.reader.u64(session.nt("PsLoadedModuleList"))
    buffer = session.reader.field("_KLDR_DATA_TABLE_ENTRY", entry, "BaseDllName.Buffer")
    name = session.reader.unicode_string(
        session.reader.field_addr("_KLDR_DATA_TABLE_ENTRY", entry, "BaseDllName"))
    out = run(session, f"?? (wchar_t*)0x{buffer:x}")
    assert out == [f'wchar_t * {_ptr(buffer)}  "{name}"']


def test_errors_do_not_end_the_session(session):
    assert run(session, "?? nosuchsymbol") == ["Couldn't resolve error at 'nosuchsymbol'"]
    assert run(session, "?? 1 +") == ["Numeric expression missing from '<EOL>'"]
    assert run(session, "?? @$proc->NoField") == ["Couldn't resolve error at 'NoField'"]
    assert run(session, "?? *(int*)0") == ["Memory access error at '*(int*)0'"]
    assert run(session, "??") == ["Numeric expression missing from '<EOL>'"]
    assert run(session, "?? 1+1") == ["int 0n2"]
