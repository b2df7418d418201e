"""`.formats` layout and conversions, compared with the reference transcript's fields."""

from __future__ import annotations

from commands.formats import c_float, formats, time_text


def test_reference_value_every_line():
    lines, fields = formats(0x57724231)
    assert lines == [
        "Evaluate expression:",
        "  Hex:     00000000`57724231",
        "  Decimal: 1467105841",
        "  Decimal (unsigned) : 1467105841",
        "  Octal:   0000000000012734441061",
        "  Binary:  00000000 00000000 00000000 00000000 01010111 01110010 01000010 00110001",
        "  Chars:   ....WrB1",
        "  Time:    Tue Jun 28 09:24:01 2016",  # the reference shows it at UTC-7
        "  Float:   low 2.66366e+014 high 0",
        "  Double:  7.24847e-315",
    ]
    assert fields["unsigned"] == 0x57724231


def test_kernel_address_is_negative_and_an_invalid_filetime():
    lines, fields = formats(0xFFFFF80554200000)
    assert fields["decimal"] == 0xFFFFF80554200000 - (1 << 64)
    assert lines[1] == "  Hex:     fffff805`54200000"
    assert lines[3] == "  Decimal (unsigned) : 18446735300502749184"
    assert lines[4] == "  Octal:   1777777600252410000000"
    assert lines[7] == "  Time:    ***** Invalid FILETIME"
    assert lines[8] == "  Float:   low 2.74878e+012 high -nan"
    assert fields["chars"] == "....T .."


def test_times_and_floats():
    assert time_text(0) == "Thu Jan  1 00:00:00 1970"
    assert time_text(0x01D5D2A512345678) == "Fri Jan 24 10:57:29.415 2020 (UTC + 0:00)"
    assert c_float(1e-300) == "1e-300" and c_float(123456789.0) == "1.23457e+008"
    assert c_float(float("nan"), 0xFFC00000, 32) == "-nan(ind)"
    assert c_float(float("nan"), 0x7F800001, 32) == "nan(snan)"
    assert c_float(float("inf")) == "inf"
    assert formats(0)[0][-2:] == ["  Float:   low 0 high 0", "  Double:  0"]


def test_command_on_the_machine(session):
    from tests.conftest import run

    nt = session.symbols.module_named("nt").base
    assert run(session, ".formats nt")[1] == "  Hex:     " + \
        f"{nt >> 32:08x}`{nt & 0xFFFFFFFF:08x}"
    assert run(session, ".formats") == ["Numeric expression missing from '<EOL>'"]
    assert run(session, ".formats zz") == ["Couldn't resolve error at 'zz'"]
