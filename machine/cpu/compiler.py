"""Compile one decoded instruction into a Python closure ``f(cpu) -> next rip``.

Each instruction is translated into a small piece of Python source specialised on its
operands (register numbers, operand size, addressing form).  Values that vary between
instructions of the same shape (immediates, displacements, next rip, branch targets) are
parameters of a factory, so the source of one shape is compiled once and the factory is
reused for every instruction of that shape.

Rules the generated code follows so that faults are precise:
* every memory read and every translation (including the write check of a
  read-modify-write) happens before any register, flag or memory write;
* an instruction has at most one plain (unvalidated) memory write, and it comes before
  any register or flag update.

Memory accesses inline the translation-cache hit path: ``cpu._rtlb`` / ``cpu._wtlb`` map a
virtual page number to its frame (a bytearray) for the current address space; frames in
the write cache are never watched code frames, so writing them directly needs no
notification.  Everything else (misses, page-crossing accesses, non-canonical addresses,
faults) goes through ``cpu._rd`` / ``cpu._rdw`` / ``cpu._wr``.
"""

from __future__ import annotations

import struct

from iced_x86 import ConditionCode, Instruction, MemorySizeExt, Mnemonic, OpKind, Register

from machine.cpu import flags as F
from machine.cpu import ops
from machine.cpu.errors import CpuException, Halt
from machine.cpu.strings import make_string

M64 = 0xFFFFFFFFFFFFFFFF
MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF, 8: M64}
SIGN = {1: 0x80, 2: 0x8000, 4: 0x80000000, 8: 0x8000000000000000}
KEEP = {1: 0xFFFFFFFFFFFFFF00, 2: 0xFFFFFFFFFFFF0000}
NONCANON_LO = 0x0000800000000000
NONCANON_HI = 0xFFFF800000000000

REG64 = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
         "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
REG32 = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi",
         "r8d", "r9d", "r10d", "r11d", "r12d", "r13d", "r14d", "r15d")
REG16 = ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di",
         "r8w", "r9w", "r10w", "r11w", "r12w", "r13w", "r14w", "r15w")
REG8 = ("al", "cl", "dl", "bl", "spl", "bpl", "sil", "dil",
        "r8l", "r9l", "r10l", "r11l", "r12l", "r13l", "r14l", "r15l")
REG8H = ("ah", "ch", "dh", "bh")

# iced register -> (index, size in bytes, is ah/ch/dh/bh)
REGS: dict[int, tuple[int, int, bool]] = {}
for _names, _size in ((REG64, 8), (REG32, 4), (REG16, 2), (REG8, 1)):
    for _i, _n in enumerate(_names):
        REGS[getattr(Register, _n.upper())] = (_i, _size, False)
for _i, _n in enumerate(REG8H):
    REGS[getattr(Register, _n.upper())] = (_i, 1, True)

CONTROL_REGS = {Register.CR0: 0, Register.CR2: 2, Register.CR3: 3, Register.CR4: 4,
                Register.CR8: 8}

_CC = {getattr(ConditionCode, n.upper()): i for i, n in enumerate(F.CC_NAMES)}

_IMM_KINDS = {OpKind.IMMEDIATE8, OpKind.IMMEDIATE16, OpKind.IMMEDIATE32, OpKind.IMMEDIATE64,
              OpKind.IMMEDIATE8TO16, OpKind.IMMEDIATE8TO32, OpKind.IMMEDIATE8TO64,
              OpKind.IMMEDIATE32TO64}

# Names visible to generated code.
_GLOBALS: dict[str, object] = {
    "CpuException": CpuException, "Halt": Halt,
    "flags_now": F.flags_now, "set_cf": F.set_cf, "cf_now": ops.cf_now,
    "set_flags": F.set_arith,
    "mul": ops.mul, "imul_wide": ops.imul_wide, "imul_trunc": ops.imul_trunc,
    "div": ops.div, "idiv": ops.idiv, "bsf": ops.bsf, "bsr": ops.bsr,
}
for _n, _f in ops.SHIFTS.items():
    _GLOBALS["op_" + _n] = _f
for _i, _n in enumerate(F.CC_NAMES):
    _GLOBALS["c_" + _n] = F.CONDITIONS[_i]
for _n, _fmt in ((2, "<H"), (4, "<I"), (8, "<Q")):
    _GLOBALS[f"U{_n}"] = struct.Struct(_fmt).unpack_from
    _GLOBALS[f"P{_n}"] = struct.Struct(_fmt).pack_into

_FACTORIES: dict[str, object] = {}

LOCKABLE = {Mnemonic.ADD, Mnemonic.ADC, Mnemonic.SUB, Mnemonic.SBB, Mnemonic.AND, Mnemonic.OR,
            Mnemonic.XOR, Mnemonic.INC, Mnemonic.DEC, Mnemonic.NEG, Mnemonic.NOT,
            Mnemonic.XADD, Mnemonic.CMPXCHG, Mnemonic.CMPXCHG16B, Mnemonic.BTS, Mnemonic.BTR,
            Mnemonic.BTC, Mnemonic.XCHG}


class Unsupported(Exception):
    """The instruction is outside the supported subset (executes as #UD)."""


class Op:
    """One operand: kind 'r' (register), 'm' (memory) or 'i' (immediate)."""

    __slots__ = ("kind", "size", "idx", "high", "imm")

    def __init__(self, kind: str, size: int, idx: int = 0, high: bool = False,
                 imm: int = 0) -> None:
        self.kind = kind
        self.size = size
        self.idx = idx
        self.high = high
        self.imm = imm


class Gen:
    """Source builder for one instruction."""

    def __init__(self, ins: Instruction) -> None:
        self.ins = ins
        self.lines: list[str] = []
        self.consts: list[int] = []
        self.uses_rt = False
        self.uses_wt = False
        self.n = 0

    # -- plumbing ----------------------------------------------------------------------

    def k(self, value: int) -> str:
        self.consts.append(value)
        return f"K{len(self.consts) - 1}"

    def emit(self, line: str, ind: int = 0) -> None:
        self.lines.append("    " * ind + line)

    def fresh(self) -> int:
        self.n += 1
        return self.n

    def source(self) -> str:
        head = ["def _mk(" + ", ".join(f"K{i}" for i in range(len(self.consts))) + "):",
                "    def f(cpu):", "        r = cpu.regs"]
        if self.uses_rt:
            head.append("        rt = cpu._rtlb")
        if self.uses_wt:
            head.append("        wt = cpu._wtlb")
        return "\n".join(head + ["        " + ln for ln in self.lines] + ["    return f", ""])

    def build(self):
        src = self.source()
        mk = _FACTORIES.get(src)
        if mk is None:
            ns = dict(_GLOBALS)
            exec(compile(src, "<x64>", "exec"), ns)
            mk = ns["_mk"]
            _FACTORIES[src] = mk
        return mk(*self.consts)  # type: ignore[operator]

    # -- operands ------------------------------------------------------------------------

    def op(self, i: int, size: int | None = None) -> Op:
        ins = self.ins
        kind = ins.op_kind(i)
        if kind == OpKind.REGISTER:
            reg = ins.op_register(i)
            info = REGS.get(reg)
            if info is None:
                raise Unsupported(f"register {reg}")
            return Op("r", info[1], info[0], info[2])
        if kind == OpKind.MEMORY:
            return Op("m", MemorySizeExt.size(ins.memory_size))
        if kind in _IMM_KINDS:
            sz = size or 8
            return Op("i", sz, imm=ins.immediate(i) & MASK[sz])
        raise Unsupported(f"operand kind {kind}")

    def ea_expr(self, rsp_override: str | None = None, seg: bool = True) -> str:
        """Python expression for the memory operand's linear address (not masked)."""
        ins = self.ins
        parts: list[str] = []
        addr32 = False
        if ins.is_ip_rel_memory_operand:
            parts.append(self.k(ins.ip_rel_memory_address))
        else:
            base = ins.memory_base
            index = ins.memory_index
            for reg, scale in ((base, 1), (index, ins.memory_index_scale)):
                if reg == Register.NONE:
                    continue
                info = REGS.get(reg)
                if info is None or info[1] < 4:
                    raise Unsupported("address register")
                if info[1] == 4:
                    addr32 = True
                if info[0] == 4 and rsp_override is not None:
                    term = f"({rsp_override})"
                else:
                    term = f"r[{info[0]}]"
                if info[1] == 4:
                    term = f"({term} & 0xFFFFFFFF)"
                parts.append(term if scale == 1 else f"{term} * {scale}")
            disp = ins.memory_displacement
            if addr32:
                disp &= 0xFFFFFFFF
            elif disp & (1 << 63):
                disp -= 1 << 64
            if disp or not parts:
                parts.append(self.k(disp))
        expr = " + ".join(parts)
        if addr32:
            expr = f"(({expr}) & 0xFFFFFFFF)"
        if seg:
            s = ins.memory_segment
            if s == Register.GS:
                expr = f"cpu.gs_base + {expr}"
            elif s == Register.FS:
                expr = f"cpu.fs_base + {expr}"
        return expr

    def ea(self, rsp_override: str | None = None) -> str:
        name = f"va{self.fresh()}"
        self.emit(f"{name} = {self.ea_expr(rsp_override)}")
        return name

    # -- memory --------------------------------------------------------------------------

    def rd(self, va: str, n: int, dst: str) -> None:
        self.uses_rt = True
        i = self.fresh()
        o, fr = f"o{i}", f"fr{i}"
        self.emit(f"{o} = {va} & 4095")
        self.emit(f"{fr} = rt.get({va} >> 12)")
        if n == 1:
            self.emit(f"{dst} = {fr}[{o}] if {fr} is not None else cpu._rd({va}, 1)")
        else:
            self.emit(f"{dst} = U{n}({fr}, {o})[0] if {fr} is not None and {o} <= {4096 - n} "
                      f"else cpu._rd({va}, {n})")

    def wr(self, va: str, n: int, expr: str) -> None:
        self.uses_wt = True
        i = self.fresh()
        o, fr = f"o{i}", f"fr{i}"
        self.emit(f"{o} = {va} & 4095")
        self.emit(f"{fr} = wt.get({va} >> 12)")
        if n == 1:
            self.emit(f"if {fr} is not None: {fr}[{o}] = {expr}")
        else:
            self.emit(f"if {fr} is not None and {o} <= {4096 - n}: P{n}({fr}, {o}, {expr})")
        self.emit(f"else: cpu._wr({va}, {n}, {expr})")

    def rmw_rd(self, va: str, n: int, dst: str) -> tuple[str, str]:
        """Read for a later write: the write is validated now; returns a handle."""
        self.uses_wt = True
        i = self.fresh()
        o, fr = f"o{i}", f"fr{i}"
        self.emit(f"{o} = {va} & 4095")
        self.emit(f"{fr} = wt.get({va} >> 12)")
        if n == 1:
            self.emit(f"if {fr} is None: {dst} = cpu._rdw({va}, 1)")
            self.emit(f"else: {dst} = {fr}[{o}]")
        else:
            self.emit(f"if {fr} is None or {o} > {4096 - n}:")
            self.emit(f"{fr} = None", 1)
            self.emit(f"{dst} = cpu._rdw({va}, {n})", 1)
            self.emit(f"else: {dst} = U{n}({fr}, {o})[0]")
        return o, fr

    def rmw_wr(self, handle: tuple[str, str], va: str, n: int, expr: str, ind: int = 0) -> None:
        o, fr = handle
        self.emit(f"if {fr} is None: cpu._wr({va}, {n}, {expr})", ind)
        if n == 1:
            self.emit(f"else: {fr}[{o}] = {expr}", ind)
        else:
            self.emit(f"else: P{n}({fr}, {o}, {expr})", ind)

    # -- values ---------------------------------------------------------------------------

    @staticmethod
    def reg_expr(op: Op) -> str:
        if op.high:
            return f"(r[{op.idx}] >> 8 & 255)"
        if op.size == 8:
            return f"r[{op.idx}]"
        return f"(r[{op.idx}] & {MASK[op.size]:#x})"

    def reg_store(self, op: Op, expr: str, ind: int = 0) -> None:
        i = op.idx
        if op.high:
            self.emit(f"r[{i}] = r[{i}] & 0xFFFFFFFFFFFF00FF | ({expr}) << 8", ind)
        elif op.size in KEEP:
            self.emit(f"r[{i}] = r[{i}] & {KEEP[op.size]:#x} | ({expr})", ind)
        else:
            self.emit(f"r[{i}] = {expr}", ind)

    def value(self, op: Op, name: str) -> str:
        """Emit code reading a source operand into ``name``; return the variable."""
        if op.kind == "r":
            self.emit(f"{name} = {self.reg_expr(op)}")
        elif op.kind == "i":
            return self.k(op.imm)
        else:
            va = self.ea()
            self.rd(va, op.size, name)
        return name


class Dest:
    """A destination operand: register, or memory whose address is computed once."""

    def __init__(self, g: Gen, op: Op, rmw: bool, rsp_override: str | None = None,
                 va: str | None = None) -> None:
        self.g = g
        self.op = op
        self.rmw = rmw
        self.handle: tuple[str, str] | None = None
        if va is None:
            va = g.ea(rsp_override) if op.kind == "m" else ""
        self.va = va
        if op.kind == "i":
            raise Unsupported("immediate destination")

    def read(self, name: str) -> str:
        g = self.g
        if self.op.kind == "r":
            g.emit(f"{name} = {g.reg_expr(self.op)}")
        elif self.rmw:
            self.handle = g.rmw_rd(self.va, self.op.size, name)
        else:
            g.rd(self.va, self.op.size, name)
        return name

    def write(self, expr: str, ind: int = 0) -> None:
        g = self.g
        if self.op.kind == "r":
            g.reg_store(self.op, expr, ind)
        elif self.handle is not None:
            g.rmw_wr(self.handle, self.va, self.op.size, expr, ind)
        else:
            if ind:
                raise Unsupported("conditional plain write")
            g.wr(self.va, self.op.size, expr)


# -- instruction families ---------------------------------------------------------------

_ALU = {Mnemonic.ADD: "add", Mnemonic.ADC: "adc", Mnemonic.SUB: "sub", Mnemonic.SBB: "sbb",
        Mnemonic.AND: "and", Mnemonic.OR: "or", Mnemonic.XOR: "xor", Mnemonic.CMP: "cmp",
        Mnemonic.TEST: "test"}


def _alu(g: Gen, name: str) -> None:
    d = g.op(0)
    s = g.op(1, d.size)
    m, sb = MASK[d.size], SIGN[d.size]
    writes = name not in ("cmp", "test")
    dest = Dest(g, d, rmw=writes)
    b = g.value(s, "b")
    a = dest.read("a")
    if name == "add":
        g.emit(f"res = ({a} + {b}) & {m:#x}")
        lz = f"({F.ADD}, res, {a}, {b}, {sb:#x})"
    elif name == "adc":
        g.emit("c = cf_now(cpu)")
        g.emit(f"res = ({a} + {b} + c) & {m:#x}")
        lz = f"({F.ADD} + c, res, {a}, {b}, {sb:#x})"
    elif name in ("sub", "cmp"):
        g.emit(f"res = ({a} - {b}) & {m:#x}")
        lz = f"({F.SUB}, res, {a}, {b}, {sb:#x})"
    elif name == "sbb":
        g.emit("c = cf_now(cpu)")
        g.emit(f"res = ({a} - {b} - c) & {m:#x}")
        lz = f"({F.SUB} + c, res, {a}, {b}, {sb:#x})"
    else:
        opc = {"and": "&", "test": "&", "or": "|", "xor": "^"}[name]
        g.emit(f"res = {a} {opc} {b}")
        lz = f"({F.LOGIC}, res, 0, 0, {sb:#x})"
    if writes:
        dest.write("res")
    g.emit(f"cpu._lz = {lz}")


def _incdec(g: Gen, inc: bool) -> None:
    d = g.op(0)
    m, sb = MASK[d.size], SIGN[d.size]
    dest = Dest(g, d, rmw=True)
    a = dest.read("a")
    g.emit(f"res = ({a} {'+' if inc else '-'} 1) & {m:#x}")
    dest.write("res")
    g.emit("p = cpu._lz")
    g.emit(f"if p is not None and p[0] >= {F.INC}: p = p[3]")
    g.emit(f"cpu._lz = ({F.INC if inc else F.DEC}, res, {a}, p, {sb:#x})")


def _neg_not(g: Gen, neg: bool) -> None:
    d = g.op(0)
    m, sb = MASK[d.size], SIGN[d.size]
    dest = Dest(g, d, rmw=True)
    a = dest.read("a")
    if neg:
        g.emit(f"res = -{a} & {m:#x}")
        dest.write("res")
        g.emit(f"cpu._lz = ({F.SUB}, res, 0, {a}, {sb:#x})")
    else:
        g.emit(f"res = {a} ^ {m:#x}")
        dest.write("res")


_SHIFT = {Mnemonic.SHL: "shl", Mnemonic.SAL: "sal", Mnemonic.SHR: "shr", Mnemonic.SAR: "sar",
          Mnemonic.ROL: "rol", Mnemonic.ROR: "ror", Mnemonic.RCL: "rcl", Mnemonic.RCR: "rcr"}


def _shift(g: Gen, name: str) -> None:
    ins = g.ins
    d = g.op(0)
    sb = SIGN[d.size]
    cmask = 0x3F if d.size == 8 else 0x1F
    if ins.op_count == 1:
        cnt: int | None = 1
    elif ins.op_kind(1) == OpKind.REGISTER:
        if ins.op_register(1) != Register.CL:
            raise Unsupported("shift count")
        cnt = None
    else:
        cnt = ins.immediate(1) & cmask
    dest = Dest(g, d, rmw=True)
    a = dest.read("a")
    if cnt is None:
        g.emit(f"n = r[1] & {cmask:#x}")
        g.emit(f"res = op_{name}(cpu, {a}, n, {sb:#x}) if n else {a}")
    elif cnt:
        g.emit(f"res = op_{name}(cpu, {a}, {cnt}, {sb:#x})")
    else:
        g.emit(f"res = {a}")
    dest.write("res")


def _bt(g: Gen, mn: int) -> None:
    d = g.op(0)
    bits = d.size * 8
    s = g.op(1, 1)
    modify = mn != Mnemonic.BT
    if s.kind == "i":
        g.emit(f"bit = {s.imm & (bits - 1)}")
        dest = Dest(g, d, rmw=modify)
    else:
        g.emit(f"off = {g.reg_expr(s)}")
        g.emit(f"bit = off & {bits - 1}")
        if d.kind == "m":
            # The bit offset is signed and may address outside the operand.
            sbs = SIGN[s.size]
            shift = {2: 4, 4: 5, 8: 6}[d.size]
            va = f"va{g.fresh()}"
            g.emit(f"{va} = {g.ea_expr()} + (((off ^ {sbs:#x}) - {sbs:#x}) >> {shift}) * {d.size}")
            dest = Dest(g, d, rmw=modify, va=va)
        else:
            dest = Dest(g, d, rmw=modify)
    a = dest.read("a")
    g.emit(f"c = {a} >> bit & 1")
    if mn == Mnemonic.BTS:
        dest.write(f"{a} | (1 << bit)")
    elif mn == Mnemonic.BTR:
        dest.write(f"{a} & ~(1 << bit)")
    elif mn == Mnemonic.BTC:
        dest.write(f"{a} ^ (1 << bit)")
    g.emit("set_cf(cpu, c)")


def _acc_store(g: Gen, size: int, idx: int, expr: str) -> None:
    g.reg_store(Op("r", size, idx), expr)


def _muldiv(g: Gen, mn: int) -> None:
    ins = g.ins
    if mn == Mnemonic.IMUL and ins.op_count > 1:
        d = g.op(0)
        sb = SIGN[d.size]
        if ins.op_count == 2:
            b = g.value(g.op(1), "b")
            g.emit(f"a = {g.reg_expr(d)}")
            a = "a"
        else:
            a = g.value(g.op(1), "a")
            b = g.k(ins.immediate(2) & MASK[d.size])
        g.emit(f"res = imul_trunc(cpu, {a}, {b}, {sb:#x})")
        g.reg_store(d, "res")
        return
    s = g.op(0)
    size = s.size
    sb = SIGN[size]
    b = g.value(s, "b")
    if mn in (Mnemonic.MUL, Mnemonic.IMUL):
        fn = "mul" if mn == Mnemonic.MUL else "imul_wide"
        g.emit(f"lo, hi = {fn}(cpu, r[0] & {MASK[size]:#x}, {b}, {sb:#x})")
        if size == 1:
            _acc_store(g, 2, 0, "hi << 8 | lo")
        else:
            _acc_store(g, size, 0, "lo")
            _acc_store(g, size, 2, "hi")
        return
    fn = "div" if mn == Mnemonic.DIV else "idiv"
    if size == 1:
        g.emit(f"q, rm = {fn}(cpu, r[0] >> 8 & 0xFF, r[0] & 0xFF, {b}, 0x80)")
        _acc_store(g, 2, 0, "rm << 8 | q")
    else:
        m = MASK[size]
        g.emit(f"q, rm = {fn}(cpu, r[2] & {m:#x}, r[0] & {m:#x}, {b}, {sb:#x})")
        _acc_store(g, size, 0, "q")
        _acc_store(g, size, 2, "rm")


def _cond_expr(g: Gen, cc: int) -> str:
    return f"c_{F.CC_NAMES[cc]}(cpu)"


def _jcc(g: Gen, cc: int) -> None:
    t = g.k(g.ins.near_branch_target)
    n = g.k(g.ins.next_ip)
    name = F.CC_NAMES[cc]
    if name in ("e", "ne"):
        test, neg = ("==", "") if name == "e" else ("!=", "not ")
        g.emit("lz = cpu._lz")
        g.emit(f"if lz is None: return {t} if {neg}cpu._fl & 0x40 else {n}")
        g.emit(f"return {t} if lz[1] {test} 0 else {n}")
        return
    if name in ("b", "ae", "be", "a", "l", "ge", "le", "g"):
        # Fast path for cmp/sub: compare the operands directly.
        cmp = {"b": "a < b", "ae": "a >= b", "be": "a <= b", "a": "a > b",
               "l": "(a ^ s) < (b ^ s)", "ge": "(a ^ s) >= (b ^ s)",
               "le": "(a ^ s) <= (b ^ s)", "g": "(a ^ s) > (b ^ s)"}[name]
        g.emit("lz = cpu._lz")
        g.emit(f"if lz is not None and lz[0] == {F.SUB}:")
        g.emit("_, _, a, b, s = lz", 1)
        g.emit(f"return {t} if {cmp} else {n}", 1)
    g.emit(f"return {t} if {_cond_expr(g, cc)} else {n}")


def _push(g: Gen) -> None:
    kind = g.ins.op_kind(0)
    if kind in _IMM_KINDS:
        size = 2 if kind in (OpKind.IMMEDIATE16, OpKind.IMMEDIATE8TO16) else 8
        s = g.op(0, size)
    else:
        s = g.op(0)
        size = s.size
    v = g.value(s, "v")
    g.emit(f"sp = (r[4] - {size}) & {M64:#x}")
    g.wr("sp", size, v)
    g.emit("r[4] = sp")


def _pop(g: Gen) -> None:
    d = g.op(0)
    size = d.size
    g.emit("sp = r[4]")
    g.rd("sp", size, "v")
    g.emit(f"nsp = (sp + {size}) & {M64:#x}")
    if d.kind == "m":
        va = g.ea(rsp_override="nsp")
        g.wr(va, size, "v")
        g.emit("r[4] = nsp")
    else:
        g.emit("r[4] = nsp")
        g.reg_store(d, "v")


def _check_canonical(g: Gen, var: str) -> None:
    g.emit(f"if {NONCANON_LO:#x} <= {var} < {NONCANON_HI:#x}: raise CpuException(13, 0)")


def _call(g: Gen) -> None:
    ins = g.ins
    nxt = g.k(ins.next_ip)
    if ins.op_kind(0) in (OpKind.NEAR_BRANCH64, OpKind.NEAR_BRANCH32):
        t = g.k(ins.near_branch_target)
    else:
        t = g.value(g.op(0), "t")
        _check_canonical(g, t)
    g.emit(f"sp = (r[4] - 8) & {M64:#x}")
    g.wr("sp", 8, nxt)
    g.emit("r[4] = sp")
    g.emit(f"return {t}")


def _jmp(g: Gen) -> None:
    ins = g.ins
    if ins.op_kind(0) in (OpKind.NEAR_BRANCH64, OpKind.NEAR_BRANCH32):
        g.emit(f"return {g.k(ins.near_branch_target)}")
        return
    t = g.value(g.op(0), "t")
    _check_canonical(g, t)
    g.emit(f"return {t}")


def _ret(g: Gen) -> None:
    ins = g.ins
    extra = ins.immediate(0) if ins.op_count else 0
    g.emit("sp = r[4]")
    g.rd("sp", 8, "t")
    _check_canonical(g, "t")
    g.emit(f"r[4] = (sp + {8 + extra}) & {M64:#x}")
    g.emit("return t")


def _mov(g: Gen) -> bool:
    """Returns False when the caller must append the usual 'return next'."""
    ins = g.ins
    r0 = ins.op_register(0) if ins.op_kind(0) == OpKind.REGISTER else None
    r1 = ins.op_register(1) if ins.op_kind(1) == OpKind.REGISTER else None
    if r1 in CONTROL_REGS:
        cr = CONTROL_REGS[r1]
        d = g.op(0)
        g.reg_store(d, "cpu.cr8_read()" if cr == 8 else f"cpu.cr{cr}")
        return False
    if r0 in CONTROL_REGS:
        cr = CONTROL_REGS[r0]
        g.emit(f"v = {g.reg_expr(g.op(1))}")
        if cr == 8:
            g.emit("if v > 15: raise CpuException(13, 0)")
            g.emit(f"cpu.rip = {g.k(ins.next_ip)}")
            g.emit("cpu.cr8_write(v)")
            g.emit("return cpu.rip")
            return True
        if cr == 3:
            g.emit(f"cpu.rip = {g.k(ins.next_ip)}")
            g.emit("cpu._write_cr3(v)")
            g.emit("return cpu.rip")
            return True
        g.emit(f"cpu.cr{cr} = v")
        return False
    d = g.op(0)
    s = g.op(1, d.size)
    dest = Dest(g, d, rmw=False)
    v = g.value(s, "v")
    dest.write(v)
    return False


def _movx(g: Gen, signed: bool) -> None:
    d = g.op(0)
    s = g.op(1)
    v = g.value(s, "v")
    if signed and s.size < d.size:
        sb = SIGN[s.size]
        v2 = f"(({v} ^ {sb:#x}) - {sb:#x}) & {MASK[d.size]:#x}"
    else:
        v2 = v
    g.reg_store(d, v2)


def _xchg(g: Gen) -> None:
    a_op, b_op = g.op(0), g.op(1)
    if a_op.kind == "m":
        a_op, b_op = b_op, a_op
    if b_op.kind == "m":
        dest = Dest(g, b_op, rmw=True)
        m = dest.read("m")
        g.emit(f"v = {g.reg_expr(a_op)}")
        dest.write("v")
        g.reg_store(a_op, m)
    else:
        g.emit(f"a = {g.reg_expr(a_op)}")
        g.emit(f"b = {g.reg_expr(b_op)}")
        g.reg_store(a_op, "b")
        g.reg_store(b_op, "a")


def _xadd(g: Gen) -> None:
    d, s = g.op(0), g.op(1)
    m, sb = MASK[d.size], SIGN[d.size]
    dest = Dest(g, d, rmw=True)
    g.emit(f"b = {g.reg_expr(s)}")
    a = dest.read("a")
    g.emit(f"res = ({a} + b) & {m:#x}")
    g.reg_store(s, a)
    dest.write("res")
    g.emit(f"cpu._lz = ({F.ADD}, res, {a}, b, {sb:#x})")


def _cmpxchg(g: Gen) -> None:
    d, s = g.op(0), g.op(1)
    m, sb = MASK[d.size], SIGN[d.size]
    acc = Op("r", d.size, 0)
    dest = Dest(g, d, rmw=True)
    g.emit(f"s = {g.reg_expr(s)}")
    g.emit(f"acc = {g.reg_expr(acc)}")
    a = dest.read("d")
    g.emit(f"cpu._lz = ({F.SUB}, (acc - {a}) & {m:#x}, acc, {a}, {sb:#x})")
    g.emit(f"if acc == {a}:")
    dest.write("s", 1)
    g.emit("else:")
    if d.kind == "m":
        dest.write(a, 1)
    g.reg_store(acc, a, 1)


def _setcc(g: Gen, cc: int) -> None:
    d = g.op(0)
    dest = Dest(g, d, rmw=False)
    g.emit(f"v = 1 if {_cond_expr(g, cc)} else 0")
    dest.write("v")


def _cmovcc(g: Gen, cc: int) -> None:
    d, s = g.op(0), g.op(1)
    v = g.value(s, "v")
    g.emit(f"if {_cond_expr(g, cc)}:")
    g.reg_store(d, v, 1)
    if d.size == 4:
        g.emit("else:")
        g.emit(f"r[{d.idx}] &= 0xFFFFFFFF", 1)


def _lea(g: Gen) -> None:
    d = g.op(0)
    g.reg_store(d, f"({g.ea_expr(seg=False)}) & {MASK[d.size]:#x}")


def _convert(g: Gen, mn: int) -> None:
    if mn == Mnemonic.CBW:
        g.reg_store(Op("r", 2, 0), "((r[0] & 0xFF) ^ 0x80) - 0x80 & 0xFFFF")
    elif mn == Mnemonic.CWDE:
        g.emit("r[0] = ((r[0] & 0xFFFF) ^ 0x8000) - 0x8000 & 0xFFFFFFFF")
    elif mn == Mnemonic.CDQE:
        g.emit(f"r[0] = ((r[0] & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000 & {M64:#x}")
    elif mn == Mnemonic.CWD:
        g.reg_store(Op("r", 2, 2), "0xFFFF if r[0] & 0x8000 else 0")
    elif mn == Mnemonic.CDQ:
        g.emit("r[2] = 0xFFFFFFFF if r[0] & 0x80000000 else 0")
    else:  # CQO
        g.emit(f"r[2] = {M64:#x} if r[0] >> 63 else 0")


def _leave(g: Gen) -> None:
    g.emit("sp = r[5]")
    g.rd("sp", 8, "v")
    g.emit(f"r[4] = (sp + 8) & {M64:#x}")
    g.emit("r[5] = v")


def _iretq(g: Gen) -> None:
    """Return from an interrupt frame (rip, cs, rflags, rsp, ss); cs and ss are ignored."""
    g.emit("sp = r[4]")
    g.rd("sp", 8, "t")
    g.emit(f"va = (sp + 16) & {M64:#x}")
    g.rd("va", 8, "fl")
    g.emit(f"va = (sp + 24) & {M64:#x}")
    g.rd("va", 8, "nsp")
    _check_canonical(g, "t")
    g.emit(f"cpu._fl = cpu._fl & {~F.POPF_MASK & M64:#x} | fl & {F.POPF_MASK:#x} | 2")
    g.emit("cpu._lz = None")
    g.emit("r[4] = nsp")
    g.emit("return t")


def _retire_and_leave(g: Gen, mn: int) -> None:
    """int3, int n and hlt complete (rip past them, counted as retired), then leave the
    step with the trap or the halt."""
    nxt = g.k(g.ins.next_ip)
    g.emit(f"cpu.rip = {nxt}")
    g.emit("cpu.instructions_retired += 1")
    if mn == Mnemonic.HLT:
        g.emit(f"raise Halt({nxt})")
    else:
        vector = "3" if mn == Mnemonic.INT3 else g.k(g.ins.immediate(0))
        g.emit(f"raise CpuException({vector}, None, {nxt})")


def _cmpxchg16b(g: Gen) -> None:
    va = g.ea()
    g.emit(f"if {va} & 15: raise CpuException(13, 0)")
    g.emit(f"old = cpu._rdw({va}, 16)")
    g.emit("if old == r[2] << 64 | r[0]:")
    g.emit(f"cpu._wr({va}, 16, r[1] << 64 | r[3])", 1)
    g.emit(f"set_flags(cpu, {F.ZF:#x}, {F.ZF:#x})", 1)
    g.emit("else:")
    g.emit(f"cpu._wr({va}, 16, old)", 1)
    g.emit(f"set_flags(cpu, {F.ZF:#x}, 0)", 1)
    g.emit(f"r[0] = old & {M64:#x}", 1)
    g.emit("r[2] = old >> 64", 1)


def _loop(g: Gen, mn: int) -> None:
    ins = g.ins
    t = g.k(ins.near_branch_target)
    n = g.k(ins.next_ip)
    if mn in (Mnemonic.JRCXZ, Mnemonic.JECXZ):
        m = M64 if mn == Mnemonic.JRCXZ else 0xFFFFFFFF
        g.emit(f"return {t} if r[1] & {m:#x} == 0 else {n}")
        return
    g.emit(f"c = r[1] = (r[1] - 1) & {M64:#x}")
    cond = "c"
    if mn == Mnemonic.LOOPE:
        cond = "c and c_e(cpu)"
    elif mn == Mnemonic.LOOPNE:
        cond = "c and c_ne(cpu)"
    g.emit(f"return {t} if {cond} else {n}")


_SETCC = {getattr(Mnemonic, "SET" + n.upper()) for n in F.CC_NAMES}
_CMOVCC = {getattr(Mnemonic, "CMOV" + n.upper()) for n in F.CC_NAMES}

_STRING = {
    Mnemonic.MOVSB: ("movs", 1), Mnemonic.MOVSW: ("movs", 2), Mnemonic.MOVSD: ("movs", 4),
    Mnemonic.MOVSQ: ("movs", 8), Mnemonic.STOSB: ("stos", 1), Mnemonic.STOSW: ("stos", 2),
    Mnemonic.STOSD: ("stos", 4), Mnemonic.STOSQ: ("stos", 8), Mnemonic.LODSB: ("lods", 1),
    Mnemonic.LODSW: ("lods", 2), Mnemonic.LODSD: ("lods", 4), Mnemonic.LODSQ: ("lods", 8),
    Mnemonic.CMPSB: ("cmps", 1), Mnemonic.CMPSW: ("cmps", 2), Mnemonic.CMPSD: ("cmps", 4),
    Mnemonic.CMPSQ: ("cmps", 8), Mnemonic.SCASB: ("scas", 1), Mnemonic.SCASW: ("scas", 2),
    Mnemonic.SCASD: ("scas", 4), Mnemonic.SCASQ: ("scas", 8),
}
_STRING_OPKINDS = {OpKind.MEMORY_SEG_RSI, OpKind.MEMORY_ESRDI}


def _string(ins: Instruction):
    op, size = _STRING[ins.mnemonic]
    if not any(ins.op_kind(i) in _STRING_OPKINDS for i in range(ins.op_count)):
        raise Unsupported("string operands")  # e.g. SSE movsd/cmpsd, or 32-bit addressing
    if op in ("cmps", "scas"):
        rep = "repe" if ins.has_repe_prefix else "repne" if ins.has_repne_prefix else None
    else:
        rep = "rep" if (ins.has_rep_prefix or ins.has_repne_prefix) else None
    seg = None
    if op in ("movs", "lods", "cmps"):
        s = ins.memory_segment
        seg = "gs" if s == Register.GS else "fs" if s == Register.FS else None
    return make_string(op, size, rep, seg, ins.ip, ins.next_ip)


def _raise_ud(rip: int):
    def ud(cpu):
        raise CpuException(6, None, rip)
    return ud


def compile_instruction(ins: Instruction):
    """A closure executing ``ins``; unsupported or invalid instructions raise #UD."""
    if ins.is_invalid:
        return _raise_ud(ins.ip)
    try:
        return _compile(ins)
    except Unsupported:
        return _raise_ud(ins.ip)


def _compile(ins: Instruction):
    mn = ins.mnemonic
    if ins.has_lock_prefix and (mn not in LOCKABLE or ins.op_count == 0
                                or ins.op_kind(0) != OpKind.MEMORY):
        raise Unsupported("lock")
    if mn in _STRING:
        return _string(ins)
    g = Gen(ins)
    done = False  # True when the body already returns
    if mn in _ALU:
        _alu(g, _ALU[mn])
    elif mn == Mnemonic.MOV:
        done = _mov(g)
    elif mn in (Mnemonic.MOVZX, Mnemonic.MOVSX, Mnemonic.MOVSXD):
        _movx(g, mn != Mnemonic.MOVZX)
    elif mn == Mnemonic.LEA:
        _lea(g)
    elif mn in (Mnemonic.INC, Mnemonic.DEC):
        _incdec(g, mn == Mnemonic.INC)
    elif mn in (Mnemonic.NEG, Mnemonic.NOT):
        _neg_not(g, mn == Mnemonic.NEG)
    elif mn in _SHIFT:
        _shift(g, _SHIFT[mn])
    elif mn in (Mnemonic.BT, Mnemonic.BTS, Mnemonic.BTR, Mnemonic.BTC):
        _bt(g, mn)
    elif mn in (Mnemonic.MUL, Mnemonic.IMUL, Mnemonic.DIV, Mnemonic.IDIV):
        _muldiv(g, mn)
    elif mn == Mnemonic.PUSH:
        _push(g)
    elif mn == Mnemonic.POP:
        _pop(g)
    elif mn == Mnemonic.CALL:
        if ins.op_kind(0) not in (OpKind.NEAR_BRANCH64, OpKind.REGISTER, OpKind.MEMORY):
            raise Unsupported("far call")
        _call(g)
        done = True
    elif mn == Mnemonic.JMP:
        if ins.op_kind(0) not in (OpKind.NEAR_BRANCH64, OpKind.REGISTER, OpKind.MEMORY):
            raise Unsupported("far jmp")
        _jmp(g)
        done = True
    elif mn == Mnemonic.RET:
        _ret(g)
        done = True
    elif ins.is_jcc_short_or_near:
        _jcc(g, _CC[ins.condition_code])
        done = True
    elif mn in (Mnemonic.LOOP, Mnemonic.LOOPE, Mnemonic.LOOPNE, Mnemonic.JRCXZ,
                Mnemonic.JECXZ):
        _loop(g, mn)
        done = True
    elif mn in _SETCC:
        _setcc(g, _CC[ins.condition_code])
    elif mn in _CMOVCC:
        _cmovcc(g, _CC[ins.condition_code])
    elif mn == Mnemonic.XCHG:
        _xchg(g)
    elif mn == Mnemonic.XADD:
        _xadd(g)
    elif mn == Mnemonic.CMPXCHG:
        _cmpxchg(g)
    elif mn in (Mnemonic.NOP, Mnemonic.PAUSE, Mnemonic.LFENCE, Mnemonic.MFENCE,
                Mnemonic.SFENCE, Mnemonic.PREFETCHNTA, Mnemonic.PREFETCHT0,
                Mnemonic.PREFETCHT1, Mnemonic.PREFETCHT2, Mnemonic.PREFETCHW):
        pass
    elif mn in (Mnemonic.CBW, Mnemonic.CWDE, Mnemonic.CDQE, Mnemonic.CWD, Mnemonic.CDQ,
                Mnemonic.CQO):
        _convert(g, mn)
    elif mn in (Mnemonic.INT3, Mnemonic.INT, Mnemonic.HLT):
        _retire_and_leave(g, mn)
        done = True
    elif mn == Mnemonic.CLI:
        g.emit(f"cpu._fl &= {~F.IF & M64:#x}")
    elif mn == Mnemonic.STI:
        g.emit(f"cpu._fl |= {F.IF:#x}")
    elif mn == Mnemonic.CLD:
        g.emit(f"cpu._fl &= {~F.DF & M64:#x}")
    elif mn == Mnemonic.STD:
        g.emit(f"cpu._fl |= {F.DF:#x}")
    elif mn == Mnemonic.CLC:
        g.emit("set_cf(cpu, 0)")
    elif mn == Mnemonic.STC:
        g.emit("set_cf(cpu, 1)")
    elif mn == Mnemonic.CMC:
        g.emit("set_cf(cpu, cf_now(cpu) ^ 1)")
    elif mn == Mnemonic.LAHF:
        g.emit("r[0] = r[0] & 0xFFFFFFFFFFFF00FF | (flags_now(cpu) & 0xD7 | 2) << 8")
    elif mn == Mnemonic.SAHF:
        g.emit("set_flags(cpu, 0xD5, r[0] >> 8 & 0xD5)")
    elif mn == Mnemonic.PUSHFQ:
        g.emit(f"sp = (r[4] - 8) & {M64:#x}")
        g.wr("sp", 8, f"flags_now(cpu) & {F.PUSHF_MASK:#x}")
        g.emit("r[4] = sp")
    elif mn == Mnemonic.POPFQ:
        g.emit("sp = r[4]")
        g.rd("sp", 8, "v")
        g.emit(f"r[4] = (sp + 8) & {M64:#x}")
        g.emit(f"cpu._fl = cpu._fl & {~F.POPF_MASK & M64:#x} | v & {F.POPF_MASK:#x} | 2")
        g.emit("cpu._lz = None")
    elif mn == Mnemonic.LEAVE:
        _leave(g)
    elif mn == Mnemonic.IRETQ:
        _iretq(g)
        done = True
    elif mn == Mnemonic.CMPXCHG16B:
        _cmpxchg16b(g)
    elif mn == Mnemonic.BSWAP:
        d = g.op(0)
        if d.size < 4:
            raise Unsupported("bswap r16")
        g.reg_store(d, f"int.from_bytes(({g.reg_expr(d)}).to_bytes({d.size}, 'little'), 'big')")
    elif mn in (Mnemonic.BSF, Mnemonic.BSR):
        d = g.op(0)
        v = g.value(g.op(1), "v")
        g.reg_store(d, f"{'bsf' if mn == Mnemonic.BSF else 'bsr'}(cpu, {v}, {g.reg_expr(d)})")
    elif mn == Mnemonic.RDMSR:
        g.emit("v = cpu._rdmsr(r[1] & 0xFFFFFFFF)")
        g.emit("r[0] = v & 0xFFFFFFFF")
        g.emit("r[2] = v >> 32 & 0xFFFFFFFF")
    elif mn == Mnemonic.WRMSR:
        g.emit("cpu._wrmsr(r[1] & 0xFFFFFFFF, (r[2] & 0xFFFFFFFF) << 32 | r[0] & 0xFFFFFFFF)")
    elif mn == Mnemonic.SWAPGS:
        g.emit("cpu.gs_base, cpu.kernel_gs_base = cpu.kernel_gs_base, cpu.gs_base")
    elif mn == Mnemonic.RDTSC:
        g.emit("v = cpu.instructions_retired")
        g.emit("r[0] = v & 0xFFFFFFFF")
        g.emit("r[2] = v >> 32 & 0xFFFFFFFF")
    elif mn == Mnemonic.INVLPG:
        g.emit("cpu.flush_tlb()")
    elif mn == Mnemonic.UD2:
        raise Unsupported("ud2")
    else:
        raise Unsupported(str(mn))
    if not done:
        g.emit(f"return {g.k(ins.next_ip)}")
    return g.build()
