"""`x` and `ln` on the default crashed machine: every line checked against the symbol files
the target gives and the module list in memory; typed data decoded from memory."""

from __future__ import annotations

import re
import struct

import pytest

from commands.fmt import addr
from tests.conftest import run

LINE = re.compile(r"^[0-9a-f]{8}`[0-9a-f]{8} (\w+)!(\w+)( \((\w+)\)| = .+)$")


def _modules(session):
    return [m for m in session.symbols.modules() if m.symbols is not None]


def _all_symbols(session):
    """(module, name, address, size, is_function) from the target's symbol files."""
    out = []
    for m in _modules(session):
        out += [(m.name, f.name, m.base + f.rva, f.size, True) for f in m.symbols.functions]
        out += [(m.name, d.name, m.base + d.rva, d.size, False) for d in m.symbols.data]
    return out


def test_x_wildcard_lists_each_matching_symbol_of_the_module(session):
    syms = _all_symbols(session)
    for line, pred in (("x nt!Ke*", lambda m, n: m == "nt" and n.lower().startswith("ke")),
                       ("x myfault!*", lambda m, n: m == "myfault"),
                       ("x hal!*", lambda m, n: m == "hal"),
                       ("x *!KeBugCheck*", lambda m, n: n.lower().startswith("kebugcheck")),
                       ("x nt!*Irql*", lambda m, n: m == "nt" and "irql" in n.lower())):
        out = run(session, line)
        want = [(m, n, a, f) for m, n, a, _s, f in syms if pred(m, n)]
        assert len(out) == len(want) > 0, line
        for text, (m, n, a, is_func) in zip(out, want, strict=True):
            match = LINE.match(text)
            assert match, text
            assert text.startswith(addr(a) + f" {m}!{n}")
            if is_func:
                assert text.endswith(f" ({n})")  # public symbol: the undecorated name
            else:
                assert " = " in text


def test_x_data_symbol_untyped_and_typed_from_memory(session):
    block = session.symbols.address_of("nt!KiProcessorBlock")
    assert run(session, "x nt!KiProcessorBlock") == [
        f"{addr(block)} nt!KiProcessorBlock = <no type information>"]
    for name in ("PsLoadedModuleList", "PsActiveProcessHead"):
        at = session.symbols.address_of(f"nt!{name}")
        flink, blink = struct.unpack("<QQ", session.target.read_virtual(at, 16))
        assert run(session, f"x nt!{name}") == [
            f"{addr(at)} nt!{name} = struct _LIST_ENTRY [ 0x{addr(flink)} - 0x{addr(blink)} ]"]


def test_x_case_insensitive_sets_and_no_match(session):
    assert run(session, "x NT!kebugcheckex") == run(session, "x nt!KeBugCheckEx")
    out = run(session, "x /1 nt!Ki[BS]*")
    assert out and all(re.match(r"nt!Ki[BSbs]", n) for n in out)
    assert "nt!KiBugCheckDispatch" in out and "nt!KiSwapThread" in out
    assert run(session, "x nt!NoSuchSymbol*") == []
    assert run(session, "x nosuchmodule!*") == []
    assert run(session, "x /k nt!*") == ["Syntax error at '/k nt!*'"]


def test_x_verbose_columns_and_short_forms(session):
    syms = {(m, n): (a, s, f) for m, n, a, s, f in _all_symbols(session)}
    out = run(session, "x /v myfault!*")
    assert len(out) == sum(1 for m, _n in syms if m == "myfault")
    for text in out:
        source, kind, address, size, name = text.split()[:5]
        a, s, is_func = syms[tuple(name.split("!"))]
        assert source == "pub" and kind == ("func" if is_func else "global")
        assert address == addr(a) and int(size, 16) == s
        # kind left-justified to 6, size right-justified to 4 (kd's columns)
        assert text.startswith(f"pub {kind:<6} {addr(a)} {s:>4x} {name}")
    two = run(session, "x /2 nt!Ke*")
    assert two == [" ".join(t.split()[:2]) for t in run(session, "x nt!Ke*")]
    assert run(session, "x /0 nt!Ke*") == [t.split()[0] for t in two]
    assert run(session, "x /1 nt!Ke*") == [t.split()[1] for t in two]


def test_x_sort_orders_and_type_column(session):
    rows = [(n, a, s) for m, n, a, s, _f in _all_symbols(session) if m == "myfault"]
    names = run(session, "x /1 /n myfault!*")
    assert names == [f"myfault!{n}" for n, _a, _s in sorted(rows, key=lambda r: r[0].lower())]
    assert run(session, "x /1 /N myfault!*") == names[::-1]
    addrs = run(session, "x /0 /a myfault!*")
    assert addrs == [addr(a) for a in sorted(a for _n, a, _s in rows)]
    assert run(session, "x /0 /A myfault!*") == addrs[::-1]
    sizes = [int(t.split()[3], 16) for t in run(session, "x /v /z myfault!*")]
    assert sizes == sorted(sizes) and sizes != sizes[::-1]
    typed = run(session, "x /t nt!PsLoadedModuleList")
    assert typed[0].split()[1:4] == ["struct", "_LIST_ENTRY", "nt!PsLoadedModuleList"]
    assert run(session, "x /t myfault!LastValue")[0].split()[1] == "<NoType>"
    assert run(session, "x /t myfault!DriverEntry")[0].split()[1] == "<function>"
    only_data = run(session, "x /1 /d myfault!*")
    assert only_data == [f"myfault!{d.name}" for m in _modules(session)
                         if m.name == "myfault" for d in m.symbols.data]
    eight = run(session, "x /1 /s 8 /d myfault!*")
    assert eight and len(eight) == sum(1 for m in _modules(session) if m.name == "myfault"
                                       for d in m.symbols.data if d.size == 8)


def _sorted(session, mod):
    m = session.symbols.module_named(mod)
    return m, sorted([(m.base + f.rva, f.name) for f in m.symbols.functions]
                     + [(m.base + d.rva, d.name) for d in m.symbols.data])


@pytest.mark.parametrize("mod", ["nt", "myfault", "hal"])
def test_ln_exact_and_inside_every_function(session, mod):
    m, rows = _sorted(session, mod)
    funcs = {m.base + f.rva: f for f in m.symbols.functions}
    picks = [rows[0], rows[len(rows) // 2], rows[-1]]
    for start, name in picks:
        nxt = next((r for r in rows if r[0] > start), None)
        tail = f"   |  ({addr(nxt[0])})   {mod}!{nxt[1]}" if nxt else ""
        out = run(session, f"ln {start:x}")
        assert out[:3] == ["Browse module", "Set bu breakpoint", ""]
        assert out[3] == f"({addr(start)})   {mod}!{name}{tail}"
        assert out[4] == "Exact matches:"
        suffix = "(<no parameter info>)" if start in funcs else "= <no type information>"
        assert out[5] == f"    {mod}!{name} {suffix}"
        if start in funcs and funcs[start].size > 0x1c:
            inside = run(session, f"ln {start + 0x1c:x}")
            assert inside[3] == f"({addr(start)})   {mod}!{name}+0x1c{tail}"
            assert len(inside) == 4  # no exact match


def test_ln_outside_modules_module_header_and_default_ip(session):
    assert run(session, "ln 0") == []
    base = session.symbols.module_named("myfault").base
    _m, rows = _sorted(session, "myfault")
    assert run(session, "ln myfault+8")[3] == (
        f"({addr(base)})   myfault+0x8   |  ({addr(rows[0][0])})   myfault!{rows[0][1]}")
    rip = session.register("rip")
    assert run(session, "ln") == run(session, f"ln {rip:x}")
    assert run(session, "ln nosuch") == ["Couldn't resolve error at 'nosuch'"]
