"""`lm`: the loaded-module list, as walked from nt!PsLoadedModuleList.

Options as kd reads them, letters glued or apart (`lmvm nt` is `lm v m nt`): `v` verbose,
`m pattern` (module-name wildcard), `M pattern` (image-path wildcard), `a address` (the
module holding an address), `k` kernel modules only, `u` user modules only, `l` and `o`
(symbols loaded / loaded modules), `e` (symbol problems), `sm` sorted by name, `1m` names only,
`D` (DML links; plain text here).
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass

from commands import fmt
from commands.errors import KdCommandError
from commands.registry import Result, command
from commands.symbols import module_name

KERNEL_SPACE = 0xFFFF800000000000  # kernel-mode addresses start here on x64


def _status(m) -> tuple[str, str]:
    if m.symbols is None:
        return "(no symbols)", ""
    return ("(private pdb symbols)" if m.symbols.private else "(pdb symbols)"), m.symbols.pdb


def _timestamp(ts: int) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(ts)) + f" ({ts:08X})"


@dataclass
class LmOptions:
    verbose: bool = False
    name_pattern: str | None = None
    path_pattern: str | None = None
    address: int | None = None
    kernel_only: bool = False
    user_only: bool = False
    loaded_symbols_only: bool = False
    symbol_problems_only: bool = False
    sort_by_name: bool = False
    names_only: bool = False


def parse_lm_options(s, args: str) -> LmOptions:
    """Read kd's lm options; a letter kd does not know is a syntax error at the command."""
    opts = LmOptions()
    text = args.strip()
    pos = 0
    while pos < len(text):
        c = text[pos]
        if c.isspace() or c in "Do":
            pos += 1
        elif text.startswith("1m", pos):
            opts.names_only, pos = True, pos + 2
        elif text.startswith("sm", pos):
            opts.sort_by_name, pos = True, pos + 2
        elif c in "mM":
            rest = text[pos + 1:].lstrip()
            word = rest.split(None, 1)[0] if rest else "*"
            if c == "m":
                opts.name_pattern = word
            else:
                opts.path_pattern = word
            pos = len(text) - len(rest) + len(word) if rest else len(text)
        elif c == "a":
            opts.address = s.evaluate(text[pos + 1:])
            pos = len(text)
        elif c in "vkule":
            opts.verbose |= c == "v"
            opts.kernel_only |= c == "k"
            opts.user_only |= c == "u"
            opts.loaded_symbols_only |= c == "l"
            opts.symbol_problems_only |= c == "e"
            pos += 1
        else:
            raise KdCommandError(f"lm {args.strip()}", 3 + pos)
    return opts


def select_modules(s, opts: LmOptions) -> list:
    mods = list(s.symbols.modules())
    if opts.name_pattern is not None:
        pat = opts.name_pattern.lower()
        mods = [m for m in mods if fnmatch.fnmatchcase(m.name.lower(), pat)]
    if opts.path_pattern is not None:
        pat = opts.path_pattern.lower()
        mods = [m for m in mods if fnmatch.fnmatchcase(m.path.lower(), pat)
                or fnmatch.fnmatchcase(m.image.lower(), pat)]
    if opts.address is not None:
        mods = [m for m in mods if m.base <= opts.address < m.end]
    if opts.kernel_only:
        mods = [m for m in mods if m.base >= KERNEL_SPACE]
    if opts.user_only:
        mods = [m for m in mods if m.base < KERNEL_SPACE]
    if opts.loaded_symbols_only:
        mods = [m for m in mods if m.symbols is not None]
    if opts.symbol_problems_only:
        mods = [m for m in mods if m.symbols is None]
    if opts.sort_by_name:
        mods.sort(key=lambda m: m.name.lower())
    return mods


def _verbose_lines(m) -> list[str]:
    lines = []
    if m.symbols is not None:
        lines.append(f"    Loaded symbol image file: {m.image}")
    lines += [f"    Image path: {m.path}", f"    Image name: {m.image}",
              "    Browse all global symbols  functions  data",
              f"    Timestamp:        {_timestamp(m.timestamp)}",
              f"    CheckSum:         {m.checksum:08X}",
              f"    ImageSize:        {m.size:08X}"]
    return lines


def _symbols_kind(m) -> str:
    """The symbols kd loaded for a module: "private", "public" (a pdb with public
    symbols only) or "none"."""
    if m.symbols is None:
        return "none"
    return "private" if m.symbols.private else "public"


def module_data(m) -> dict:
    return {"name": m.name, "start": m.base, "end": m.end, "size": m.size, "image": m.image,
            "path": m.path, "symbols": _symbols_kind(m),
            "pdb": m.symbols.pdb if m.symbols is not None else None,
            "timestamp": m.timestamp, "checksum": m.checksum}


def unloaded_data(u) -> dict:
    return {"name": module_name(u.image), "image": u.image, "start": u.base, "end": u.end,
            "time": u.time}


@command("lm", syntax="lm [v] [k|u] [l] [sm] [1m] [m pattern] [M pattern] [a address]",
         help="List loaded modules (v: verbose; m: name pattern; a: module at an address).")
def lm_cmd(s, args: str) -> Result:
    opts = parse_lm_options(s, args)
    mods = select_modules(s, opts)
    data = {"modules": [module_data(m) for m in mods], "unloaded": []}
    if opts.names_only:
        return Result([m.name for m in mods], data)
    lines = []
    if opts.name_pattern is not None or opts.address is not None:
        lines.append("Browse full module list")
    lines.append("start             end                 module name")
    for m in mods:
        status, pdb = _status(m)
        name = m.name.ljust(8) + "   "
        line = f"{fmt.addr(m.base)} {fmt.addr(m.end)}   {name}{status:<22} {pdb}".rstrip()
        lines.append(line + (" " if not pdb else ""))
        if opts.verbose:
            lines += _verbose_lines(m)
    if opts.name_pattern is None and opts.address is None:
        gone = s.symbols.unloaded()
        if gone:
            # kd lists nt's record of unloaded drivers after the loaded ones
            lines += ["", "Unloaded modules:"]
            lines += [f"{fmt.addr(u.base)} {fmt.addr(u.end)}   {u.image}" for u in gone]
            data["unloaded"] = [unloaded_data(u) for u in gone]
    return Result(lines, data)
