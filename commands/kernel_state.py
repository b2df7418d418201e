"""Processor state: !pcr, !prcb, !irql and !cpuinfo, read from each processor's KPCR and
KPRCB in memory (found through nt!KiProcessorBlock, as kd finds them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from commands import fmt
from commands.errors import KdError
from commands.registry import Result, command
from commands.target import MemoryAccessError

NO_PRCB = "Cannot get PRCB address"
# x64 IRQL names as kd prints them (the levels Windows gives a name on x64).
IRQL_NAMES = {0: "LOW_LEVEL", 1: "APC_LEVEL", 2: "DISPATCH_LEVEL", 5: "CMCI_LEVEL",
              12: "SYNCH_LEVEL", 13: "CLOCK_LEVEL", 14: "IPI_LEVEL", 15: "HIGH_LEVEL"}
# Lines of the x86 KPCR that kd's !pcr prints on x64 too, always as zero (as SelfPcr): the
# x64 _KPCR has no such fields; of that group kd shows only Prcb and Irql as read.
X86_ONLY_PCR_LINES = ("IRR", "IDR", "InterruptMode", "IDT", "GDT", "TSS")
NT_TIB_FIELDS = (("NtTib.ExceptionList", "ExceptionList"), ("NtTib.StackBase", "StackBase"),
                 ("NtTib.StackLimit", "StackLimit"), ("NtTib.SubSystemTib", "SubSystemTib"),
                 ("NtTib.Version", "Version"), ("NtTib.UserPointer", "ArbitraryUserPointer"),
                 ("NtTib.SelfTib", "Self"))


# -- finding processors ------------------------------------------------------------------

def processor_count(s) -> int:
    """nt!KeNumberProcessors, as kd reads it; the target's own count if unreadable."""
    try:
        return s.reader.int(s.nt("KeNumberProcessors"), 4)
    except (KdError, MemoryAccessError):
        return s.target.processor_count


def prcb_of(s, n: int) -> int:
    """nt!KiProcessorBlock[n]; kd's error when n is no processor or the slot is empty."""
    if not 0 <= n < processor_count(s):
        raise KdError(NO_PRCB)
    try:
        prcb = s.prcb(n)
    except MemoryAccessError:
        raise KdError(NO_PRCB) from None
    if not prcb:
        raise KdError(NO_PRCB)
    return prcb


def pcr_of(s, prcb: int) -> int:
    return prcb - s.reader.offset("_KPCR", "Prcb")


def processor_arg(s, args: str) -> int:
    """The optional processor-number argument of !pcr, !prcb, !irql (default: current)."""
    return s.evaluate(args.strip()) if args.strip() else s.processor


def irql_name(irql: int) -> str:
    name = IRQL_NAMES.get(irql)
    return f"{irql} ({name})" if name else str(irql)


# -- !pcr ----------------------------------------------------------------------------------

@dataclass
class PcrInfo:
    processor: int
    address: int
    major: int
    minor: int
    nt_tib: dict[str, int]
    fields: dict[str, int]
    threads: dict[str, int]
    dpc_queue: list[dict] = field(default_factory=list)


def read_pcr(s, n: int) -> PcrInfo:
    from commands.dpcs_timers import queued_dpcs

    r = s.reader
    prcb = prcb_of(s, n)
    pcr = pcr_of(s, prcb)
    tib = {label: r.field("_NT_TIB", pcr + r.offset("_KPCR", "NtTib"), name)
           for label, name in NT_TIB_FIELDS}
    fields = {"SelfPcr": 0, "Prcb": prcb, "Irql": r.field("_KPCR", pcr, "Irql"),
              **dict.fromkeys(X86_ONLY_PCR_LINES, 0)}
    threads = {label: r.field("_KPRCB", prcb, label)
               for label in ("CurrentThread", "NextThread", "IdleThread")}
    return PcrInfo(n, pcr, r.field("_KPCR", pcr, "MajorVersion"),
                   r.field("_KPCR", pcr, "MinorVersion"), tib, fields, threads,
                   [asdict(d) for d in queued_dpcs(s, n)])


def render_pcr(p: PcrInfo, symbols) -> list[str]:
    from commands.dpcs_timers import dpc_line

    out = [f"KPCR for Processor {p.processor} at {fmt.hex16(p.address)}:",
           f"    Major {p.major} Minor {p.minor}"]
    out += [f"\t{label:>19}: {fmt.hex16(v)}" for label, v in p.nt_tib.items()]
    out.append("")
    out += [f"\t{label:>19}: {fmt.hex16(v)}" for label, v in p.fields.items()]
    out.append("")
    out += [f"\t{label:>19}: {fmt.hex16(v)}" for label, v in p.threads.items()]
    out.append("")
    label = f"\t{'DpcQueue':>18}:"
    if not p.dpc_queue:
        return out + [label]
    for i, d in enumerate(p.dpc_queue):
        text = d["error"] if d["error"] else dpc_line(d, symbols)
        out.append((label + "  " if i == 0 else "\t" + " " * 21) + text)
    return out


@command("!pcr", syntax="!pcr [processor]",
         help="Show a processor's KPCR (default: the current processor): NT_TIB, PRCB, "
              "IRQL, threads and DPC queue.")
def pcr_cmd(s, args: str) -> Result:
    p = read_pcr(s, processor_arg(s, args))
    return Result(render_pcr(p, s.symbols), asdict(p))


# -- !prcb ---------------------------------------------------------------------------------

@dataclass
class PrcbInfo:
    processor: int
    address: int
    irql: int
    current: int
    next: int
    idle: int
    index: int
    group: int
    group_index: int
    group_set_member: int
    interrupt_count: int
    dpc_time: int
    interrupt_time: int
    kernel_time: int
    user_time: int


def read_prcb(s, n: int) -> PrcbInfo:
    r = s.reader
    prcb = prcb_of(s, n)
    t = "_KPRCB"
    return PrcbInfo(n, prcb, r.field("_KPCR", pcr_of(s, prcb), "Irql"),
                    r.field(t, prcb, "CurrentThread"), r.field(t, prcb, "NextThread"),
                    r.field(t, prcb, "IdleThread"), r.field(t, prcb, "Number"),
                    r.field(t, prcb, "Group"), r.field(t, prcb, "GroupIndex"),
                    r.field(t, prcb, "GroupSetMember"), r.field(t, prcb, "InterruptCount"),
                    r.field(t, prcb, "DpcTime"), r.field(t, prcb, "InterruptTime"),
                    r.field(t, prcb, "KernelTime"), r.field(t, prcb, "UserTime"))


def render_prcb(p: PrcbInfo) -> list[str]:
    return [f"PRCB for Processor {p.processor} at {fmt.hex16(p.address)}:",
            f"Current IRQL -- {p.irql}",
            f"Threads--  Current {fmt.hex16(p.current)} Next {fmt.hex16(p.next)} "
            f"Idle {fmt.hex16(p.idle)}",
            f"Processor Index {p.index} Number ({p.group}, {p.group_index}) "
            f"GroupSetMember {p.group_set_member:x}",
            f"Interrupt Count -- {p.interrupt_count:08x}",
            f"Times -- Dpc    {p.dpc_time:08x} Interrupt {p.interrupt_time:08x} ",
            f"         Kernel {p.kernel_time:08x} User      {p.user_time:08x}"]


@command("!prcb", syntax="!prcb [processor]",
         help="Show a processor's KPRCB summary (default: the current processor).")
def prcb_cmd(s, args: str) -> Result:
    p = read_prcb(s, processor_arg(s, args))
    return Result(render_prcb(p), asdict(p))


# -- !irql ---------------------------------------------------------------------------------

@command("!irql", syntax="!irql [processor]",
         help="Show the IRQL a processor was at when the debugger stopped it "
              "(KPRCB.DebuggerSavedIRQL).")
def irql_cmd(s, args: str) -> Result:
    n = processor_arg(s, args)
    irql = s.reader.field("_KPRCB", prcb_of(s, n), "DebuggerSavedIRQL")
    return Result([f"Debugger saved IRQL for processor 0x{n:x} -- {irql_name(irql)}"],
                  {"processor": n, "irql": irql, "name": IRQL_NAMES.get(irql)})


# -- !cpuinfo ------------------------------------------------------------------------------

@dataclass
class CpuInfo:
    processor: int
    family: int
    model: int
    stepping: int
    mhz: int
    vendor: str
    update_signature: int
    features: int


def read_cpuinfo(s, n: int) -> CpuInfo:
    r = s.reader
    prcb = prcb_of(s, n)
    t = "_KPRCB"
    vendor = r.ascii_array(r.field_addr(t, prcb, "VendorString"), 13)
    signature = r.field(t, prcb, "UpdateSignature")
    return CpuInfo(n, r.field(t, prcb, "CpuType"), r.field(t, prcb, "CpuModel"),
                   r.field(t, prcb, "CpuStepping"), r.field(t, prcb, "MHz"), vendor,
                   signature, r.field(t, prcb, "FeatureBits"))


def render_cpuinfo(rows: list[CpuInfo]) -> list[str]:
    out = ["CP F/M/S Manufacturer  MHz Update Signature Features "]
    for c in rows:
        out.append(f"{c.processor:2} {c.family},{c.model},{c.stepping} {c.vendor:<12}{c.mhz:5} "
                   f"{c.update_signature:016x} {c.features & 0xFFFFFFFF:08x} ")
    return out


@command("!cpuinfo", syntax="!cpuinfo [processor]",
         help="Show each processor's type, model, stepping, vendor, speed and feature bits, "
              "from its KPRCB.")
def cpuinfo_cmd(s, args: str) -> Result:
    numbers = [s.evaluate(args.strip())] if args.strip() else range(processor_count(s))
    rows = [read_cpuinfo(s, n) for n in numbers]
    return Result(render_cpuinfo(rows), [asdict(c) for c in rows])
