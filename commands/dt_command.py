"""`dt` as a command: which word is the type, the address and the fields, and which
display (a type, a global, a list walk, an array, a list of matching type names).

The rendering itself is commands/dt.py; the option letters are commands/dt_options.py.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from commands.dt import (
    UnknownType,
    render_array,
    render_dt,
    render_list_entry_walk,
    type_header,
)
from commands.dt_options import DtLine, DtOptions, Word, parse_dt_line
from commands.errors import KdError
from commands.registry import Result

# The module names the kernel's types are found under.
_NT_NAMES = ("nt", "ntkrnlmp", "ntoskrnl")
# Words that are certainly addresses: numbers, registers and pseudo-registers, and
# expressions with operators or parentheses.
_NUMBER = re.compile(r"(0[xX])?[0-9a-fA-F`]+|0[nN][0-9]+|0[yY][01]+")
_OPERATORS = set("+-()@$")


@dataclass
class _Parts:
    name: Word | None = None
    address: int | None = None
    fields: list[Word] = field(default_factory=list)


def _address_like(text: str) -> bool:
    return bool(_NUMBER.fullmatch(text)) or any(c in _OPERATORS for c in text)


def _wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def _split_module(name: str) -> tuple[str | None, str]:
    if "!" in name:
        module, rest = name.split("!", 1)
        return module, rest
    return None, name


def _type_of(s: Any, name: str) -> Any:
    """The type a name stands for (`nt!_KDPC`, `_kdpc`), or None."""
    module, bare = _split_module(name)
    if module is not None and module.lower() not in _NT_NAMES:
        return None
    if not bare or _wildcard(bare):
        return None
    return s.target.types.get(bare)


def _is_field(s: Any, type_word: Word | None, text: str) -> bool:
    if type_word is None:
        return False
    t = _type_of(s, type_word.text)
    if t is None or t.kind == "enum":
        return False
    first = text.split(".", 1)[0].lower()
    if _wildcard(first):
        return any(fnmatch.fnmatchcase(f.name.lower(), first) for f in t.fields)
    return t.field(first) is not None


def _classify(s: Any, line: DtLine) -> _Parts:
    """kd's rule: the name is the first word that is not a number (or one marked -n); the
    address the first number-like word that is not a field of the type; the rest are
    fields."""
    parts = _Parts()
    for word in line.words:
        text = word.text
        if parts.name is None and (word.name or word.prefix or _wildcard(text)
                                   or not _address_like(text)):
            parts.name = word
        elif (parts.address is None and not word.name and not _is_field(s, parts.name, text)
              and (_address_like(text) or parts.name is not None and not parts.fields
                   and _evaluates(s, text))):
            parts.address = s.evaluate(text)
        elif parts.name is None:
            parts.name = word
        else:
            parts.fields.append(word)
    return parts


def _evaluates(s: Any, text: str) -> bool:
    """A symbol used as an address (`dt nt!_LIST_ENTRY nt!PsActiveProcessHead`)."""
    if "!" not in text:
        return False
    try:
        s.evaluate(text)
    except KdError:
        return False
    return True


def _global(s: Any, name: str) -> tuple[int, str] | None:
    """A data symbol's address and its type name ("" when the symbols give none)."""
    module, bare = _split_module(name)
    for m in s.symbols.modules():
        if m.symbols is None or (module is not None and m.name.lower() != module.lower()):
            continue
        for d in m.symbols.data:
            if d.name.lower() == bare.lower():
                return m.base + d.rva, d.type
    return None


# -- listing type names: `dt nt!_KTHR*`, `dt -v nt!*Dpc*` -------------------------------

def _enumerate(s: Any, pattern: str, opts: DtOptions) -> list[str]:
    module, bare = _split_module(pattern)
    shown_module = "nt" if module is None or module.lower() in _NT_NAMES else module
    low = bare.lower()
    types = s.target.types
    matches = [types.get(n) for n in types.names() if fnmatch.fnmatchcase(n.lower(), low)]
    if opts.size is not None:
        matches = [t for t in matches if t.size == opts.size]
    globals_ = []
    for m in s.symbols.modules():
        if m.symbols is None or (module is not None and m.name.lower() != module.lower()):
            continue
        for d in m.symbols.data:
            if not fnmatch.fnmatchcase(d.name.lower(), low):
                continue
            if opts.size is not None and d.size != opts.size:
                continue
            if d.type or opts.verbose:  # -v lists symbols without type information too
                globals_.append((m.base + d.rva, d.size, f"{m.name}!{d.name}"))
    out: list[str] = []
    if opts.verbose:
        size_note = "" if opts.size is None else f", Size = 0x{opts.size:x}"
        out.append(f"Enumerating symbols matching {pattern}{size_note}")
        out.append("Address   Size Symbol")
        for address, size, name in globals_:
            out.append(f"{_backtick(address)}   {size:03x} {name}")
        for t in matches:
            out.append(f"{'':11}{t.size:03x} {shown_module}!{t.name}")
        return out
    for address, _size, name in globals_:
        out.append(f"{_backtick(address)}  {name}")
    for t in matches:
        out.append(f"{'':10}{shown_module}!{t.name}")
    return out


def _backtick(value: int) -> str:
    return f"{value >> 32:08x}`{value & 0xFFFFFFFF:08x}"


# -- the command ----------------------------------------------------------------------

def run_dt(s: Any, args: str) -> Result:
    line = parse_dt_line(args)
    opts = line.options
    parts = _classify(s, line)
    if parts.name is None:
        if parts.address is not None:
            raise KdError(f"Symbol not found at address {parts.address:016x}.")
        raise KdError("Invalid type name")
    name = parts.name.text
    data: dict[str, Any] = {"type": name, "address": parts.address,
                            "fields": [w.text for w in parts.fields]}
    if parts.name.prefix and _type_of(s, name) is None and not _wildcard(name):
        listing = _enumerate(s, name + "*", DtOptions(size=opts.size))
        if not listing:
            raise KdError(f"Symbol {name} not found.")
        first = listing[0].split()[-1]
        name = first
        return _display(s, name, parts, opts, data, listing)
    if _wildcard(name) and parts.address is None:
        listing = _enumerate(s, name, opts)
        if not listing:
            raise KdError(f"Symbol {name} not found.")
        return Result(listing, {**data, "matches": [ln.split()[-1] for ln in listing
                                                    if "!" in ln]})
    return _display(s, name, parts, opts, data, [])


def _display(s: Any, name: str, parts: _Parts, opts: DtOptions, data: dict[str, Any],
             before: list[str]) -> Result:
    t = _type_of(s, name)
    address = parts.address
    header: bool | None = None
    if t is None:
        found = _global(s, name) if not _wildcard(name) else None
        gtype = s.target.types.get(found[1]) if found is not None and found[1] else None
        if gtype is None:
            raise KdError(f"Symbol {name} not found.")
        # A global: its type at its address (kd prints no type-name line for it).
        t, header = gtype, False
        if address is None:
            address = found[0]
        name = f"nt!{t.name}"
    fields = [_field_text(w) for w in parts.fields]
    arrays = {w.text.rstrip("*.").lower(): w.array for w in parts.fields
              if w.array is not None}
    if opts.physical:
        read = s.target.read_physical
    else:
        read = s.target.read_virtual
    try:
        if opts.list_field is not None:
            if address is None:
                raise KdError("Syntax error at '-l'")
            lines = render_list_entry_walk(s.target.types, name, address, read, s.symbols,
                                           opts.list_field, fields, opts.recurse,
                                           opts=opts, arrays=arrays)
        elif parts.name is not None and parts.name.array is not None and address is not None:
            count = parts.name.array or 1
            lines = render_array(s.target.types, name, address, count, read, s.symbols,
                                 fields, opts.recurse, opts=opts, arrays=arrays)
        else:
            lines = render_dt(s.target.types, name, address, read, s.symbols, fields,
                              opts.recurse, header=header, opts=opts,
                              deref=s.target.read_virtual, arrays=arrays)
    except UnknownType as exc:
        raise KdError(str(exc)) from None
    return Result(before + lines, {**data, "resolved": t.name, "size": t.size,
                                   "header": type_header(t)})


def _field_text(word: Word) -> str:
    """-y makes a field name a prefix, as a trailing `*` does."""
    text = word.text
    if word.prefix and not text.endswith(("*", ".")):
        return text + "*"
    return text
