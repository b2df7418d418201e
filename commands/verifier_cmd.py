"""!verifier: Driver Verifier's options, statistics and verified drivers, read from memory.

The options and the counters over all verified drivers are nt!MmVerifierData
(`_MM_DRIVER_VERIFIER_DATA`).  The verified drivers are the `_VF_TARGET_DRIVER` entries
the target publishes in nt!VfTargetDriverTable (a count, then pointers); each one's
VerifiedData (`_VF_TARGET_VERIFIED_DRIVER_DATA`) holds its own counters, points at its
`_VF_SUSPECT_DRIVER_ENTRY` (base name, loads, unloads) and, under pool tracking, links
pages of `_VI_POOL_ENTRY` (PoolPageHeaders) whose entries in use are its outstanding
allocations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from commands.errors import KdSyntaxError
from commands.pool_tags import tag_text
from commands.registry import Result, command

PAGE = 0x1000

# (bit, text) in the order kd lists them; bit 0 is "Automatic Checks", on whenever
# verification is.
STANDARD_FLAGS = (
    (0x00000000, "Automatic Checks"),
    (0x00000001, "Special pool"),
    (0x00000002, "Force IRQL checking"),
    (0x00000008, "Pool tracking"),
    (0x00000010, "I/O verification"),
    (0x00000020, "Deadlock detection"),
    (0x00000080, "DMA checking"),
    (0x00000100, "Security checks"),
    (0x00000800, "Miscellaneous checks"),
    (0x00020000, "DDI compliance checking"),
)
ADDITIONAL_FLAGS = (
    (0x00000004, "Randomized low resources simulation"),
    (0x00000200, "Force pending I/O requests"),
    (0x00000400, "IRP logging"),
    (0x00002000, "Invariant MDL checking for stack"),
    (0x00004000, "Invariant MDL checking for driver"),
    (0x00008000, "Power framework delay fuzzing"),
    (0x00040000, "Systematic low resources simulation"),
    (0x00080000, "DDI compliance checking (additional)"),
    (0x00200000, "NDIS/WIFI verification"),
    (0x00800000, "Kernel synchronization delay fuzzing"),
    (0x01000000, "VM switch verification"),
)
# Flag values that select one of the verifier's logs instead of the summary.
LOGS = {4: "fault injection", 8: "IRQL transition", 0x20: "driver hang verification",
        0x40: "forced pending I/O", 0x80: "kernel pool allocate/free",
        0x100: "IRP allocate/complete/cancel", 0x200: "critical region",
        0x400: "pending I/O"}
# The sections kd prints for flag bits 4 and 8 (alone, or after the summary when they
# are part of a larger value): a ruled title, then the log.  The target keeps neither
# log; kd's line for an empty fault injection log is shown, and the IRQL log's title
# only (its entries and size would come from the target).
RULE = "-" * 47 + " "
FAULT_SECTION = [RULE, f"{'Fault injection trace log':<47} ", RULE, "",
                 "Driver Verifier didn't inject any faults."]
IRQL_SECTION = [RULE, f"{'Track irql trace log':<47} ", RULE, ""]

SUMMARY_FIELDS = (("RaiseIrqls", "RaiseIrqls"), ("AcquireSpinLocks", "AcquireSpinLocks"),
                  ("Synch Executions", "SynchronizeExecutions"), ("Trims", "Trims"))
ALLOCATION_FIELDS = (
    ("Pool Allocations Attempted", "AllocationsAttempted"),
    ("Pool Allocations Succeeded", "AllocationsSucceeded"),
    ("Pool Allocations Succeeded SpecialPool", "AllocationsSucceededSpecialPool"),
    ("Pool Allocations With NO TAG", "AllocationsWithNoTag"),
    ("Pool Allocations Failed", "AllocationsFailed"),
)
POOL_FIELDS = (("Current paged pool allocations", "CurrentPagedPoolAllocations", "PagedBytes"),
               ("Peak paged pool allocations", "PeakPagedPoolAllocations", "PeakPagedBytes"),
               ("Current nonpaged pool allocations", "CurrentNonPagedPoolAllocations",
                "NonPagedBytes"),
               ("Peak nonpaged pool allocations", "PeakNonPagedPoolAllocations",
                "PeakNonPagedBytes"))
DRIVER_FIELDS = (
    ("Current Pool Allocations:", "CurrentNonPagedPoolAllocations",
     "CurrentPagedPoolAllocations"),
    ("Current Pool Bytes:", "NonPagedBytes", "PagedBytes"),
    ("Peak Pool Allocations:", "PeakNonPagedPoolAllocations", "PeakPagedPoolAllocations"),
    ("Peak Pool Bytes:", "PeakNonPagedBytes", "PeakPagedBytes"),
)
TARGET_TABLE_LIMIT = 64  # entries read from nt!VfTargetDriverTable at most


@dataclass
class Allocation:
    address: int
    length: int
    tag: str
    caller: int
    symbol: str


@dataclass
class VerifiedDriver:
    entry: int  # its _VF_TARGET_DRIVER
    name: str
    state: str
    counters: dict[str, int] = field(default_factory=dict)
    allocations: list[Allocation] = field(default_factory=list)


def _p(value: int) -> str:
    """A pointer as kd's `0x%p` prints it."""
    return f"0x{value:016x}"


class VerifierView:
    def __init__(self, s) -> None:
        self.s = s
        self.r = s.reader
        self.data = s.nt("MmVerifierData")

    def field(self, name: str) -> int:
        return self.r.field("_MM_DRIVER_VERIFIER_DATA", self.data, name)

    def targets(self) -> list[int]:
        table = self.s.nt("VfTargetDriverTable")
        count = min(self.r.u64(table), TARGET_TABLE_LIMIT)
        return [self.r.u64(table + 8 + 8 * i) for i in range(count)]

    def driver(self, entry: int, allocations: bool) -> VerifiedDriver:
        r = self.r
        vd = r.field("_VF_TARGET_DRIVER", entry, "VerifiedData")
        suspect = r.field("_VF_TARGET_VERIFIED_DRIVER_DATA", vd, "SuspectDriverEntry")
        name = r.unicode_string(r.field_addr("_VF_SUSPECT_DRIVER_ENTRY", suspect, "BaseName"))
        unloads = r.field("_VF_SUSPECT_DRIVER_ENTRY", suspect, "Unloads")
        state = "Loaded" if unloads == 0 else "Loaded and Unloaded"
        names = {n for _label, *pair in DRIVER_FIELDS for n in pair}
        names |= {"ContiguousMemoryBytes", "PeakContiguousMemoryBytes"}
        counters = {n: r.field("_VF_TARGET_VERIFIED_DRIVER_DATA", vd, n) for n in names}
        d = VerifiedDriver(entry, name, state, counters)
        if allocations:
            d.allocations = self.allocations(vd)
        return d

    def allocations(self, vd: int) -> list[Allocation]:
        """The entries in use on the tracker pages (PoolPageHeaders, an x64 SLIST whose
        NextEntry is the address >> 4; each page's first entry is its header)."""
        r = self.r
        size = self.s.target.types.sizeof("_VI_POOL_ENTRY")
        page = r.field("_VF_TARGET_VERIFIED_DRIVER_DATA", vd,
                       "PoolPageHeaders.HeaderX64.NextEntry") << 4
        out: list[Allocation] = []
        seen: set[int] = set()
        while page and page not in seen and len(seen) < 0x1000:
            seen.add(page)
            for entry in range(page + size, page + PAGE, size):
                caller = r.field("_VI_POOL_ENTRY_INUSE", entry, "CallingAddress")
                if not caller:  # an unused entry: only its NextFree link is set
                    continue
                address = r.field("_VI_POOL_ENTRY_INUSE", entry, "VirtualAddress")
                out.append(Allocation(
                    address, r.field("_VI_POOL_ENTRY_INUSE", entry, "NumberOfBytes"),
                    tag_text(r.field("_VI_POOL_ENTRY_INUSE", entry, "Tag")), caller,
                    self.s.symbols.name_for(caller) or ""))
            page = r.field("_VI_POOL_PAGE_HEADER", page, "NextPage")
        return out


def _flag_lines(level: int) -> list[str]:
    def row(bit: int, text: str) -> str:
        on = level != 0 if bit == 0 else bool(level & bit)
        return f"    [{'X' if on else ' '}] (0x{bit:08x}) {text}"

    return (["", f"Verify Flags Level 0x{level:08x}", "", "  STANDARD FLAGS:"]
            + [row(b, t) for b, t in STANDARD_FLAGS] + ["", "  ADDITIONAL FLAGS:"]
            + [row(b, t) for b, t in ADDITIONAL_FLAGS]
            + ["", "    [X] Indicates flag is enabled", ""])


def _summary_lines(view: VerifierView, stats: dict[str, int]) -> list[str]:
    lines = ["", "Summary of All Verifier Statistics", ""]
    for label, name in SUMMARY_FIELDS:
        stats[name] = view.field(name)
        lines.append(f"  {label:<20} {stats[name]:#x}")
    lines.append("")
    for label, name in ALLOCATION_FIELDS:
        stats[name] = view.field(name)
        lines.append(f"  {label:<38} {stats[name]:#x}")
    lines.append("")
    for label, count, nbytes in POOL_FIELDS:
        stats[count], stats[nbytes] = view.field(count), view.field(nbytes)
        lines.append(f"  {label:<38} {stats[count]:#x} for {stats[nbytes]:08X} bytes")
    return lines + [""]


def _driver_lines(d: VerifiedDriver, flags: int) -> list[str]:
    lines = [f"nt!_VF_TARGET_DRIVER {_p(d.entry)}: {d.name} ({d.state})", ""]
    if not flags & 1:
        return lines
    c = d.counters
    lines += ["    Pool Allocation Statistics: ( NonPagedPool / PagedPool )", ""]
    for label, nonpaged, paged in DRIVER_FIELDS:
        lines.append(f"      {label:<25} ( 0x{c[nonpaged]:08X} / 0x{c[paged]:08X} )")
    lines += [f"      Contiguous Memory Bytes:       0x{c['ContiguousMemoryBytes']:08X}",
              f"      Peak Contiguous Memory Bytes:  0x{c['PeakContiguousMemoryBytes']:08X}",
              ""]
    if not flags & 2:
        return lines
    width = 18
    lines += ["    Pool Allocations:", "",
              f"      {'Address':<{width}}  {'Length':<10}  Tag   Caller",
              f"      {'-' * width}  {'-' * 10}  ----  {'-' * width}"]
    for a in d.allocations:
        lines.append(f"      {_p(a.address)}  0x{a.length:08X}  {a.tag:<4}  {_p(a.caller)}"
                     + (f"  {a.symbol}" if a.symbol else ""))
    return lines + ["", "    Contiguous allocations are not displayed with public symbols.", ""]


def _matches(name: str, image: str) -> bool:
    """The image argument names the driver with or without its extension."""
    low, want = name.lower(), image.lower()
    return want == low or want.rsplit(".", 1)[0] == low.rsplit(".", 1)[0]


@command("!verifier", syntax="!verifier [flags [image]]",
         help="Driver Verifier: its option flags (nt!MmVerifierData Level), the statistics "
              "over all verified drivers, and each verified driver's entry and state; flag "
              "1 adds each driver's pool counters, 3 its outstanding pool allocations; "
              "image limits the list to one driver.")
def verifier_cmd(s, args: str) -> Result:
    text = args.strip()
    flags, rest = s.take(text) if text else (0, "")
    image = rest.strip()
    view = VerifierView(s)
    if flags in LOGS:
        # The target keeps none of the verifier's logs: kd's section for an empty fault
        # injection log, the IRQL log's title, and nothing for the others.
        what = LOGS[flags]
        lines = FAULT_SECTION if flags == 4 else IRQL_SECTION if flags == 8 else []
        return Result(list(lines), {"flags": flags, "log": what, "entries": []})
    if " " in image:
        raise KdSyntaxError(image.split(" ", 1)[1].strip())
    level = view.field("Level")
    stats: dict[str, int] = {"Level": level}
    lines = _flag_lines(level) + _summary_lines(view, stats)
    drivers = [view.driver(entry, bool(flags & 1 and flags & 2)) for entry in view.targets()]
    if image:
        drivers = [d for d in drivers if _matches(d.name, image)]
    lines += ["Driver Verification List", "-" * 24, ""]
    for d in drivers:
        lines += _driver_lines(d, flags)
    if flags & 4:
        lines += FAULT_SECTION + [""]
    if flags & 8:
        lines += IRQL_SECTION
    return Result(lines, {"flags": flags, "level": level, "statistics": stats,
                          "drivers": [asdict(d) for d in drivers]})
