"""Register display: `r` and `.trap` (a context from a `_KTRAP_FRAME` in memory)."""

from __future__ import annotations

import re

from commands import fmt
from commands.disasm import disassemble_one
from commands.errors import KdBadRegisterError, KdSyntaxError
from commands.registry import Result, command
from commands.session import GPRS64, INDEXED, LEGACY, ScopeContext, sub_registers
from commands.target import TargetNotLive

ROWS = (("rax", "rbx", "rcx"), ("rdx", "rsi", "rdi"), ("rip", "rsp", "rbp"),
        ("r8", "r9", "r10"), ("r11", "r12", "r13"), ("r14", "r15"))
FLAGS = ((11, "ov", "nv"), (10, "dn", "up"), (9, "ei", "di"), (7, "ng", "pl"),
         (6, "zr", "nz"), (4, "ac", "na"), (2, "pe", "po"), (0, "cy", "nc"))
TRAP_GPRS = {"rax": "Rax", "rbx": "Rbx", "rcx": "Rcx", "rdx": "Rdx", "rsi": "Rsi",
             "rdi": "Rdi", "rbp": "Rbp", "r8": "R8", "r9": "R9", "r10": "R10", "r11": "R11",
             "rip": "Rip", "rsp": "Rsp", "efl": "EFlags", "cs": "SegCs", "ss": "SegSs"}


def register_block(s, regs: dict[str, int], segments: bool) -> list[str]:
    lines = []
    for row in ROWS:
        lines.append(" ".join(f"{n:>3}={regs.get(n, 0):016x}" for n in row))
    efl = regs.get("efl", 0)
    flags = " ".join(on if efl >> bit & 1 else off for bit, on, off in FLAGS)
    lines.append(f"iopl={efl >> 12 & 3}         {flags}")
    if segments:
        segs = "  ".join(f"{n}={regs.get(n, 0):04x}" for n in ("cs", "ss", "ds", "es", "fs", "gs"))
        lines.append(f"{segs}             efl={efl:08x}")
    code, _ = disassemble_one(lambda a, n: s.target.read_virtual(a, n), s.symbols,
                              regs.get("rip", 0), sub_registers(regs))
    return lines + code


@command("r", syntax="r [reg[=expr]][, reg[=expr] ...] | r $.uN=text",
         help="Show the registers of the current context; show or set registers and "
              "pseudo-registers ($t0-$t19); set a fixed-name alias ($.u0-$.u9).")
def r_cmd(s, args: str) -> Result:
    text = args.strip()
    if not text:
        regs = s.registers()
        lines = ["Last set context:"] if s.scope is not None else []
        lines += register_block(s, regs, segments=True)
        return Result(lines, regs)
    fixed = _FIXED_ALIAS.match(text)
    if fixed:
        # `r $.u0=text`: the rest of the command, leading and trailing blanks dropped.
        index, value = int(fixed.group(1)), fixed.group(2).strip()
        s.fixed_aliases[index] = value
        return Result([], {f"$u{index}": value})
    shown: dict[str, int] = {}
    assigned: dict[str, int] = {}
    rest = text
    while True:
        at = len(text) - len(rest)
        m = _REGISTER_NAME.match(rest)
        if not m:
            raise KdSyntaxError(rest, at)
        name = m.group(1).lower()
        after = rest[m.end():].lstrip()
        if after.startswith("="):
            value, after = s.take(after[1:])
            set_register(s, name, value, text[at:])
            assigned[name] = value & _MASK64
        else:
            value = s.register(name)
            if value is None:
                raise KdBadRegisterError(text[at:])
            shown[name] = value
        rest = after.lstrip()
        if not rest:
            break
        if not rest.startswith(","):
            raise KdSyntaxError(rest, len(text) - len(rest))
        rest = rest[1:].lstrip()
    line = " ".join(f"{n}={v & _MASK64:0{register_width(n)}x}" for n, v in shown.items())
    return Result([line] if shown else [], {**shown, **assigned})


_MASK64 = (1 << 64) - 1
_FIXED_ALIAS = re.compile(r"\$\.u([0-9])\s*=(.*)$", re.S)
_REGISTER_NAME = re.compile(r"@?(\$?[A-Za-z0-9_]+)")
_FULL = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11",
         "r12", "r13", "r14", "r15", "rip", "efl")
_SEGMENTS = frozenset(("cs", "ss", "ds", "es", "fs", "gs"))


def _sub_register_map() -> dict[str, tuple[str, int, int]]:
    """Sub-register name -> (full register, bit shift, bit width)."""
    out: dict[str, tuple[str, int, int]] = {}
    for r in GPRS64:
        if r in LEGACY:
            c = LEGACY[r]
            out.update({f"e{c}x": (r, 0, 32), f"{c}x": (r, 0, 16), f"{c}l": (r, 0, 8),
                        f"{c}h": (r, 8, 8)})
        elif r in INDEXED:
            c = INDEXED[r]
            out.update({f"e{c}": (r, 0, 32), c: (r, 0, 16), f"{c}l": (r, 0, 8)})
        else:
            out.update({f"{r}d": (r, 0, 32), f"{r}w": (r, 0, 16), f"{r}b": (r, 0, 8)})
    out["eip"] = ("rip", 0, 32)
    return out


SUB_REGISTERS = _sub_register_map()


def register_width(name: str) -> int:
    """Hex digits kd prints for a register's value (`eax=00000001`, `al=01`)."""
    if name in SUB_REGISTERS:
        return SUB_REGISTERS[name][2] // 4
    if name == "efl":
        return 8
    if name in _SEGMENTS:
        return 4
    return 16


def set_register(s, name: str, value: int, quoted: str) -> None:
    """`r name=value`: a pseudo-register, or a register of the current context (the
    `.trap`/`.cxr` context when one is set, else the processor itself); a sub-register
    changes only its bits of the full register.  `quoted` is the text kd's error quotes."""
    from commands.pseudo_regs import TEMPS, WRITABLE

    value &= _MASK64
    if name.startswith("$"):
        if name not in WRITABLE:
            raise KdBadRegisterError(quoted)
        if name in TEMPS:
            s.pseudo[name] = value
            return
        name = WRITABLE[name]
    full, shift, bits = SUB_REGISTERS.get(name, (name, 0, 64))
    if full not in _FULL:
        raise KdBadRegisterError(quoted)
    if bits < 64:
        mask = ((1 << bits) - 1) << shift
        old = s.registers().get(full, 0)
        value = (old & ~mask) | ((value << shift) & mask)
    if s.scope is not None:
        s.scope.registers[full] = value  # the context kd shows after .trap / .cxr
        return
    try:
        s.target.write_register(s.processor, full, value)
    except (AttributeError, KeyError, TargetNotLive):
        raise KdBadRegisterError(quoted) from None


def trap_registers(s, tf: int) -> dict[str, int]:
    # The trap frame holds no r12-r15 and, for kernel-mode traps, no data segments.
    regs = {n: 0 for n in ("r12", "r13", "r14", "r15", "ds", "es", "fs", "gs")}
    for reg, fld in TRAP_GPRS.items():
        regs[reg] = s.reader.field("_KTRAP_FRAME", tf, fld)
    return regs


@command(".trap", syntax=".trap [address]",
         help="Set the register context from a trap frame (no address: reset).")
def trap_cmd(s, args: str) -> Result:
    if not args.strip():
        s.scope = None
        return Result([], {"context": None})
    tf, _ = s.take(args)
    regs = trap_registers(s, tf)
    s.scope = ScopeContext(regs, "trap", tf)
    lines = ["NOTE: The trap frame does not contain all registers.",
             "Some register values may be zeroed or incorrect."]
    lines += register_block(s, regs, segments=False)
    return Result(lines, {"trap_frame": fmt.hex16(tf), "registers": regs})
