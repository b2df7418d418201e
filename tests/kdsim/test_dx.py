"""`dx` on the crashed default machine: the object model read back from memory."""

from __future__ import annotations

import re

import pytest

from commands.process import Kernel
from tests.conftest import run


@pytest.fixture()
def kernel(session):
    return Kernel(session)


def _pids(session, kernel):
    return [session.reader.field("_EPROCESS", ep, "UniqueProcessId")
            for ep in kernel.process_list()]


def test_process_count_matches_process_listing(session, kernel):
    listed = [line for line in run(session, "!process 0 0") if line.startswith("PROCESS ")]
    assert run(session, "dx @$cursession.Processes.Count()") == \
        [f"@$cursession.Processes.Count() : 0x{len(listed):x}"]
    assert len(listed) == len(kernel.process_list())


def test_processes_keyed_by_pid(session, kernel):
    out = run(session, "dx @$cursession.Processes")
    assert out[0] == "@$cursession.Processes" + " " * 16
    rows = out[1:]
    eps = kernel.process_list()
    assert len(rows) == len(eps)
    for row, ep in zip(rows, eps, strict=True):
        pid = session.reader.field("_EPROCESS", ep, "UniqueProcessId")
        assert row == f"    {f'[0x{pid:x}]':<16} : {kernel.image(ep)} [Switch To]"


def test_where_select_order(session, kernel):
    out = run(session, 'dx @$cursession.Processes.Where(p => p.Name == "System")')
    assert out[1:] == ["    [0x4]            : System [Switch To]"]
    names = [kernel.image(ep) for ep in kernel.process_list()]
    pids = _pids(session, kernel)
    out = run(session, "dx @$cursession.Processes.Select(p => p.Name)")
    assert [line.split(" : ", 1)[1] for line in out[1:]] == names
    out = run(session, "dx @$cursession.Processes.OrderByDescending(p => p.Id)")
    keys = [int(re.match(r"    \[(0x[0-9a-f]+)\]", line).group(1), 16) for line in out[1:]]
    assert keys == sorted(pids, reverse=True)
    out = run(session, "dx @$cursession.Processes.OrderBy(p => p.Name).Select(p => p.Id)")
    by_name = [pid for _, pid in sorted(zip(names, pids, strict=True), key=lambda p: p[0])]
    assert [int(line.split(" : ")[1], 16) for line in out[1:]] == by_name


def test_first_and_index(session, kernel):
    first = kernel.process_list()[0]
    out = run(session, "dx @$cursession.Processes.First()")
    assert out[0] == f"@$cursession.Processes.First(){' ' * 17}: {kernel.image(first)} [Switch To]"
    assert out[1] == "    KernelObject     [Type: _EPROCESS]"
    assert out[2] == f"    Name             : {kernel.image(first)}"
    for ep, pid in zip(kernel.process_list(), _pids(session, kernel), strict=True):
        assert run(session, f"dx @$cursession.Processes[{pid}].Name") == \
            [f"@$cursession.Processes[{pid}].Name : {kernel.image(ep)}"]


def test_current_process_and_threads(session, kernel):
    ep = session.current_process()
    pid = session.reader.field("_EPROCESS", ep, "UniqueProcessId")
    out = run(session, "dx @$curprocess")
    assert out == [f"@$curprocess                 : {kernel.image(ep)} [Switch To]",
                   "    KernelObject     [Type: _EPROCESS]",
                   f"    Name             : {kernel.image(ep)}",
                   f"    Id               : 0x{pid:x}",
                   "    Threads         "]
    out = run(session, "dx @$curprocess.Threads")
    off = session.reader.offset("_ETHREAD", "ThreadListEntry")
    threads = [e - off for e in session.reader.list_entries(
        session.reader.field_addr("_EPROCESS", ep, "ThreadListHead"))]
    tids = [session.reader.field("_ETHREAD", et, "Cid.UniqueThread") for et in threads]
    assert [line[4:].split(" ")[0] for line in out[1:]] == [f"[0x{t:x}]" for t in tids]
    assert all(line.endswith("[Switch To]") for line in out[1:])


def test_threads_of_every_process(session, kernel):
    for ep, pid in zip(kernel.process_list(), _pids(session, kernel), strict=True):
        count = session.reader.field("_EPROCESS", ep, "ActiveThreads")
        out = run(session, f"dx @$cursession.Processes[{pid}].Threads.Count()")
        assert out == [f"@$cursession.Processes[{pid}].Threads.Count() : 0x{count:x}"]


def test_current_thread(session):
    et = session.current_thread()
    tid = session.reader.field("_ETHREAD", et, "Cid.UniqueThread")
    rip = session.registers()["rip"]
    name = session.symbols.name_for(rip)
    out = run(session, "dx @$curthread")
    assert out[0] == (f"@$curthread                 : {name} "
                      f"({rip >> 32:08x}`{rip & 0xFFFFFFFF:08x})  [Switch To]")
    assert out[1:] == ["    KernelObject     [Type: _ETHREAD]", f"    Id               : 0x{tid:x}"]


def test_typed_cast_shows_fields(session, kernel):
    for ep in kernel.process_list()[:3]:
        pid = session.reader.field("_EPROCESS", ep, "UniqueProcessId")
        out = run(session, f"dx (nt!_EPROCESS*)0x{ep:x}")
        assert out[0] == f"(nt!_EPROCESS*)0x{ep:x}{' ' * 17}: 0x{ep:x} [Type: _EPROCESS *]"
        assert out[1] == "    [+0x000] Pcb              [Type: _KPROCESS]"
        assert f"    [+0x440] UniqueProcessId  : 0x{pid:x} [Type: void *]" in out
        assert "    [+0x448] ActiveProcessLinks [Type: _LIST_ENTRY]" in out
        assert "    [+0x460 ( 0: 0)] JobNotReallyActive : 0x0 [Type: unsigned long]" in out


def test_apc_state_of_current_thread(session):
    process = session.current_process()
    out = run(session, "dx -r1 ((nt!_KTHREAD*)@$thread)->ApcState")
    assert out[0] == "((nt!_KTHREAD*)@$thread)->ApcState" + " " * 17 + "[Type: _KAPC_STATE]"
    assert out[1] == "    [+0x000] ApcListHead      [Type: _LIST_ENTRY [2]]"
    assert out[2] == f"    [+0x020] Process          : 0x{process:x} [Type: _KPROCESS *]"


def test_recursion_levels(session):
    assert len(run(session, "dx -r0 @$curprocess")) == 1
    deep = run(session, "dx -r2 @$curprocess")
    assert deep[2] == "        [+0x000] Pcb              [Type: _KPROCESS]"
    deeper = run(session, "dx -r3 @$curprocess")
    assert deeper[3] == "            [+0x000] Header           [Type: _DISPATCHER_HEADER]"


def test_kernel_object_members(session, kernel):
    for pid in _pids(session, kernel):
        out = run(session, f"dx @$cursession.Processes[{pid}].KernelObject.UniqueProcessId")
        assert out == [f"@$cursession.Processes[{pid}].KernelObject.UniqueProcessId : "
                       f"0x{pid:x} [Type: void *]"]
    out = run(session, "dx @$cursession.Processes.Where(p => p.KernelObject.UniqueProcessId "
                       "== 4).Count()")
    assert out[0].endswith(": 0x1")


def test_grid(session, kernel):
    out = run(session, "dx -g @$cursession.Processes")
    assert out[0] == out[2] == out[-1] == "=" * len(out[1])
    headers = [cell.strip(" =") for cell in out[1].split(" = ")[1:]]
    assert headers == ["(+) KernelObject", "Name", "Id", "(+) Threads"]
    first = kernel.process_list()[0]
    assert out[3].startswith(f"= [0x4] : {kernel.image(first)} [Switch To]")
    assert " - {...} " in out[3]
    assert len(out) == len(kernel.process_list()) + 4


def test_errors(session):
    assert run(session, "dx @$curprocess.NoSuchThing") == \
        ["Error: Unable to bind name 'NoSuchThing'"]
    assert run(session, "dx (nt!_NOTYPE*)0") == ["Error: Couldn't resolve error at 'nt!_NOTYPE*)0'"]
    assert run(session, "dx @$cursession.Processes[12345]")[0].startswith("Error: ")
    assert run(session, "dx @$curprocess.Name")[0].endswith(" : " + Kernel(session).image(
        session.current_process()))


def test_embedded_cpp_in_masm(session, kernel):
    process = session.current_process()
    assert run(session, "? @@c++(sizeof(nt!_EPROCESS))") == \
        ["Evaluate expression: 2624 = 00000000`00000a40"]
    pid = session.reader.field("_EPROCESS", process, "UniqueProcessId")
    assert run(session, "? @@c++(@$proc->UniqueProcessId)")[0].endswith(
        f"= {pid >> 32:08x}`{pid & 0xFFFFFFFF:08x}")
    assert run(session, "? @@(#FIELD_OFFSET(nt!_EPROCESS, ActiveProcessLinks)) + 1")[0] == \
        "Evaluate expression: 1097 = 00000000`00000449"
    assert run(session, "?? @@masm(poi(@$proc+0x440))") == [
        "unsigned int64 " + (f"0x{pid:x}" if pid >= 10 else str(pid))]
