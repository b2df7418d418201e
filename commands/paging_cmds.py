"""Page tables and physical memory: `!pte`, `!vtop`, `!db` `!dw` `!dd` `!dq` `!dc`.

The walk reads the tables physically from the directory table base (CR3 of the current
context, or the DirBase given to `!vtop`).  The target has no PTE self-map, so `!pte`
keeps kd's layout but its `PXE at` ... `PTE at` columns give the *physical* addresses
of the entries (kd shows their self-map virtual addresses); they can be read with `!dq`.
"""

from __future__ import annotations

from commands.cmdline import parse_range
from commands.errors import KdExtraCharacterError, KdMissingExpressionError
from commands.fmt import addr
from commands.limits import MAX_OUTPUT_LINES, stopped_notice
from commands.pagetable import PFN_MASK, Entry, Walk, walk
from commands.registry import Result, command
from commands.target import MemoryAccessError

COLUMN = 27  # width of one !pte column
DETAIL_INDENT = 81  # `not valid` details sit under the PTE column
VA_INDENT = 43
PROTOTYPE = 1 << 10
TRANSITION = 1 << 11
PROTECTIONS = {0: "NoAccess", 1: "ReadOnly", 2: "Execute", 3: "ExecuteRead", 4: "ReadWrite",
               5: "WriteCopy", 6: "ExecuteReadWrite", 7: "ExecuteWriteCopy"}
NOT_AVAILABLE = 0xD0000147  # HRESULT_FROM_NT(STATUS_NO_PAGEFILE)
IN_PAGE_FILE = 0x10000114  # HRESULT_FROM_NT(STATUS_PAGE_FAULT_PAGING_FILE)
VTOP_NAMES = {"PXE": "PML4E", "PPE": "PDPE", "PDE": "PDE", "PTE": "PTE"}


def _dtb(s) -> int:
    return s.registers().get("cr3", 0) & PFN_MASK


def _one_address(s, args: str) -> int:
    text = args.strip()
    if not text:
        raise KdMissingExpressionError("")
    return s.evaluate(text)


# ------------------------------------------------------------------------------- !pte


def flags(entry: Entry) -> str:
    """kd's 11 attribute letters of a valid entry: C G L D A N T K/U W/R E V."""
    v = entry.value or 0
    return "".join((
        "C" if v & (1 << 9) else "-",
        "G" if v & (1 << 8) and entry.level != "PXE" else "-",
        "L" if entry.large else "-",
        "D" if v & (1 << 6) else "-",
        "A" if v & (1 << 5) else "-",
        "N" if v & (1 << 4) else "-",
        "T" if v & (1 << 3) else "-",
        "U" if v & (1 << 2) else "K",
        "W" if v & (1 << 1) else "R",
        "-" if v >> 63 else "E",
        "V",
    ))


def software_pte(value: int) -> list[str]:
    """What a non-valid PTE says (Windows 10 _MMPTE_SOFTWARE / _MMPTE_TRANSITION)."""
    if value == 0:
        return []
    protect = (value >> 5) & 0x1F
    prot = f"Protect: {protect:x} - {PROTECTIONS.get(protect & 7, 'Unknown')}"
    if value & PROTOTYPE:
        return [f"Proto: {value >> 16:x}", prot]
    if value & TRANSITION:
        return [f"Transition: {(value & PFN_MASK) >> 12:x}", prot]
    page_file_low = (value >> 12) & 0xF
    offset = value >> 32
    if offset or page_file_low:
        return [f"PageFile:  {page_file_low:x}", f"Offset: {offset:x}", prot]
    return ["DemandZero", prot]


def pte_lines(w: Walk) -> list[str]:
    entries = w.entries
    lines = [" " * VA_INDENT + f"VA {w.va:016x}"]
    at = [f"{e.level} at {e.address:016X}" for e in entries]
    lines.append("".join(a.ljust(COLUMN) for a in at[:-1]) + at[-1])
    contains = [f"contains {e.value:016X}" if e.value is not None else "contains ????????????????"
                for e in entries]
    lines.append("".join(c.ljust(COLUMN) for c in contains[:-1]) + contains[-1])
    pfns = [f"pfn {e.pfn:<10x}{flags(e)}" for e in entries if e.valid]
    last = entries[-1]
    if last.valid and last.large:
        big = w.physical >> 12 if w.physical is not None else last.pfn
        lines.append("".join(p.ljust(COLUMN) for p in pfns) + f"LARGE PAGE pfn {big:x}")
    elif last.valid:
        lines.append("".join(p.ljust(COLUMN) for p in pfns[:-1]) + pfns[-1])
    elif last.level != "PTE" or last.value is None:
        # An upper level is not valid: kd repeats its contents in the pfn row.
        lines.append("".join(p.ljust(COLUMN) for p in pfns) + contains[-1])
        lines.append("not valid")
    else:
        lines.append("".join(p.ljust(COLUMN) for p in pfns) + "not valid")
        lines += [" " * DETAIL_INDENT + d for d in software_pte(last.value or 0)]
    return lines


def _walk_data(w: Walk) -> dict:
    return {"va": w.va, "dtb": w.dtb, "physical": w.physical, "entry_addresses": "physical",
            "entries": [{"level": e.level, "address": e.address, "value": e.value,
                         "valid": e.valid, "pfn": e.pfn if e.valid else None}
                        for e in w.entries]}


@command("!pte", syntax="!pte address",
         help="Show the page-table entries (PXE, PPE, PDE, PTE) that map an address.")
def pte_cmd(s, args: str) -> Result:
    va = _one_address(s, args)
    w = walk(s.target.read_physical, _dtb(s), va)
    data = _walk_data(w)
    if w.entries[-1].level == "PTE" and not w.entries[-1].valid:
        data["software"] = software_pte(w.entries[-1].value or 0)
    return Result(pte_lines(w), data)


# ------------------------------------------------------------------------------ !vtop


def vtop_lines(w: Walk) -> list[str]:
    lines = [f"Amd64VtoP: Virt {w.va:016x}, pagedir {w.dtb:016x}"]
    for e in w.entries:
        name = VTOP_NAMES[e.level]
        lines.append(f"Amd64VtoP: {name} {e.address:016x}")
        if e.value is None:
            lines.append(f"Amd64VtoP: {name} read error 0x{NOT_AVAILABLE:X}")
            break
    last = w.entries[-1]
    fail = f"Virtual address {w.va:x} translation fails, error 0x{{:X}}."
    if w.physical is not None:
        label = "Large page mapped phys" if last.large else "Mapped phys"
        lines.append(f"Amd64VtoP: {label} {w.physical:016x}")
        lines.append(f"Virtual address {w.va:x} translates to physical address "
                     f"{w.physical:x}.")
        return lines
    if last.value is None:
        return lines + [fail.format(NOT_AVAILABLE)]
    value = last.value
    if last.level != "PTE":
        # kd names the next level: a zero PML4E means no PDPT, and so on.
        lines.append(f"Amd64VtoP: zero {VTOP_NAMES[last.level]}" if value == 0 else
                     f"Amd64VtoP: {VTOP_NAMES[last.level]} not present")
        return lines + [fail.format(NOT_AVAILABLE)]
    if value & TRANSITION and not value & PROTOTYPE:
        phys = (value & PFN_MASK) | (w.va & 0xFFF)
        lines.append(f"Amd64VtoP: Mapped phys {phys:016x}")
        lines.append(f"Virtual address {w.va:x} translates to physical address {phys:x}.")
        return lines
    if value == 0:
        lines.append("Amd64VtoP: zero PTE")
        return lines + [fail.format(NOT_AVAILABLE)]
    if value & PROTOTYPE:
        lines.append("Amd64VtoP: prototype PTE")
        return lines + [fail.format(NOT_AVAILABLE)]
    offset = ((value >> 32) << 12) + (w.va & 0xFFF)
    lines.append(f"Amd64VtoP: PTE not present, pagefile {(value >> 12) & 0xF}:{offset:016x}")
    return lines + [fail.format(IN_PAGE_FILE)]


@command("!vtop", syntax="!vtop DirBase|PFN|0 address",
         help="Translate a virtual address through a directory table base (0: current).")
def vtop_cmd(s, args: str) -> Result:
    if not args.strip():
        raise KdMissingExpressionError("")
    base, rest = s.take(args)
    if not rest.strip():
        raise KdMissingExpressionError("")
    va = s.evaluate(rest.strip())
    if base == 0:
        dtb = _dtb(s)
    elif base & 0xFFF:
        dtb = (base << 12) & PFN_MASK  # a page frame number
    else:
        dtb = base & PFN_MASK
    w = walk(s.target.read_physical, dtb, va)
    return Result(vtop_lines(w), _walk_data(w))


# -------------------------------------------------------------------- physical dumps

PHYS_UNIT = {"!db": 1, "!dw": 2, "!dd": 4, "!dq": 8, "!dc": 4}
ROW = 16
DEFAULT_BYTES = 128


def _phys_row(kind: str, address: int, data: bytes) -> str:
    unit = PHYS_UNIT[kind]
    where = f"#{address:8x}"
    if kind == "!db":
        parts = [("-" if i == 8 else " " if i else "") + f"{b:02x}" for i, b in enumerate(data)]
        text = "".join(parts)
        asc = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)
        return f"{where} {text:<{ROW * 3 - 1}} {asc}"
    units = [int.from_bytes(data[i:i + unit], "little") for i in range(0, len(data), unit)]
    if unit == 8:
        cells = [addr(u) for u in units]
    else:
        cells = [f"{u:0{unit * 2}x}" for u in units]
    text = " ".join(cells)
    if kind == "!dc":
        asc = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)
        text = f"{text:<{(ROW // unit) * (unit * 2 + 1) - 1}} {asc}"
    return f"{where} {text}"


def _physical_dump(kind: str):
    def handler(s, args: str) -> Result:
        unit = PHYS_UNIT[kind]
        if not args.strip():
            start, count = s.next_dump.get(kind, 0), None
        else:
            start, count, rest = parse_range(args, s, None, unit, s.radix)
            if rest.strip():
                raise KdExtraCharacterError(args, len(args) - len(rest.lstrip()))
        total = (DEFAULT_BYTES if count is None else count * unit)
        total = min(total, MAX_OUTPUT_LINES * ROW)
        lines: list[str] = []
        rows: list[dict] = []
        pos = start
        end = start + total
        while pos < end:
            n = min(ROW, end - pos)
            try:
                data = s.target.read_physical(pos, n)
            except MemoryAccessError:
                lines.append(f"Physical memory read at {pos:x} failed")
                break
            lines.append(_phys_row(kind, pos, data))
            rows.append({"address": pos, "bytes": data.hex()})
            pos += n
        if count is not None and count * unit > total:
            lines.append(stopped_notice(len(lines)))
        s.next_dump[kind] = pos
        return Result(lines, {"kind": kind, "address": start, "rows": rows, "next": pos})

    return handler


for _kind in PHYS_UNIT:
    command(_kind, syntax=f"{_kind} physical-address [L count | end]",
            help=f"Display physical memory (as {_kind[1:]} does virtual memory).")(
        _physical_dump(_kind))
