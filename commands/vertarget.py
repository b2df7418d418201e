"""`vertarget`: the target's version, read from what the kernel publishes in memory.

nt!NtBuildNumber (build, and 0xF in the top nibble for a free build), nt!KeNumberProcessors,
nt!NtBuildLab, SharedUserData's NtMajorVersion / NtMinorVersion / NtProductType /
SuiteMask, the kernel base and nt!PsLoadedModuleList, and the time from SharedUserData's
SystemTime, TimeZoneBias and InterruptTime (the clock the machine publishes, never the
host's).  A line whose variables cannot be read is left out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from commands.dpcs_timers import SHARED_USER_DATA, shared_time
from commands.errors import KdError
from commands.fmt import addr
from commands.registry import Result, command
from commands.target import MemoryAccessError

PRODUCT_TYPES = {1: "WinNt", 2: "LanManNt", 3: "Server"}
SUITES = ((0x1, "SmallBusiness"), (0x2, "Enterprise"), (0x4, "BackOffice"),
          (0x8, "CommunicationServer"), (0x10, "TerminalServer"),
          (0x20, "SmallBusinessRestricted"), (0x40, "EmbeddedNT"), (0x80, "DataCenter"),
          (0x100, "SingleUserTS"), (0x200, "Personal"), (0x400, "Blade"),
          (0x800, "EmbeddedRestricted"), (0x1000, "SecurityAppliance"),
          (0x2000, "StorageServer"), (0x4000, "ComputeServer"), (0x8000, "WHServer"))
EPOCH_1601 = datetime(1601, 1, 1, tzinfo=UTC)
KUSER = "_KUSER_SHARED_DATA"


def _shared(s, name: str) -> int | None:
    try:
        return s.reader.field(KUSER, SHARED_USER_DATA, name)
    except (MemoryAccessError, KeyError, ValueError):
        return None


def _nt_u64(s, name: str) -> int | None:
    try:
        return s.reader.u64(s.nt(name))
    except (KdError, MemoryAccessError):
        return None


def _build_lab(s) -> str | None:
    try:
        raw = s.target.read_virtual(s.nt("NtBuildLab"), 0x40)
    except (KdError, MemoryAccessError):
        return None
    text = raw.split(b"\0", 1)[0].decode("ascii", "replace")
    return text or None


def session_time(system: int, bias: int) -> str:
    """`Fri Feb 20 10:15:17.807 2015 (UTC - 8:00)` from 100 ns counts since 1601."""
    local = EPOCH_1601 + timedelta(microseconds=(system - bias) // 10)
    minutes = -bias // 600_000_000 if bias else 0
    sign = "-" if minutes < 0 else "+"
    zone = f"(UTC {sign} {abs(minutes) // 60}:{abs(minutes) % 60:02d})"
    day = f"{local.day:>2}"
    return (f"{local:%a %b} {day} {local:%H:%M:%S}.{local.microsecond // 1000:03d} "
            f"{local.year} {zone}")


def uptime(interrupt: int) -> str:
    """`0 days 01:31:58.931` from 100 ns since boot."""
    ms = interrupt // 10_000
    seconds, ms = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days} days {hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}"


@command("vertarget", syntax="vertarget",
         help="Show the target's version, processors, kernel base, session time and uptime.")
def vertarget_cmd(s, args: str) -> Result:
    data: dict[str, object] = {}
    lines: list[str] = []
    build = _nt_u64(s, "NtBuildNumber")
    procs = _nt_u64(s, "KeNumberProcessors")
    major, minor = _shared(s, "NtMajorVersion"), _shared(s, "NtMinorVersion")
    if build is not None and procs is not None:
        number = build & 0xFFFF
        free = "Free" if (build >> 28) & 0xF == 0xF else "Checked"
        name = "Windows 10" if major == 10 else f"Windows {major}.{minor}" if major else "Windows"
        mp = "MP" if procs > 1 else "UP"
        lines.append(f"{name} Kernel Version {number} {mp} ({procs} procs) {free} x64")
        data.update(os=name, build=number, processors=procs, free=free == "Free")
    product, suite = _shared(s, "NtProductType"), _shared(s, "SuiteMask")
    if product is not None and suite is not None:
        suites = " ".join(n for bit, n in SUITES if suite & bit)
        lines.append(f"Product: {PRODUCT_TYPES.get(product, 'WinNt')}, suite: {suites}")
        data.update(product=product, suite=suite)
    lab = _build_lab(s)
    if lab is not None:
        lines.append(f"Built by: {lab}")
        data["build_lab"] = lab
    lines.append("Machine Name:")
    base = s.target.kernel_base()
    try:
        head = s.nt("PsLoadedModuleList")
    except KdError:
        head = None
    if head is not None:
        lines.append(f"Kernel base = 0x{addr(base)} PsLoadedModuleList = 0x{addr(head)}")
        data.update(kernel_base=base, module_list=head)
    system, bias = shared_time(s, "SystemTime"), shared_time(s, "TimeZoneBias")
    if system is not None:
        lines.append(f"Debug session time: {session_time(system, bias or 0)}")
        data.update(system_time=system, time_zone_bias=bias or 0)
    interrupt = shared_time(s, "InterruptTime")
    if interrupt is not None:
        lines.append(f"System Uptime: {uptime(interrupt)}")
        data["interrupt_time"] = interrupt
    return Result(lines, data)
