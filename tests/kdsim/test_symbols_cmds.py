"""Symbol and module commands (`!dh`, `!lmi`, `lm`, `x`, `ln`, `uf`, `.reload`,
`vertarget`) on the default crashed machine and on a machine with two scenario drivers.
Expected values are parsed here straight from the bytes in memory."""

from __future__ import annotations

import struct

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from machine.scenario import boot_scenario, parse_scenario
from tests.conftest import run

TWO_DRIVERS = '''[scenario]
name = "twodrv"
[machine]
cpus = 2
seed = 3
[[driver]]
name = "alpha"
entry = "DriverEntry"
[[driver.global]]
name = "AlphaCount"
size = 8
[[driver.routine]]
name = "DriverEntry"
code = """
    xor eax, eax
    ret
"""
[[driver.routine]]
name = "AlphaWork"
code = """
    mov rax, qword ptr [AlphaCount]
    test rax, rax
    je done
    inc rax
done:
    ret
"""
[[driver]]
name = "betadrv"
entry = "DriverEntry"
[[driver.routine]]
name = "DriverEntry"
code = """
    xor eax, eax
    ret
"""
'''


@pytest.fixture(scope="module")
def two_target() -> LiveTarget:
    return LiveTarget(boot_scenario(parse_scenario(TWO_DRIVERS, "twodrv.toml")))


@pytest.fixture()
def two(two_target: LiveTarget) -> Session:
    return Session(two_target)


def _sessions(session: Session, two: Session) -> list[Session]:
    return [session, two]


def _pe(s: Session, base: int) -> dict:
    """An independent parse of the PE headers in memory at `base`."""
    read = s.target.read_virtual
    lfanew = struct.unpack_from("<I", read(base, 0x40), 0x3C)[0]
    nt = read(base + lfanew, 0x108)
    machine, nsec, ts = struct.unpack_from("<HHI", nt, 4)
    opt_size, chars = struct.unpack_from("<HH", nt, 0x14)
    entry, = struct.unpack_from("<I", nt, 0x18 + 0x10)
    image_base, = struct.unpack_from("<Q", nt, 0x18 + 0x18)
    size, = struct.unpack_from("<I", nt, 0x18 + 0x38)
    checksum, = struct.unpack_from("<I", nt, 0x18 + 0x40)
    table = read(base + lfanew + 0x18 + opt_size, 0x28 * nsec)
    sections = []
    for i in range(nsec):
        raw = table[0x28 * i:0x28 * (i + 1)]
        sections.append((raw[:8].rstrip(b"\0").decode(), *struct.unpack_from("<IIII", raw, 8),
                         struct.unpack_from("<I", raw, 36)[0]))
    return {"machine": machine, "nsec": nsec, "ts": ts, "chars": chars, "entry": entry,
            "image_base": image_base, "size": size, "checksum": checksum,
            "sections": sections}


# -- !dh ----------------------------------------------------------------------------------

def test_dh_prints_file_and_optional_headers_of_every_module(session, two):
    for s in _sessions(session, two):
        for m in s.symbols.modules():
            pe = _pe(s, m.base)
            out = run(s, f"!dh {m.name}")
            assert out[0] == "" and out[1] == "File Type: EXECUTABLE IMAGE"
            assert out[2] == "FILE HEADER VALUES"
            assert out[3] == f"{pe['machine']:8X} machine (X64)"
            assert out[4] == f"{pe['nsec']:8X} number of sections"
            assert out[5].startswith(f"{pe['ts']:08X} time date stamp ")
            assert f"{pe['chars']:8X} characteristics" in out
            assert f"{pe['entry']:8X} address of entry point" in out
            assert f"{pe['image_base']:016x} image base" in out
            assert f"{pe['size']:8X} size of image" in out
            assert f"{pe['checksum']:8X} checksum" in out
            assert out.count("SECTION HEADER #1") == 1
            assert sum(1 for x in out if x.endswith(" Directory")) == 16


def test_dh_section_headers_match_the_section_table(session, two):
    for s in _sessions(session, two):
        for m in s.symbols.modules():
            pe = _pe(s, m.base)
            out = run(s, f"!dh -s {m.base:x}")
            assert "FILE HEADER VALUES" not in out
            for i, (name, vsize, rva, rawsize, rawptr, flags) in enumerate(pe["sections"], 1):
                at = out.index(f"SECTION HEADER #{i}")
                assert out[at - 1] == ""
                assert out[at + 1] == f"{name:>8} name"
                assert out[at + 2] == f"{vsize:8X} virtual size"
                assert out[at + 3] == f"{rva:8X} virtual address"
                assert out[at + 4] == f"{rawsize:8X} size of raw data"
                assert out[at + 5] == f"{rawptr:8X} file pointer to raw data"
                assert out[at + 10] == f"{flags:08X} flags"
                words = out[at + 11:at + 16]
                if flags & 0x20:
                    assert words[0] == "         Code" and "         Execute Read" in words
                else:
                    assert words[0] == "         Initialized Data"
                    assert "         Read Write" in words


def test_dh_f_stops_before_the_sections_and_bad_input_is_reported(session):
    out = run(session, "!dh -f nt")
    assert "OPTIONAL HEADER VALUES" in out and not any("SECTION" in x for x in out)
    assert out[-2:] == ["       0 [       0] address [size] of Reserved Directory", ""]
    assert run(session, "!dh 0") == ["Can't read file header: error == 0"]
    assert run(session, "!dh nosuchmodule") == ["Couldn't resolve error at 'nosuchmodule'"]
    assert run(session, "!dh")[0] == "Usage: dh [options] address"
    assert run(session, "!dh -a hal")[1] == "File Type: EXECUTABLE IMAGE"


# -- !lmi ---------------------------------------------------------------------------------

def test_lmi_summarises_each_module_from_its_headers(session, two):
    for s in _sessions(session, two):
        for m in s.symbols.modules():
            pe = _pe(s, m.base)
            for arg in (m.name, f"{m.base + 0x10:x}"):
                out = run(s, f"!lmi {arg}")
                assert out[0] == f"Loaded Module Info: [{arg.lower()}] "
                assert out[1] == f"         Module: {m.image.rsplit('.', 1)[0]}"
                assert out[2] == f"   Base Address: {m.base:016x}"
                assert out[3] == f"     Image Name: {m.image}"
                assert out[4] == f"   Machine Type: {pe['machine']} (X64)"
                assert out[5].startswith(f"     Time Stamp: {pe['ts']:x} ")
                assert out[6] == f"           Size: {pe['size']:x}"
                assert out[7] == f"       CheckSum: {pe['checksum']:x}"
                assert out[8] == f"Characteristics: {pe['chars']:x}  "
                assert out[11] == f"                 {m.symbols.pdb}"


def test_lmi_outside_every_module_is_an_error(session):
    assert run(session, "!lmi 0") == ["Loaded Module Info: [0] ", "0 not found"]
    assert run(session, "!lmi NoSuch") == ["Loaded Module Info: [nosuch] ", "nosuch not found"]


# -- lm -----------------------------------------------------------------------------------

def _ldr_modules(s: Session) -> list[tuple[str, int, int]]:
    """(BaseDllName, DllBase, SizeOfImage) straight from PsLoadedModuleList."""
    r = s.reader
    t = "_KLDR_DATA_TABLE_ENTRY"
    out = []
    for entry in r.list_entries(s.nt("PsLoadedModuleList")):
        out.append((r.unicode_string(r.field_addr(t, entry, "BaseDllName")),
                    r.field(t, entry, "DllBase"), r.field(t, entry, "SizeOfImage")))
    return out


def _row(start: int, end: int, name: str) -> str:
    def bt(v: int) -> str:
        return f"{v >> 32:08x}`{v & 0xFFFFFFFF:08x}"
    return f"{bt(start)} {bt(end)}   {name.ljust(8)}   "


def test_lm_lists_every_loaded_module_in_list_order(session, two):
    for s in _sessions(session, two):
        out = run(s, "lm")
        assert out[0] == "start             end                 module name"
        ldr = _ldr_modules(s)
        assert len(out) == 1 + len(ldr)
        for line, (_image, base, size) in zip(out[1:], ldr, strict=True):
            assert line[:17] == f"{base >> 32:08x}`{base & 0xFFFFFFFF:08x}"
            assert line[18:35] == f"{(base + size) >> 32:08x}`{(base + size) & 0xFFFFFFFF:08x}"
            assert line[49:62] == "(pdb symbols)"
    assert [x.split()[2] for x in run(two, "lm")[1:]] == ["nt", "hal", "alpha", "betadrv"]


def test_lmvm_and_glued_options_select_one_module_with_its_verbose_block(session, two):
    for s in _sessions(session, two):
        for image, base, size in _ldr_modules(s):
            m = s.symbols.module_at(base)
            for line in (f"lmvm {m.name}", f"lm v m {m.name}", f"lmDvm {m.name}"):
                out = run(s, line)
                assert out[0] == "Browse full module list"
                assert out[2].startswith(_row(base, base + size, m.name))
                assert out[3] == f"    Loaded symbol image file: {image}"
                assert out[5] == f"    Image name: {image}"
                ts = s.reader.int(base + s.reader.int(base + 0x3C, 4) + 8, 4)
                assert out[7].startswith("    Timestamp:        ") and out[7].endswith(
                    f"({ts:08X})")
                assert out[9] == f"    ImageSize:        {size:08X}"
                assert len(out) == 10


def test_lm_filters_by_pattern_address_kind_and_sorts(session, two):
    names = [x.split()[2] for x in run(two, "lm")[1:]]
    assert run(two, "lm 1m") == names
    assert run(two, "lm sm 1m") == sorted(names, key=str.lower)
    assert run(two, "lm 1m m *a*") == [n for n in names if "a" in n]
    assert run(two, "lm k 1m") == names  # every module here is a kernel module
    assert run(two, "lm u") == ["start             end                 module name"]
    for image, base, size in _ldr_modules(two):
        out = run(two, f"lm a {base + size - 1:x}")
        assert len(out) == 3 and out[2].startswith(_row(base, base + size, out[2].split()[2]))
        assert two.symbols.module_at(base).image == image
    assert run(session, "lm m nosuch") == ["Browse full module list",
                                           "start             end                 module name"]
    assert run(session, "lm z") == ["          ^ Syntax error in 'lm z'"]
