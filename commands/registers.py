"""Register display: `r` and `.trap` (a context from a `_KTRAP_FRAME` in memory)."""

from __future__ import annotations

from commands import fmt
from commands.disasm import disassemble_one
from commands.errors import KdBadRegisterError
from commands.registry import Result, command
from commands.session import ScopeContext, sub_registers

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


@command("r", syntax="r [register]",
         help="Show the registers of the current context, or one register.")
def r_cmd(s, args: str) -> Result:
    regs = s.registers()
    name = args.strip().lower().lstrip("@")
    if name:
        value = s.register(name)
        if value is None:
            raise KdBadRegisterError(args.strip())
        return Result([f"{name}={value:016x}"], {name: value})
    lines = ["Last set context:"] if s.scope is not None else []
    lines += register_block(s, regs, segments=True)
    return Result(lines, regs)


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
    s.scope = ScopeContext(regs, "trap")
    lines = ["NOTE: The trap frame does not contain all registers.",
             "Some register values may be zeroed or incorrect."]
    lines += register_block(s, regs, segments=False)
    return Result(lines, {"trap_frame": fmt.hex16(tf), "registers": regs})
