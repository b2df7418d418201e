"""!vm: virtual memory use, from the memory manager's counters in nt's data and each
process's EPROCESS commit counters.

The system-wide lines read nt's variables (nt!MmNumberOfPhysicalPages,
nt!MmAvailablePages, nt!MmAllocatedNonPagedPool, nt!MmMaximumNonPagedPoolInBytes,
nt!MmPagedPoolCommit, nt!MmSizeOfPagedPoolInBytes); a counter the target does not publish
has no line.  `Total Private` and the per-process table come from the processes on
nt!PsActiveProcessHead: EPROCESS.CommitCharge, SharedCommitCharge and
Vm.Shared.ReleasedCommitDebt, in pages, shown in Kb and sorted by commit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from commands.errors import KdError, KdSyntaxError
from commands.process import Kernel
from commands.registry import Result, command
from commands.target import MemoryAccessError

PAGE_KB = 4
PAGE_BYTES = 0x1000
OMIT_PROCESSES = 1  # flag bit 0
VALUE_END = 33  # a counter's value ends at this column
NAME_WIDTH = 24

# (label, nt variable, unit of the variable: "pages" or "bytes"), in kd's order.
COUNTERS = (
    ("Physical Memory", "MmNumberOfPhysicalPages", "pages"),
    ("Available Pages", "MmAvailablePages", "pages"),
    ("NonPagedPool Usage", "MmAllocatedNonPagedPool", "pages"),
    ("NonPagedPool Max", "MmMaximumNonPagedPoolInBytes", "bytes"),
    ("PagedPool Usage", "MmPagedPoolCommit", "pages"),
    ("PagedPool Maximum", "MmSizeOfPagedPoolInBytes", "bytes"),
)
TABLE_HEADER = ("  Pid ImageName" + " " * NAME_WIDTH + "Commit   SharedCommit        Debt")


@dataclass
class ProcessCommit:
    address: int
    pid: int
    image: str
    commit: int  # pages
    shared_commit: int
    debt: int


def counter_line(label: str, pages: int) -> str:
    """`Label:` then the pages ending at column 33 (at least one space), then the Kb."""
    text = f"{label}:"
    return f"{text} {pages:>{max(VALUE_END - len(text) - 1, 0)}} ({pages * PAGE_KB:>11} Kb)"


def process_row(p: ProcessCommit) -> str:
    return (f"{p.pid:>5x} {p.image[:NAME_WIDTH]:<{NAME_WIDTH}}{p.commit * PAGE_KB:>12} Kb"
            f"{p.shared_commit * PAGE_KB:>12} Kb{p.debt * PAGE_KB:>9} Kb")


def read_counters(s) -> list[tuple[str, int]]:
    """(label, pages) of each counter the target publishes."""
    out = []
    for label, name, unit in COUNTERS:
        try:
            value = s.reader.u64(s.nt(name))
        except (KdError, MemoryAccessError):
            continue
        out.append((label, value // PAGE_BYTES if unit == "bytes" else value))
    return out


def read_processes(s) -> list[ProcessCommit]:
    """Every process on nt!PsActiveProcessHead with its commit counters, largest commit
    first (list order among equals)."""
    k = Kernel(s)
    r = s.reader
    t = "_EPROCESS"
    out = []
    try:
        processes = k.process_list()
    except (KdError, MemoryAccessError):
        return out
    for ep in processes:
        try:
            out.append(ProcessCommit(ep, r.field(t, ep, "UniqueProcessId"), k.image(ep),
                                     r.field(t, ep, "CommitCharge"),
                                     r.field(t, ep, "SharedCommitCharge"),
                                     r.field(t, ep, "Vm.Shared.ReleasedCommitDebt")))
        except MemoryAccessError:
            continue  # an unreadable process is left out, as kd skips it
    out.sort(key=lambda p: -p.commit)
    return out


@command("!vm", syntax="!vm [flags]",
         help="Virtual memory use: physical memory, available pages and pool use from nt's "
              "memory counters, the processes' total private commit, then each process's "
              "commit (EPROCESS.CommitCharge), largest first; flag 1 omits the processes.")
def vm_cmd(s, args: str) -> Result:
    flags = 0
    rest = args.strip()
    if rest:
        flags, rest = s.take(rest)
        if rest.strip():
            raise KdSyntaxError(rest.strip())
    counters = read_counters(s)
    processes = read_processes(s)
    lines = [counter_line(label, pages) for label, pages in counters]
    total_private = sum(p.commit for p in processes)
    if processes:
        lines.append(counter_line("Total Private", total_private))
    data: dict = {"flags": flags, "counters": dict(counters), "total_private": total_private}
    if not flags & OMIT_PROCESSES and processes:
        lines += ["", TABLE_HEADER, ""]
        lines += [process_row(p) for p in processes]
        data["processes"] = [asdict(p) for p in processes]
    return Result(lines, data)
