"""Breakpoints: bp, bu, bm, ba, bl, bc, bd, be.

The table is the debugger's own (commands/bptable.py, kept in the session); the target arms
the enabled ones each time it runs.  Set commands print nothing on success, as kd."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

from commands import fmt
from commands.bptable import CODE, DATA, DATA_SLOTS, UNRESOLVED, Breakpoint
from commands.errors import KdCommandError, KdResolveError, KdSyntaxError
from commands.registry import Result, command
from commands.runcontrol import require_live

MAX_PASSES = 0xFFFF  # kd keeps a 16-bit pass count


# -- the argument forms the set commands share ----------------------------------------------

def _options(s, args: str) -> tuple[dict, str]:
    """Leading `/1`, `/p <eprocess>`, `/t <ethread>`."""
    opts: dict = {"one_shot": False, "process": None, "thread": None}
    rest = args.lstrip()
    while rest.startswith("/"):
        flag = rest[1:2].lower()
        if flag == "1":
            opts["one_shot"] = True
            rest = rest[2:].lstrip()
        elif flag in ("p", "t"):
            value, rest = s.take(rest[2:].lstrip())
            opts["process" if flag == "p" else "thread"] = value
            rest = rest.lstrip()
        else:
            raise KdCommandError(args, len(args) - len(rest))
    return opts, rest


def _quoted(args: str, rest: str) -> str | None:
    """The `"command string"` that ends the arguments, without its quotes."""
    if not rest:
        return None
    if not rest.startswith('"'):
        raise KdCommandError(args, len(args) - len(rest))
    out, i = [], 1
    while i < len(rest):
        c = rest[i]
        if c == "\\" and rest[i + 1:i + 2] in ('"', "\\"):
            # \" is a quote and \\ a backslash in the string (`".printf \"%p\\n\", @rcx"`)
            out.append(rest[i + 1])
            i += 2
            continue
        if c == '"':
            if rest[i + 1:].strip():
                raise KdCommandError(args, len(args) - len(rest) + i + 1)
            return "".join(out)
        out.append(c)
        i += 1
    raise KdCommandError(args, len(args) - len(rest))


def _passes_and_command(s, args: str, rest: str) -> tuple[int, str | None]:
    rest = rest.strip()
    passes = 1
    if rest and not rest.startswith('"'):
        passes, rest = s.take(rest)
        rest = rest.strip()
        if not 1 <= passes <= MAX_PASSES:
            passes = max(1, passes & MAX_PASSES)
    return passes, _quoted(args, rest)


def _first_word(text: str) -> tuple[str, str]:
    m = re.match(r'\s*([^\s"]+)(.*)', text, re.DOTALL)
    return (m.group(1), m.group(2)) if m else ("", text)


def _given_id(s, name: str, args: str) -> tuple[int | None, str]:
    """kd's `bp[ID]`: a decimal number glued to the command name (`bp5 addr`, `ba3 w8
    addr`) or a bracketed expression (`bp[0x10] addr`).  `bp 5` has a blank before the 5:
    that is an address.  The typed command (the session keeps it) tells the two apart."""
    typed = s.command_text.strip()
    glued = typed[len(name):]
    if typed[:len(name)].lower() != name or glued.lstrip() != args:
        return None, args  # not called from a typed command: no id
    if glued.startswith("["):
        close = glued.find("]")
        if close < 0:
            raise KdCommandError(typed, len(typed))
        ident = s.evaluate(glued[1:close])
        return ident & 0xFFFFFFFF, glued[close + 1:].lstrip()
    digits = re.match(r"\d+", glued)
    if digits is None:
        return None, args
    after = glued[digits.end():]
    if after and not after[0].isspace():
        raise KdCommandError(typed, len(name) + digits.end())
    return int(digits.group()), after.lstrip()


def _matches(old: Breakpoint, new: Breakpoint) -> bool:
    """kd's match of two breakpoints at one place: the same kind (code or processor), the
    same resolved address and the same /p and /t conditions (a data breakpoint's access
    and size do not count)."""
    return (old is not new and (old.kind == DATA) == (new.kind == DATA)
            and old.address is not None and old.address == new.address
            and old.process == new.process and old.thread == new.thread)


def _store(s, bp: Breakpoint, lines: list[str], given: int | None = None) -> Breakpoint:
    """Add bp as kd does.  An id given that is in use: `breakpoint N exists, redefining`,
    the old one goes.  A breakpoint already at the same place: `breakpoint N redefined`,
    it goes too and the new one keeps the lower of the two numbers."""
    if given is not None:
        if given in s.breakpoints.items:
            lines.append(f"breakpoint {given} exists, redefining")
            s.breakpoints.remove(given)
        bp.id = given
    else:
        bp.id = s.breakpoints.next_id()
    while (match := next((b for b in s.breakpoints if _matches(b, bp)), None)) is not None:
        lines.append(f"breakpoint {match.id} redefined")
        s.breakpoints.remove(match.id)
        bp.id = min(bp.id, match.id)
    return s.breakpoints.add(bp)


def _set_code(s, args: str, unresolved: bool) -> Result:
    given, args = _given_id(s, "bu" if unresolved else "bp", args)
    opts, rest = _options(s, args)
    if not rest.strip() or rest.lstrip().startswith('"'):
        # no address: kd sets it at the current instruction
        rest = f"{s.register('rip'):#x} {rest.lstrip()}"
    lines: list[str] = []
    expression, after = _first_word(rest)
    try:
        address, after_expr = s.take(rest)
        after = after_expr
    except KdResolveError:
        # An address not known yet (a module not loaded): kd keeps it as a deferred
        # breakpoint, resolved when the module appears.
        address = None
        if not unresolved:
            lines.append(f"Bp expression '{expression}' could not be resolved, "
                         "adding deferred bp")
    passes, cmd = _passes_and_command(s, args, after)
    kind = UNRESOLVED if unresolved or address is None else CODE
    bp = Breakpoint(0, kind, expression, address, passes=passes,
                    remaining=passes, command=cmd, **opts)
    bp = _store(s, bp, lines, given)
    return Result(lines, {"breakpoint": _row_data(s, bp)})


@command("bp", syntax='bp[ID] [/1] [/p eprocess] [/t ethread] address [passes] ["commands"]',
         help="Set a breakpoint at an address; an ID glued to the name (`bp5`, `bp[0x10]`) "
              "numbers it.")
def bp_cmd(s, args: str) -> Result:
    require_live(s)  # a dump never runs: kd refuses breakpoints there
    return _set_code(s, args, unresolved=False)


@command("bu", syntax='bu[ID] [/1] [/p eprocess] [/t ethread] expression [passes] ["commands"]',
         help="Set a breakpoint that tracks a symbolic expression (deferred until it "
              "resolves).")
def bu_cmd(s, args: str) -> Result:
    require_live(s)
    return _set_code(s, args, unresolved=True)


@command("bm", syntax='bm [/1] [/p eprocess] [/t ethread] module!pattern [passes] ["commands"]',
         help="Set breakpoints on every function whose name matches a wildcard pattern.")
def bm_cmd(s, args: str) -> Result:
    require_live(s)
    opts, rest = _options(s, args)
    pattern, after = _first_word(rest)
    if not pattern:
        raise KdSyntaxError("")
    passes, cmd = _passes_and_command(s, args, after)
    mod_pat, _, sym_pat = pattern.rpartition("!")
    matches: list[tuple[int, str]] = []
    for m in s.symbols.modules():
        if m.symbols is None or not fnmatchcase(m.name.lower(), (mod_pat or "*").lower()):
            continue
        for f in m.symbols.functions:
            if fnmatchcase(f.name.lower(), sym_pat.lower()):
                matches.append((m.base + f.rva, f"{m.name}!{f.name}"))
    if not matches:
        raise KdResolveError(pattern)
    lines: list[str] = []
    rows = []
    for address, name in sorted(matches):
        bp = Breakpoint(0, CODE, name, address, passes=passes, remaining=passes,
                        command=cmd, **opts)
        bp = _store(s, bp, lines)
        lines.append(f"{bp.id:>3}: {fmt.addr(address)} @!\"{name}\"")
        rows.append(_row_data(s, bp))
    return Result(lines, {"breakpoints": rows})


_ACCESS = re.compile(r"\s*([ewrEWR])\s*(\d+)(.*)", re.DOTALL)


@command("ba", syntax='ba[ID] [/1] [/p eprocess] [/t ethread] e|r|w size address [passes] '
                      '["commands"]',
         help="Break on access: a processor (debug register) breakpoint on execute (e), "
              "write (w) or read/write (r) of 1, 2, 4 or 8 bytes.")
def ba_cmd(s, args: str) -> Result:
    require_live(s)
    given, args = _given_id(s, "ba", args)
    opts, rest = _options(s, args)
    m = _ACCESS.match(rest)
    if m is None:
        raise KdCommandError(args, len(args) - len(rest.lstrip()))
    access, size, rest = m.group(1).lower(), int(m.group(2)), m.group(3)
    if not rest.strip():
        raise KdSyntaxError("")
    address, after = s.take(rest.strip())
    passes, cmd = _passes_and_command(s, args, after)
    # kd's checks of a data breakpoint against the x64 debug registers
    if size not in (1, 2, 4, 8):
        return Result(["Unsupported data breakpoint size"], {"error": "size"})
    if access == "e" and size != 1:
        return Result(["Execution data breakpoint too large"], {"error": "size"})
    if address & (size - 1):
        return Result(["Data breakpoint must be aligned"], {"error": "alignment"})
    bp = Breakpoint(0, DATA, rest.strip(), address, passes=passes,
                    remaining=passes, command=cmd, access=access, size=size, **opts)
    # the debug registers this one would leave to the others (it replaces a match or the
    # breakpoint with its id)
    in_use = {b.watch for b in s.breakpoints if b.kind == DATA and b.enabled
              and not _matches(b, bp) and b.id != given}
    if len(in_use) >= DATA_SLOTS:
        line = f"kdsim: all {DATA_SLOTS} debug registers are in use (bc or bd one first)"
        return Result([line], {"error": "no free debug register"})
    lines: list[str] = []
    bp = _store(s, bp, lines, given)
    return Result(lines, {"breakpoint": _row_data(s, bp)})


# -- listing ------------------------------------------------------------------------------

def _row_data(s, bp: Breakpoint) -> dict:
    return {"id": bp.id, "kind": bp.kind, "enabled": bp.enabled, "address": bp.address,
            "expression": bp.expression, "passes": bp.passes, "remaining": bp.remaining,
            "command": bp.command, "one_shot": bp.one_shot, "process": bp.process,
            "thread": bp.thread, "access": bp.access, "size": bp.size,
            "symbol": s.symbols.name_for(bp.address) if bp.address is not None else None}


def bl_row(s, bp: Breakpoint) -> list[str]:
    counts = f"{bp.remaining:04x} ({bp.passes:04x})"
    state = "e" if bp.enabled else "d"
    links = "Disable Clear " if bp.enabled else "Enable Clear "
    cmd = f' "{bp.command}"' if bp.command else ""
    if bp.address is None:
        line = f"{bp.id:>6} {state}u             {counts} ({bp.expression}){cmd}"
    else:
        name = s.symbols.name_for(bp.address) or ""
        middle = f" {bp.access} {bp.size} " if bp.kind == DATA else "     "
        line = f"{bp.id:>6} {state} {links} {fmt.addr(bp.address)}{middle}{counts} {name}"
        line = line.rstrip() + cmd
    lines = [line]
    if bp.process is not None:
        lines.append(f"     Match process data {fmt.addr(bp.process)}")
    if bp.thread is not None:
        lines.append(f"     Match thread data {fmt.addr(bp.thread)}")
    return lines


@command("bl", syntax="bl [ids]", help="List breakpoints.")
def bl_cmd(s, args: str) -> Result:
    wanted = _ids(s, args) if args.strip() else None
    lines: list[str] = []
    rows = []
    for bp in s.breakpoints:
        if wanted is not None and bp.id not in wanted:
            continue
        lines += bl_row(s, bp)
        rows.append(_row_data(s, bp))
    return Result(lines, {"breakpoints": rows})


# -- clear, disable, enable -------------------------------------------------------------

_ID_TOKEN = re.compile(r"(\d+)(?:\s*-\s*(\d+))?$")


def _ids(s, args: str) -> set[int]:
    """`*`, or ids separated by blanks or commas, with `a-b` ranges (decimal)."""
    text = args.strip()
    if text == "*":
        return {b.id for b in s.breakpoints}
    out: set[int] = set()
    spaced = re.sub(r"\s*-\s*", "-", text)
    for token in re.split(r"[\s,]+", spaced):
        if not token:
            continue
        m = _ID_TOKEN.match(token)
        if m is None:
            raise KdSyntaxError(token)
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        out.update(range(lo, min(hi, lo + 0x10000) + 1))
    return out


def _need_ids(s, args: str) -> set[int]:
    if not args.strip():
        raise KdSyntaxError("")
    return _ids(s, args)


@command("bc", syntax="bc * | ids", help="Clear (delete) breakpoints.")
def bc_cmd(s, args: str) -> Result:
    ids = _need_ids(s, args)
    cleared = sorted(b.id for b in s.breakpoints if b.id in ids)
    for ident in cleared:
        s.breakpoints.remove(ident)
    return Result([], {"cleared": cleared})


def _enable(s, args: str, on: bool) -> Result:
    ids = _need_ids(s, args)
    changed = []
    for bp in s.breakpoints:
        if bp.id in ids:
            bp.enabled = on
            changed.append(bp.id)
    return Result([], {"enabled" if on else "disabled": changed})


@command("bd", syntax="bd * | ids", help="Disable breakpoints.")
def bd_cmd(s, args: str) -> Result:
    return _enable(s, args, False)


@command("be", syntax="be * | ids", help="Enable breakpoints.")
def be_cmd(s, args: str) -> Result:
    return _enable(s, args, True)
