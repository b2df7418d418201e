"""`lm`: the loaded-module list, as walked from nt!PsLoadedModuleList."""

from __future__ import annotations

import fnmatch
import time

from commands import fmt
from commands.registry import Result, command


def _status(m) -> tuple[str, str]:
    if m.symbols is None:
        return "(no symbols)", ""
    return ("(private pdb symbols)" if m.symbols.private else "(pdb symbols)"), m.symbols.pdb


def _timestamp(ts: int) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(ts)) + f" ({ts:08X})"


@command("lm", syntax="lm [v] [m pattern]",
         help="List loaded modules (v: verbose; m: name pattern).")
def lm_cmd(s, args: str) -> Result:
    words = args.split()
    verbose, pattern = False, None
    i = 0
    while i < len(words):
        w = words[i].lower()
        if pattern is None and w.startswith("m") and len(w) > 1 and set(w) <= set("vmkul"):
            verbose |= "v" in w
            pattern = words[i + 1] if i + 1 < len(words) else "*"
            i += 2
            continue
        if set(w) <= set("vmkuld"):
            verbose |= "v" in w
            if "m" in w:
                pattern = words[i + 1] if i + 1 < len(words) else "*"
                i += 2
                continue
        i += 1
    mods = s.symbols.modules()
    if pattern is not None:
        mods = [m for m in mods if fnmatch.fnmatch(m.name.lower(), pattern.lower())]
    lines = []
    if pattern is not None:
        lines.append("Browse full module list")
    lines.append("start             end                 module name")
    rows = []
    for m in mods:
        status, pdb = _status(m)
        name = m.name.ljust(8) + "   "
        line = f"{fmt.addr(m.base)} {fmt.addr(m.end)}   {name}{status:<22} {pdb}".rstrip()
        lines.append(line + (" " if not pdb else ""))
        rows.append({"name": m.name, "start": m.base, "end": m.end, "image": m.image,
                     "symbols": status, "pdb": pdb})
        if verbose:
            if m.symbols is not None:
                lines.append(f"    Loaded symbol image file: {m.image}")
            lines.append(f"    Image path: {m.path}")
            lines.append(f"    Image name: {m.image}")
            lines.append(f"    Timestamp:        {_timestamp(m.timestamp)}")
            lines.append(f"    CheckSum:         {m.checksum:08X}")
            lines.append(f"    ImageSize:        {m.size:08X}")
    return Result(lines, rows)
