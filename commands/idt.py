"""!idt: a processor's interrupt descriptor table (-a: every processor's), read from
KPCR.IdtBase as 256 `_KIDTENTRY64` gates; device vectors name their ISRs through the
`_KINTERRUPT` objects in KPRCB.InterruptObject[vector] (shared vectors chained by
InterruptListEntry)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from commands import fmt
from commands.errors import KdError
from commands.kernel_state import pcr_of, prcb_of
from commands.registry import Result, command
from commands.target import MemoryAccessError

IDT_ENTRIES = 256
MAX_CHAIN = 64
ISR_STUB = "KiIsrThunk"  # the per-vector stubs of vectors with no interrupt object
CHAIN_PAD = "\t" + " " * 17  # under the handler column


@dataclass
class Interrupt:
    address: int
    isr: int
    symbol: str


@dataclass
class IdtRow:
    vector: int
    handler: int
    symbol: str
    ist_stack: int | None = None
    interrupts: list[Interrupt] = field(default_factory=list)


def _gate(s, entry: int) -> tuple[bool, int, int]:
    """(present, handler address, IST index) of one `_KIDTENTRY64`."""
    r = s.reader
    t = "_KIDTENTRY64"
    handler = (r.field(t, entry, "OffsetLow") | r.field(t, entry, "OffsetMiddle") << 16
               | r.field(t, entry, "OffsetHigh") << 32)
    return bool(r.field(t, entry, "Present")), handler, r.field(t, entry, "IstIndex")


def _chain(s, first: int) -> list[int]:
    r = s.reader
    link = r.offset("_KINTERRUPT", "InterruptListEntry")
    objects = [first]
    entry = r.u64(first + link)
    while entry and entry != first + link and len(objects) < MAX_CHAIN:
        objects.append(entry - link)
        entry = r.u64(entry)
    return objects


def read_idt(s, n: int, vectors: range | list[int], everything: bool) -> tuple[int, list[IdtRow]]:
    r = s.reader
    prcb = prcb_of(s, n)
    pcr = pcr_of(s, prcb)
    idt = r.field("_KPCR", pcr, "IdtBase")
    tss = r.field("_KPCR", pcr, "TssBase")
    size = s.target.types.sizeof("_KIDTENTRY64")
    rows: list[IdtRow] = []
    for v in vectors:
        present, handler, ist = _gate(s, idt + v * size)
        if not present:
            continue
        first = r.field("_KPRCB", prcb, f"InterruptObject[{v}]")
        symbol = s.symbols.name_for(handler) or f"0x{handler:016x}"
        if not first and not everything and symbol.split("!")[-1].startswith(ISR_STUB):
            continue  # a device vector's stub with nothing connected: kd shows it with -a
        row = IdtRow(v, handler, symbol)
        if ist and tss:
            try:
                row.ist_stack = r.u64(tss + r.offset("_KTSS64", "Ist") + 8 * ist)
            except MemoryAccessError:
                row.ist_stack = None
        if first:
            for k in _chain(s, first):
                isr = r.field("_KINTERRUPT", k, "ServiceRoutine")
                row.interrupts.append(Interrupt(k, isr, s.symbols.name_for(isr)
                                                or f"0x{isr:016x}"))
        rows.append(row)
    return idt, rows


def render_idt(idt: int, rows: list[IdtRow]) -> list[str]:
    out = ["", f"Dumping IDT: {fmt.hex16(idt)}", ""]
    for row in rows:
        head = f"{row.vector:02x}:\t{fmt.hex16(row.handler)} "
        if not row.interrupts:
            line = head + row.symbol
            if row.ist_stack is not None:
                line += f"\tStack = 0x{row.ist_stack:016X}"
            out.append(line)
            continue
        for i, k in enumerate(row.interrupts):
            out.append((head if i == 0 else CHAIN_PAD) +
                       f"{k.symbol} (KINTERRUPT {fmt.hex16(k.address)})")
            out.append("")
    return out


@command("!idt", syntax="!idt [-a] [vector]",
         help="Show the current processor's interrupt descriptor table: each vector's "
              "handler, IST stack and connected interrupt objects.  -a shows the table "
              "of every processor in turn, unused device vectors included; a vector "
              "shows that one entry of the current processor's table.")
def idt_cmd(s, args: str) -> Result:
    words = args.split()
    every_processor = "-a" in (w.lower() for w in words)
    rest = " ".join(w for w in words if w.lower() != "-a")
    if rest:
        vector = s.evaluate(rest)
        if not 0 <= vector < IDT_ENTRIES:
            raise KdError(f"Invalid vector {vector:x}")
        idt, rows = read_idt(s, s.processor, [vector], True)
        return Result(render_idt(idt, rows), {"idt": idt, "vectors": [asdict(r) for r in rows]})
    processors = range(s.target.processor_count) if every_processor else [s.processor]
    lines: list[str] = []
    tables = []
    for n in processors:
        idt, rows = read_idt(s, n, range(IDT_ENTRIES), every_processor)
        lines += render_idt(idt, rows)
        tables.append({"processor": n, "idt": idt, "vectors": [asdict(r) for r in rows]})
    if not every_processor:
        return Result(lines, tables[0] | {"processor": s.processor})
    return Result(lines, {"processors": tables})
