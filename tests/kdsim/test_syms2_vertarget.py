"""`vertarget` on the default crashed machine: every value read back from memory."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

from commands.fmt import addr
from commands.vertarget import session_time, uptime
from tests.conftest import run

SHARED = 0xFFFFF78000000000


def _u32(s, address):
    return struct.unpack("<I", s.target.read_virtual(address, 4))[0]


def _u64(s, address):
    return struct.unpack("<Q", s.target.read_virtual(address, 8))[0]


def _field(s, name):
    return s.target.types.resolve("_KUSER_SHARED_DATA", name)[0] + SHARED


def test_vertarget_lines_come_from_the_kernel_variables(session):
    out = run(session, "vertarget")
    build = _u64(session, session.symbols.address_of("nt!NtBuildNumber"))
    procs = _u64(session, session.symbols.address_of("nt!KeNumberProcessors"))
    assert out[0] == (f"Windows {_u32(session, _field(session, 'NtMajorVersion'))} Kernel Version "
                      f"{build & 0xFFFF} {'MP' if procs > 1 else 'UP'} ({procs} procs) Free x64")
    assert build >> 28 == 0xF
    suite = _u32(session, _field(session, "SuiteMask"))
    assert suite & 0x110 == 0x110 and _u32(session, _field(session, "NtProductType")) == 1
    assert out[1] == "Product: WinNt, suite: TerminalServer SingleUserTS"
    lab = session.target.read_virtual(session.symbols.address_of("nt!NtBuildLab"), 0x40)
    assert out[2] == "Built by: " + lab.split(b"\0")[0].decode()
    assert out[2].startswith("Built by: 19041.1.amd64fre.")
    assert out[3] == "Machine Name:"
    base = session.target.kernel_base()
    assert base == session.symbols.module_named("nt").base
    head = session.symbols.address_of("nt!PsLoadedModuleList")
    assert out[4] == f"Kernel base = 0x{addr(base)} PsLoadedModuleList = 0x{addr(head)}"


def test_vertarget_time_is_the_machines_published_clock(session):
    out = run(session, "vertarget")
    low = _u32(session, _field(session, "SystemTime"))
    high = _u32(session, _field(session, "SystemTime") + 4)
    system = high << 32 | low
    when = datetime(1601, 1, 1, tzinfo=UTC) + timedelta(microseconds=system // 10)
    assert out[5].startswith(f"Debug session time: {when:%a %b} {when.day:>2} {when:%H:%M:%S}")
    assert out[5].endswith(f" {when.year} (UTC + 0:00)")
    it = _u64(session, _field(session, "InterruptTime"))
    assert out[6] == f"System Uptime: {uptime(it)}"
    assert len(out) == 7


def test_time_formats():
    # 2015-02-20 18:15:17.807 UTC shown at UTC-8 (bias +8 h)
    utc = datetime(2015, 2, 20, 18, 15, 17, 807000, tzinfo=UTC)
    system = int((utc - datetime(1601, 1, 1, tzinfo=UTC)).total_seconds() * 10_000_000)
    assert session_time(system, 8 * 36_000_000_000) == "Fri Feb 20 10:15:17.807 2015 (UTC - 8:00)"
    assert session_time(system, 0).endswith("18:15:17.807 2015 (UTC + 0:00)")
    assert uptime(((1 * 60 + 31) * 60 + 58) * 10_000_000 + 9_310_000) == "0 days 01:31:58.931"
    assert uptime(2 * 86400 * 10_000_000) == "2 days 00:00:00.000"
