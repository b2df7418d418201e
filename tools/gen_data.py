"""Regenerate the committed data files from the reference facts.

Usage: python tools/gen_data.py FACTS_DIR

FACTS_DIR holds layouts-win10-x64.json, bugcheck-codes.tsv, bugcheck-subcodes.tsv,
ntstatus.tsv, idt-x64.tsv and irp-major-codes.tsv.  The outputs are committed; nothing
at run time reads FACTS_DIR.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYOUTS_OUT = ROOT / "machine" / "types" / "data" / "layouts-win10-19045-x64.json"
BUGCHECKS_OUT = ROOT / "commands" / "data" / "bugcheck-codes.tsv"
SUBCODES_OUT = ROOT / "commands" / "data" / "bugcheck-subcodes.tsv"
NTSTATUS_OUT = ROOT / "commands" / "data" / "ntstatus.tsv"
IDT_OUT = ROOT / "machine" / "ke" / "data" / "idt-x64.tsv"
DEFINES_OUT = ROOT / "machine" / "drvlang" / "data" / "defines.tsv"


def compact_field(f: dict) -> list:
    """A field as [name, offset, size, kind, type, extra]; extra depends on kind."""
    kind = f["kind"]
    extra: object = None
    if kind == "bitfield":
        extra = [f["bit_position"], f["bit_length"], f["storage_type"]]
    elif kind == "array":
        extra = [f["count"], f["element"], f["element_size"]]
    elif kind in ("struct", "union") and "members" in f:
        extra = [compact_field(m) for m in f["members"]]
    row = [f["name"], f["offset"], f["size"], kind, f["type"]]
    if extra is not None:
        row.append(extra)
    return row


def gen_layouts(facts: Path) -> None:
    src = json.loads((facts / "layouts-win10-x64.json").read_text())
    out = {
        "build": src["build"]["buildnumber"],
        "structs": {
            name: [s["kind"], s["size"], [compact_field(f) for f in s["fields"]]]
            for name, s in sorted(src["structs"].items())
        },
        "enums": {
            name: [e["size"], [[v["name"], v["value"]] for v in e["values"]]]
            for name, e in sorted(src["enums"].items())
        },
    }
    LAYOUTS_OUT.write_text(json.dumps(out, separators=(",", ":"), sort_keys=False) + "\n")


def copy_tsv(src: Path, dst: Path, keep: list[str]) -> None:
    """Copy a TSV without its comment header, keeping the named columns."""
    lines = [ln for ln in src.read_text().splitlines() if ln and not ln.startswith("#")]
    header = lines[0].split("\t")
    idx = [header.index(k) for k in keep]
    rows = ["\t".join(keep)]
    for ln in lines[1:]:
        # The facts point at their companion file; the debugger says "depends on P1".
        cols = ln.replace(" (see bugcheck-subcodes.tsv)", "").split("\t")
        cols += [""] * (len(header) - len(cols))
        rows.append("\t".join(cols[i] for i in idx))
    dst.write_text("\n".join(rows) + "\n")


def gen_idt(facts: Path) -> None:
    """vector, handler routine (nt), IRQL or -: the gates the machine installs."""
    lines = [ln for ln in (facts / "idt-x64.tsv").read_text().splitlines()
             if ln and not ln.startswith("#")]
    header = lines[0].split("\t")
    rows = ["vector\thandler\tirql"]
    for ln in lines[1:]:
        cols = dict(zip(header, ln.split("\t"), strict=False))
        vector = cols["vector"]
        if "-" in vector:
            continue  # a range reserved for device interrupts
        v = int(vector, 16)
        handler = cols["handler"].split(" ", 1)[0].removeprefix("nt!")
        irql = cols["irql"].split(" ", 1)[0]
        rows.append(f"{v:#04x}\t{handler}\t{irql}")
    IDT_OUT.parent.mkdir(parents=True, exist_ok=True)
    IDT_OUT.write_text("\n".join(rows) + "\n")


def gen_defines(facts: Path) -> None:
    """value, name: the NTSTATUS and IRP_MJ_* names the driver language knows, as a
    driver's headers (ntstatus.h, wdm.h) define them."""
    rows = ["value\tname"]
    for src, value_col in (("ntstatus.tsv", "value"), ("irp-major-codes.tsv", "code")):
        lines = [ln for ln in (facts / src).read_text().splitlines()
                 if ln and not ln.startswith("#")]
        header = lines[0].split("\t")
        for ln in lines[1:]:
            cols = dict(zip(header, ln.split("\t"), strict=False))
            rows.append(f"{int(cols[value_col], 16):#x}\t{cols['name']}")
    DEFINES_OUT.parent.mkdir(parents=True, exist_ok=True)
    DEFINES_OUT.write_text("\n".join(rows) + "\n")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    facts = Path(argv[1])
    gen_layouts(facts)
    copy_tsv(facts / "bugcheck-codes.tsv", BUGCHECKS_OUT,
             ["code", "name", "param1", "param2", "param3", "param4", "summary"])
    copy_tsv(facts / "bugcheck-subcodes.tsv", SUBCODES_OUT,
             ["code", "name", "param1_value", "param2", "param3", "param4", "description"])
    copy_tsv(facts / "ntstatus.tsv", NTSTATUS_OUT, ["value", "name", "message"])
    gen_idt(facts)
    gen_defines(facts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
