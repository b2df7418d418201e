"""`x` (examine symbols) and `ln` (list nearest symbols), from the symbol files of the
modules on the loaded-module list.

`x [options] module!pattern`: one line per matching symbol, `fffff805`54602a00
nt!KeBugCheckEx (KeBugCheckEx)` for a public function, ` = <no type information>` for
untyped data; patterns use kd's wildcards (`*`, `?`, `[a-z]`, `#`), case-insensitive, on
both the module and the symbol.  `ln address`: the symbols on either side of an address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from commands.errors import KdSyntaxError
from commands.fmt import addr
from commands.registry import Result, command
from commands.symbols import Module
from commands.target import MemoryAccessError

KIND_FUNCTION = "func"
KIND_DATA = "global"


@dataclass(frozen=True)
class SymbolRow:
    module: Module
    name: str
    address: int
    size: int
    kind: str  # KIND_FUNCTION or KIND_DATA
    type: str = ""  # data type name from the symbol file (`_LIST_ENTRY`), if any

    @property
    def full_name(self) -> str:
        return f"{self.module.name}!{self.name}"


def module_symbols(m: Module) -> list[SymbolRow]:
    """A module's symbols in the symbol file's enumeration order: functions, then data."""
    if m.symbols is None:
        return []
    rows = [SymbolRow(m, f.name, m.base + f.rva, f.size, KIND_FUNCTION)
            for f in m.symbols.functions]
    rows += [SymbolRow(m, d.name, m.base + d.rva, d.size, KIND_DATA, d.type)
             for d in m.symbols.data]
    return rows


# -- kd's string wildcards -------------------------------------------------------------------

def wildcard_regex(pattern: str) -> re.Pattern[str]:
    """kd's string wildcard syntax: `*` any run, `?` one character, `#` any number of the
    preceding character, `[a-z]` a set; case-insensitive.  A single leading underscore
    stands for any number of leading underscores (as kd matches symbols)."""
    out = []
    i = 0
    if pattern.startswith("_") and not pattern.startswith("__"):
        out.append("_*")
        i = 1
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "#" and out:
            out.append("*")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end].replace("\\", "\\\\")
                out.append(f"[{body}]" if body else re.escape("[]"))
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.compile("".join(out) + r"\Z", re.IGNORECASE | re.DOTALL)
    except re.error:
        return re.compile(re.escape(pattern) + r"\Z", re.IGNORECASE)


# -- x ----------------------------------------------------------------------------------------

@dataclass
class XOptions:
    verbose: bool = False
    types: bool = False
    form: str = ""  # "0" address only, "1" name only, "2" address and name
    sort: str = ""  # a/A address, n/N name, z/Z size (upper case: descending)
    size: int | None = None  # /s Size
    functions_size: bool = False  # /f
    data_size: bool = False  # /d
    no_space: bool = False  # /p


def _parse_x(s, args: str) -> tuple[XOptions, str]:
    opts = XOptions()
    rest = args.strip()
    while rest.startswith("/"):
        word, _, tail = rest.partition(" ")
        letters = word[1:]
        if not letters:
            raise KdSyntaxError(rest)
        for c in letters:
            if c == "v":
                opts.verbose = True
            elif c == "t":
                opts.types = True
            elif c in "012":
                opts.form = c
            elif c in "aAnNzZ":
                opts.sort = c
            elif c == "f":
                opts.functions_size = True
            elif c == "d":
                opts.data_size = True
            elif c == "p":
                opts.no_space = True
            elif c in "qD":
                pass  # quoted names and DML links: plain text here
            elif c == "s" and letters == "s":
                size_text, _, tail = tail.strip().partition(" ")
                if not size_text:
                    raise KdSyntaxError(rest)
                opts.size = s.evaluate(size_text)
            else:
                raise KdSyntaxError(rest)
        rest = tail.strip()
    return opts, rest


def _value_text(s, row: SymbolRow) -> str:
    """What kd prints after `=` for a data symbol: the decoded value when the symbol has a
    type, else `<no type information>`."""
    if not row.type:
        return "<no type information>"
    if row.type == "_LIST_ENTRY":
        try:
            flink = s.reader.u64(row.address)
            blink = s.reader.u64(row.address + 8)
        except MemoryAccessError:
            return "struct _LIST_ENTRY"
        return f"struct _LIST_ENTRY [ 0x{addr(flink)} - 0x{addr(blink)} ]"
    return f"struct {row.type}"


def _type_text(row: SymbolRow) -> str:
    if row.kind == KIND_FUNCTION:
        return "<function>"
    return f"struct {row.type}" if row.type else "<NoType>"


def _x_line(s, row: SymbolRow, opts: XOptions, private: bool) -> str:
    if opts.form == "0":
        return addr(row.address)
    if opts.form == "1":
        return row.full_name
    if opts.form == "2":
        return f"{addr(row.address)} {row.full_name}"
    if row.kind == KIND_FUNCTION:
        # public symbols carry no prototype: kd shows the undecorated name
        tail = f"{'' if opts.no_space else ' '}({row.name})"
    else:
        tail = f" = {_value_text(s, row)}"
    name = row.full_name
    if opts.types:
        name = f"{_type_text(row)} {name}"
    text = f"{addr(row.address)} {name}{tail}"
    if opts.verbose:
        source = "prv" if private else "pub"
        text = f"{source} {row.kind:<6} {addr(row.address)} {row.size:>4x} {name}{tail}"
    return text


_SORT_KEYS = {
    "a": lambda r: (r.address, r.name.lower()),
    "n": lambda r: (r.full_name.lower(), r.address),
    "z": lambda r: (r.size, r.address),
}


def find_symbols(s, pattern: str) -> list[SymbolRow]:
    """The symbols `module!pattern` names (module part a wildcard too; no `!`: every
    module), in module-list order then symbol-file order."""
    mod_pat, bang, sym_pat = pattern.rpartition("!")
    if not bang:
        mod_pat, sym_pat = "*", pattern
    mod_re = wildcard_regex(mod_pat or "*")
    sym_re = wildcard_regex(sym_pat or "*")
    rows: list[SymbolRow] = []
    for m in s.symbols.modules():
        if not (mod_re.match(m.name) or mod_re.match(m.image)):
            continue
        rows += [r for r in module_symbols(m) if sym_re.match(r.name)]
    return rows


@command("x", syntax="x [/v] [/t] [/0|/1|/2] [/a|/A|/n|/N|/z|/Z] [/s size] [/f|/d] "
         "module!pattern",
         help="Examine symbols: the symbols matching a wildcard pattern, with addresses.")
def x_cmd(s, args: str) -> Result:
    opts, pattern = _parse_x(s, args)
    if not pattern or pattern == "*":
        # `x *` lists the current scope's locals, which public symbols do not have.
        return Result([], [])
    if " " in pattern.strip():
        raise KdSyntaxError(pattern.split(None, 1)[1])
    rows = find_symbols(s, pattern)
    if opts.functions_size or opts.data_size:
        kinds = {KIND_FUNCTION} if opts.functions_size else set()
        kinds |= {KIND_DATA} if opts.data_size else set()
        rows = [r for r in rows if r.kind in kinds]
    if opts.size is not None:
        rows = [r for r in rows if r.size == opts.size]
    if opts.sort:
        rows.sort(key=_SORT_KEYS[opts.sort.lower()], reverse=opts.sort.isupper())
    lines = []
    data = []
    for r in rows:
        private = bool(r.module.symbols is not None and r.module.symbols.private)
        lines.append(_x_line(s, r, opts, private))
        data.append({"module": r.module.name, "name": r.name, "address": r.address,
                     "size": r.size, "kind": r.kind, "type": r.type})
    return Result(lines, data)


# -- ln ---------------------------------------------------------------------------------------

def _sorted_symbols(m: Module) -> list[SymbolRow]:
    return sorted(module_symbols(m), key=lambda r: (r.address, r.kind != KIND_FUNCTION))


def _exact_text(row: SymbolRow) -> str:
    if row.kind == KIND_FUNCTION:
        return f"    {row.full_name} (<no parameter info>)"
    return f"    {row.full_name} = <no type information>"


def _symbolic(row: SymbolRow | None, m: Module, address: int) -> str:
    if row is None:
        off = address - m.base
        return f"{m.name}+0x{off:x}" if off else m.name
    off = address - row.address
    return f"{row.full_name}+0x{off:x}" if off else row.full_name


@command("ln", syntax="ln [address]",
         help="List the nearest symbols below and above an address (default: the current "
              "instruction).")
def ln_cmd(s, args: str) -> Result:
    if args.strip():
        address = s.evaluate(args.strip())
    else:
        address = s.register("rip") or 0
    m = s.symbols.module_at(address)
    if m is None:
        gone = s.symbols.unloaded_at(address)
        if gone is None:
            return Result([], {"address": address, "module": None})
        # An unloaded driver's symbols are gone with it: kd names the address by the
        # image's old range, as k and u do.
        name = s.symbols.name_for(address)
        return Result([f"({addr(gone.base)})   {name}"],
                      {"address": address, "module": None, "unloaded": gone.image,
                       "below": {"name": name, "address": gone.base}, "above": None,
                       "exact": []})
    rows = _sorted_symbols(m)
    below = [r for r in rows if r.address <= address]
    above = [r for r in rows if r.address > address]
    prev = below[-1] if below else None
    start = prev.address if prev is not None else m.base
    nxt = above[0] if above else None
    near = f"({addr(start)})   {_symbolic(prev, m, address)}"
    if nxt is not None:
        near += f"   |  ({addr(nxt.address)})   {nxt.full_name}"
    lines = ["Browse module", "Set bu breakpoint", "", near]
    exact = [r for r in rows if r.address == address]
    if exact:
        lines.append("Exact matches:")
        lines += [_exact_text(r) for r in exact]
    data = {"address": address, "module": m.name,
            "below": None if prev is None else {"name": prev.full_name, "address": prev.address},
            "above": None if nxt is None else {"name": nxt.full_name, "address": nxt.address},
            "exact": [r.full_name for r in exact]}
    return Result(lines, data)


__all__ = ["find_symbols", "module_symbols", "wildcard_regex", "x_cmd", "ln_cmd"]
