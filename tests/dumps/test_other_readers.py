"""Every shipped crash scenario's dump opens in an independent parser (kdmp-parser), which
reports what the live machine holds: the bug check, the context registers, the
DirectoryTableBase, and the same bytes through its own 4-level translation."""

from __future__ import annotations

import kdmp_parser
import pytest

from tests.dumps.dumpkit import crash_scenarios, crashed, write

REGISTERS = ("Rax", "Rcx", "Rdx", "Rbx", "Rsp", "Rbp", "Rsi", "Rdi", "R8", "R9", "R10",
             "R11", "R12", "R13", "R14", "R15", "Rip")


def test_the_library_has_its_crash_scenarios():
    assert len(crash_scenarios()) == 14


def _read_virtual(dump, address: int, size: int) -> bytes:
    out = b""
    while len(out) < size:
        va = address + len(out)
        page = dump.read_virtual_page(va & ~0xFFF)
        assert page is not None, hex(va)
        take = min(size - len(out), 0x1000 - (va & 0xFFF))
        out += bytes(page[va & 0xFFF:(va & 0xFFF) + take])
    return out


@pytest.mark.parametrize("name", crash_scenarios())
@pytest.mark.parametrize("option, dump_type", [("/f", "FullDump"), ("/ka", "BMPDump")])
def test_kdmp_parser_reads_what_the_machine_holds(name, option, dump_type, tmp_path):
    app = crashed(name)
    m = app.machine
    path = write(app, tmp_path / f"{name}.dmp", option)
    dump = kdmp_parser.KernelDumpParser(str(path))
    assert dump.type.name == dump_type
    halt = m.bugcheck
    assert dump.header.BugCheckCode == halt.code
    assert list(dump.header.BugCheckCodeParameter) == list(halt.params)
    regs = app.target.registers(halt.processor)
    for name_ in REGISTERS:
        assert getattr(dump.context, name_) == regs[name_.lower()], name_
    assert dump.context.SegCs == regs["cs"] and dump.context.EFlags == regs["efl"]
    system = m.kspace  # the System process's tables: the kernel's address space
    assert dump.directory_table_base == system.cr3
    rsp = regs["rsp"]
    assert _read_virtual(dump, rsp, 0x100) == app.target.read_virtual(rsp, 0x100)
    head = m.sym("nt!PsActiveProcessHead")
    assert _read_virtual(dump, head, 16) == m.kspace.read(head, 16)
    assert dump.translate_virtual(head) == m.kspace.translate(head)
