"""!dh and !lmi layouts as kd prints them: kd's usage text (also for a switch it does not
know), `SECTION HEADER #<hex>`, section flag words in bit order, the empty line that ends
the header block, `No file header.` where no image is, `Invalid extra argument`; !lmi
echoes its argument lower-cased, names the module after its image file and reports a
module it cannot find under its title line."""

from __future__ import annotations

import struct

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from machine.scenario import boot_scenario, builtin_scenario
from tests.conftest import run

USAGE = ["Usage: dh [options] address", "", "Dumps headers from an image based at address.",
         "", "Options:", "", "   -a      Dump everything", "   -f      Dump file headers",
         "   -s      Dump section headers", ""]


def test_dh_usage_for_help_and_unknown_switches(session):
    for args in ("-h", "-H", "-x nt", "/q nt", "-f"):
        assert run(session, f"!dh {args}") == USAGE
    assert run(session, "!dh nt hal") == ["Invalid extra argument"]


def test_dh_blocks_and_blank_lines(session):
    for m in session.symbols.modules():
        full = run(session, f"!dh {m.name}")
        files = run(session, f"!dh -f {m.name}")
        sections = run(session, f"!dh -s {m.name}")
        assert full == files + sections
        assert files[0] == "" and files[-1] == "" and files[-2].endswith("Reserved Directory")
        assert sections[0] == "" and sections[1] == "SECTION HEADER #1"
        assert run(session, f"!dh -a {m.base:x}") == full


def test_dh_where_no_image_is(session):
    m = session.symbols.module_named("myfault")
    text = m.base + 0x1000  # mapped code, not an image header
    assert session.target.read_virtual(text, 2) != b"MZ"
    assert run(session, f"!dh {text:x}") == ["No file header."]


@pytest.fixture(scope="module")
def many_sections():
    """The default machine with myfault's section table grown to 11 entries in memory
    (the extra ones written into the header page after the real two)."""
    m = boot_scenario(builtin_scenario("myfault"))
    s = Session(LiveTarget(m))
    mod = s.symbols.module_named("myfault")
    read = s.target.read_virtual
    lfanew = struct.unpack_from("<I", read(mod.base, 0x40), 0x3C)[0]
    nt = mod.base + lfanew
    opt_size = struct.unpack_from("<H", read(nt + 0x14, 2))[0]
    table = nt + 0x18 + opt_size
    extra = []
    for i in range(2, 11):
        # No Pad | Uninitialized Data | Remove | 16-byte alignment | Discardable | Read
        flags = 0x8 | 0x80 | 0x800 | 0x00500000 | 0x02000000 | 0x40000000
        extra.append(struct.pack("<8sIIIIIIHHI", f"S{i + 1}".encode(), 0x10 * (i + 1),
                                 0x1000 * (i + 1),
                                 0, 0, 0, 0, 0, 0, flags))
    m.kspace.write(table + 0x28 * 2, b"".join(extra))
    m.kspace.write(nt + 6, struct.pack("<H", 11))
    return s, mod


def test_section_numbers_are_hex_and_flags_read_in_bit_order(many_sections):
    s, mod = many_sections
    out = run(s, f"!dh -s {mod.base:x}")
    heads = [line for line in out if line.startswith("SECTION HEADER #")]
    assert heads == [f"SECTION HEADER #{i:X}" for i in range(1, 12)]
    at = out.index("SECTION HEADER #A")
    assert out[at + 1] == "     S10 name"
    assert out[at + 2] == f"{0xA0:8X} virtual size"
    assert out[at + 10] == "42500888 flags"
    assert out[at + 11:at + 18] == ["         No Pad", "         Uninitialized Data",
                                    "         Remove", "         Discardable",
                                    "         16 byte align", "         Read Only", ""]


class _NoSymbolsFor(LiveTarget):
    """The live machine with no symbol file for one image."""

    def __init__(self, machine, image: str) -> None:
        super().__init__(machine)
        self.image = image

    def symbol_file(self, image: str):
        return None if image.lower() == self.image else super().symbol_file(image)


def test_lmi_title_module_and_missing_modules(app, session):
    for m in session.symbols.modules():
        for arg in (m.name.upper(), f"{m.base + 0x20:X}"):
            out = run(session, f"!lmi {arg}")
            assert out[0] == f"Loaded Module Info: [{arg.lower()}] "
            assert out[1] == f"         Module: {m.image.rsplit('.', 1)[0]}"
            assert out[3] == f"     Image Name: {m.image}"
    assert run(session, "!lmi Foo.Sys") == ["Loaded Module Info: [foo.sys] ", "foo.sys not found"]
    assert run(session, "!lmi 10") == ["Loaded Module Info: [10] ", "10 not found"]
    bare = Session(_NoSymbolsFor(app.machine, "myfault.sys"))
    out = run(bare, "!lmi myfault")
    assert out[-2:] == ["    Symbol Type: NONE     - pdb not found from image path.",
                        "    Load Report: no symbols loaded"]
