"""Statements -> machine code: operand matching against iced's forms, layout, labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import iced_x86 as ix

from . import forms as F
from .errors import AsmError
from .syntax import (
    REGISTERS,
    Atom,
    Expr,
    Label,
    Line,
    MemOperand,
    Operand,
    RegOperand,
    Statement,
    StrOperand,
    ValueOperand,
    parse,
)

MASK64 = (1 << 64) - 1
_REL32_LIMIT = (1 << 31) - 32  # leaves room for the instruction's own length
_MAX_PASSES = 40
_STICKY_AFTER = 8  # passes after which a branch that was near once stays near
_MAX_ALIGN = 4096

_REG = ix.Register
_EXT = ix.RegisterExt
_CONTROL_REGISTERS = frozenset({_REG.CR0, _REG.CR2, _REG.CR3, _REG.CR4, _REG.CR8})
_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@$?")

Resolver = Callable[[str], "int | None"]


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _fits(value: int, bits: int) -> bool:
    """``value`` can be written in ``bits`` bits, read as signed or as unsigned."""
    return -(1 << (bits - 1)) <= value < (1 << bits)


def _distance(target: int, here: int) -> int:
    return _signed(target - here, 64)


def _fail(message: str, where) -> AsmError:
    return AsmError(message, where.line, where.column)


def _iced_message(exc: BaseException) -> str:
    text = str(exc).split(" : ", 1)[0].strip()
    return text or type(exc).__name__


def _is_iced_failure(exc: BaseException) -> bool:
    # a Rust panic surfaces as pyo3's PanicException, which is not an Exception
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


# --- evaluated operands ------------------------------------------------------------------


@dataclass
class _Value:
    value: int
    symbolic: bool
    op: ValueOperand


@dataclass
class _Mem:
    base: int
    index: int
    scale: int
    disp: int
    symbolic: bool
    rip: bool  # RIP-relative: disp is the absolute target (or, with rip_explicit, the offset)
    rip_explicit: bool  # written as [rip+N]
    op: MemOperand


@dataclass
class _Reg:
    reg: int
    op: RegOperand


_Evaluated = _Value | _Mem | _Reg


@dataclass
class _Pass:
    """Label addresses seen so far in this layout pass, and those of the previous pass."""

    current: dict[str, int] = field(default_factory=dict)
    previous: dict[str, int] | None = None
    guessed: bool = False  # a forward reference had no previous pass to go by


# --- the assembler ------------------------------------------------------------------------


class _Assembler:
    def __init__(self, lines: list[Line], base: int, resolve: Resolver) -> None:
        self.lines = lines
        self.base = base
        self.resolve = resolve
        self.externals: dict[str, int] = {}
        self.label_names: set[str] = set()
        self.longest: dict[int, int] = {}
        self.pass_no = 0
        # label names are needed up front (forward references); problems with them are
        # reported when layout reaches them, so errors come in source order
        self.bad_labels: dict[int, AsmError] = {}
        for index, line in enumerate(lines):
            if isinstance(line, Label):
                problem = self._check_label(line)
                if problem is None:
                    self.label_names.add(line.name)
                else:
                    self.bad_labels[index] = problem

    def _check_label(self, label: Label) -> AsmError | None:
        name = label.name
        if "!" in name or not set(name) <= _LABEL_CHARS:
            return _fail(f"invalid label name '{name}'", label)
        if name.lower() in REGISTERS:
            return _fail(f"'{name}' is a register, not a label", label)
        if name in self.label_names:
            return _fail(f"duplicate label '{name}'", label)
        return None

    # layout

    def run(self) -> tuple[bytes, dict[str, int]]:
        previous: dict[str, int] | None = None
        for self.pass_no in range(_MAX_PASSES):
            state = _Pass(previous=previous)
            out = bytearray()
            for index, line in enumerate(self.lines):
                here = self.base + len(out)
                if isinstance(line, Label):
                    if index in self.bad_labels:
                        raise self.bad_labels[index]
                    state.current[line.name] = here
                    continue
                out += self._statement(index, line, here, state)
            if not state.guessed and (previous is None or state.current == previous):
                return bytes(out), state.current
            previous = state.current
        raise AsmError("label addresses did not settle", 1, 1)

    # symbols and expressions

    def _symbol(self, atom: Atom, here: int, state: _Pass) -> int:
        name = str(atom.value)
        if name in self.label_names:
            if name in state.current:
                return state.current[name]
            if state.previous is not None:
                return state.previous[name]
            state.guessed = True
            return here
        if name not in self.externals:
            value = self.resolve(name)
            if value is None:
                raise _fail(f"unknown symbol '{name}'", atom)
            self.externals[name] = int(value)
        return self.externals[name]

    def _value(self, expr: Expr, here: int, state: _Pass) -> tuple[int, bool]:
        total = 0
        symbolic = False
        for term in expr.terms:
            product = 1
            for atom in term.factors:
                if atom.kind == "reg":
                    raise _fail(f"register '{atom.text}' not allowed here", atom)
                if atom.kind == "name":
                    if len(term.factors) > 1:
                        raise _fail(f"symbol '{atom.text}' cannot be multiplied", atom)
                    symbolic = True
                    product = self._symbol(atom, here, state)
                else:
                    product *= int(atom.value)
            total += term.sign * product
        return total, symbolic

    def _memory(self, op: MemOperand, here: int, state: _Pass) -> _Mem:
        regs: list[tuple[int, int | None, Atom]] = []
        disp = 0
        symbolic = False
        for term in op.expr.terms:
            reg_atoms = [a for a in term.factors if a.kind == "reg"]
            if not reg_atoms:
                value, sym = self._value(Expr([term], term.line, term.column), here, state)
                disp += value
                symbolic |= sym
                continue
            if len(reg_atoms) > 1:
                raise _fail("a register cannot be multiplied by a register", reg_atoms[1])
            if term.sign < 0:
                raise _fail("a register cannot be subtracted", term)
            names = [a for a in term.factors if a.kind == "name"]
            if names:
                raise _fail(f"symbol '{names[0].text}' cannot scale a register", names[0])
            scale: int | None = None
            for atom in term.factors:
                if atom.kind == "num":
                    scale = (scale or 1) * int(atom.value)
            if scale is not None and scale not in (1, 2, 4, 8):
                raise _fail("scale must be 1, 2, 4 or 8", term)
            regs.append((int(reg_atoms[0].value), scale, reg_atoms[0]))

        for reg, scale, atom in regs:
            if reg == _REG.RIP:
                if len(regs) > 1 or scale is not None:
                    raise _fail("rip cannot be combined with other registers", atom)
                if symbolic:
                    raise _fail("write [label], not [rip+label]", atom)
                if not -(1 << 31) <= disp < (1 << 31):
                    raise _fail("displacement out of range", op)
                return _Mem(_REG.NONE, _REG.NONE, 1, disp, False, True, True, op)
            if not _EXT.is_gpr64(reg):
                raise _fail(f"'{atom.text}' cannot address memory, use a 64-bit register", atom)
        if len(regs) > 2:
            raise _fail("too many registers in memory operand", regs[2][2])
        scaled = [r for r in regs if r[1] is not None]
        base = index = _REG.NONE
        scale = 1
        if len(regs) == 2:
            if len(scaled) == 2:
                raise _fail("only one register can be scaled", scaled[1][2])
            if scaled:
                (index, scale, _), (base, _, _) = scaled[0], next(r for r in regs if r[1] is None)
            else:
                (base, _, _), (index, _, _) = regs
                if index == _REG.RSP:
                    base, index = index, base
        elif regs:
            reg, s, _ = regs[0]
            if s is None or s == 1:
                base = reg
            else:
                index, scale = reg, s
        if index == _REG.RSP:
            raise _fail("rsp cannot be an index register", op)

        if not regs and symbolic:
            return _Mem(_REG.NONE, _REG.NONE, 1, disp & MASK64, True, True, False, op)
        if not -(1 << 63) <= disp <= MASK64 or not -(1 << 31) <= _signed(disp, 64) < (1 << 31):
            raise _fail("displacement out of range", op)
        return _Mem(base, index, scale, _signed(disp, 64), symbolic, False, False, op)

    def _operand(self, op: Operand, here: int, state: _Pass) -> _Evaluated:
        if isinstance(op, RegOperand):
            if op.reg == _REG.RIP:
                raise _fail("rip can only address memory", op)
            return _Reg(op.reg, op)
        if isinstance(op, MemOperand):
            return self._memory(op, here, state)
        if isinstance(op, StrOperand):
            raise _fail("a string is only allowed after db", op)
        value, symbolic = self._value(op.expr, here, state)
        return _Value(value, symbolic, op)

    # statements

    def _statement(self, index: int, st: Statement, here: int, state: _Pass) -> bytes:
        if st.mnemonic in F.DIRECTIVES:
            if st.prefixes:
                raise _fail(f"prefix '{st.prefixes[0].name}' before a directive", st.prefixes[0])
            return self._directive(st, here, state)
        return self._instruction(index, st, here, state)

    def _directive(self, st: Statement, here: int, state: _Pass) -> bytes:
        if not st.operands:
            raise _fail(f"'{st.text}' needs a value", st)
        if st.mnemonic == "align":
            if len(st.operands) != 1 or not isinstance(st.operands[0], ValueOperand):
                raise _fail("align takes one number", st)
            op = st.operands[0]
            n, symbolic = self._value(op.expr, here, state)
            if symbolic or n < 1 or n > _MAX_ALIGN or n & (n - 1):
                raise _fail(f"alignment must be a power of two up to {_MAX_ALIGN}", op)
            return b"\xcc" * (-here % n)
        width = {"db": 1, "dw": 2, "dd": 4, "dq": 8}[st.mnemonic]
        out = bytearray()
        for op in st.operands:
            if isinstance(op, StrOperand) and width == 1:
                out += op.data
                continue
            if not isinstance(op, ValueOperand):
                raise _fail(f"'{st.text}' takes numbers or symbols", op)
            value, _ = self._value(op.expr, here, state)
            if not _fits(value, width * 8):
                raise _fail(f"value out of range for {st.text}", op)
            out += (value & ((1 << (width * 8)) - 1)).to_bytes(width, "little")
        return bytes(out)

    def _instruction(self, index: int, st: Statement, here: int, state: _Pass) -> bytes:
        mnemonic = F.canonical_mnemonic(st.mnemonic)
        if mnemonic not in F.FORMS:
            raise _fail(f"unknown mnemonic '{st.text}'", st)
        ops = [self._operand(op, here, state) for op in st.operands]
        if (
            mnemonic == "int"
            and len(ops) == 1
            and isinstance(ops[0], _Value)
            and not ops[0].symbolic
            and ops[0].value == 3
        ):
            mnemonic, ops = "int3", []
        candidates = self._shapes(mnemonic, ops)
        if not candidates and mnemonic in ("xchg", "test") and len(ops) == 2:
            ops = [ops[1], ops[0]]
            candidates = self._shapes(mnemonic, ops)
        if not candidates:
            raise _fail(f"invalid operands for '{st.text}'", st)
        candidates = self._narrow_size(candidates, ops)
        prefixes = self._prefixes(st, candidates[0], ops)
        choices = self._fit_values(candidates, ops, here)
        built: list[tuple[int, int, ix.Instruction]] = []
        problem: BaseException | None = None
        for order, (form, args) in enumerate(choices):
            try:
                instr = self._build(form, args, ops, here, prefixes)
                length = len(self._encode(instr, here)) if len(choices) > 1 else 0
            except AsmError:
                raise
            except BaseException as exc:
                if not _is_iced_failure(exc):
                    raise
                problem = problem or exc
                continue
            built.append((length, order, instr))
        if not built:
            raise _fail(f"cannot encode '{st.text}': {_iced_message(problem)}", st)
        _, order, instr = min(built, key=lambda b: (b[0], b[1]))
        try:
            code = self._encode(instr, here)
            if choices[order][0].branch == 4:
                code = self._keep_near(index, instr, code, here)
        except BaseException as exc:
            if not _is_iced_failure(exc):
                raise
            raise _fail(f"cannot encode '{st.text}': {_iced_message(exc)}", st) from None
        return code

    # matching

    def _shapes(self, mnemonic: str, ops: list[_Evaluated]) -> list[F.Form]:
        out = []
        for form in F.FORMS[mnemonic]:
            if form.string:
                if not ops:
                    out.append(form)
                continue
            if len(form.kinds) != len(ops):
                continue
            if all(_kind_accepts(k, op, form) for k, op in zip(form.kinds, ops, strict=True)):
                if form.name == "XCHG_R32_EAX" and all(
                    isinstance(op, _Reg) and op.reg == _REG.EAX for op in ops
                ):
                    continue  # 90 would be nop, not a zero-extending exchange
                out.append(form)
        return out

    def _narrow_size(self, candidates: list[F.Form], ops: list[_Evaluated]) -> list[F.Form]:
        sized = any(
            (isinstance(op, _Reg) and _EXT.is_gpr(op.reg))
            or (isinstance(op, _Mem) and op.op.size is not None)
            for op in ops
        )
        if not sized:
            # push 1, ret, leave, push [rax]: the 64-bit default, not the 66h-prefixed form
            wide = [f for f in candidates if f.op_size != 16]
            candidates = wide or candidates
        for pos, op in enumerate(ops):
            if isinstance(op, _Mem) and op.op.size is None:
                sizes = {_memory_size(f, pos) for f in candidates}
                if len(sizes) > 1:
                    raise _fail("operand size not specified (use byte/word/dword/qword ptr)", op.op)
        return candidates

    def _prefixes(self, st: Statement, form: F.Form, ops: list[_Evaluated]) -> set[str]:
        seen: set[str] = set()
        for prefix in st.prefixes:
            name = {"repz": "repe", "repnz": "repne"}.get(prefix.name, prefix.name)
            if name in seen or (name.startswith("rep") and any(s.startswith("rep") for s in seen)):
                raise _fail(f"repeated prefix '{prefix.name}'", prefix)
            if name == "lock":
                ok = form.info.can_use_lock_prefix and bool(ops) and isinstance(ops[0], _Mem)
            elif name == "repne":
                ok = form.string and form.info.can_use_repne_prefix
            else:
                ok = form.string and form.info.can_use_rep_prefix
            if not ok:
                raise _fail(f"prefix '{prefix.name}' not allowed with '{st.text}'", prefix)
            seen.add(name)
        return seen

    def _fit_values(self, candidates: list[F.Form], ops: list[_Evaluated], here: int):
        """Forms whose immediates can hold the values, each with its operand arguments."""
        branch_forms = [f for f in candidates if f.branch]
        if branch_forms:
            # iced's block encoder picks short or near; give it the near form where there is one
            near = (
                [f for f in branch_forms if f.branch == 4]
                or [f for f in branch_forms if f.info.address_size != 32]
                or branch_forms
            )
            target = next(op for op in ops if isinstance(op, _Value))
            if not 0 <= target.value <= MASK64:
                raise _fail("branch target out of range", target.op)
            if abs(_distance(target.value, here)) > _REL32_LIMIT:
                raise _fail("branch target out of range (more than 2 GB away)", target.op)
            return [(near[0], [target.value])]
        fitting = []
        bad_value: _Value | None = None
        for form in candidates:
            args: list[int] = []
            for kind, op in zip(form.kinds, ops, strict=False):
                if kind in F.IMM_KINDS and isinstance(op, _Value):
                    arg = _immediate(kind, op)
                    if arg is None:
                        bad_value = bad_value or op
                        break
                    args.append(arg)
            else:
                fitting.append((form, args))
        if not fitting:
            assert bad_value is not None
            raise _fail("immediate value out of range", bad_value.op)
        return fitting

    # building and encoding

    def _build(self, form, args, ops, here, prefixes) -> ix.Instruction:
        if form.string:
            instr = getattr(ix.Instruction, f"create_{form.mnemonic}")(64)
        elif form.branch:
            instr = ix.Instruction.create_branch(form.code, args[0])
        else:
            values = iter(args)
            call_args: list = [form.code]
            suffix = ""
            for kind, op in zip(form.kinds, ops, strict=True):
                if isinstance(op, _Reg):
                    suffix += "_reg"
                    call_args.append(op.reg)
                elif isinstance(op, _Mem):
                    suffix += "_mem"
                    call_args.append(self._memory_operand(op, here, 0))
                else:
                    bits = F.IMM_KINDS[kind][0]
                    suffix += "_i64" if bits == 64 else "_i32"
                    call_args.append(next(values))
            instr = getattr(ix.Instruction, "create" + suffix)(*call_args)
            mem = next((op for op in ops if isinstance(op, _Mem)), None)
            if mem is not None and mem.rip_explicit:
                # [rip+N] is relative to the end of this instruction: measure, then rebuild
                length = ix.Encoder(64).encode(instr, here)
                pos = next(i for i, op in enumerate(ops) if op is mem)
                call_args[1 + pos] = self._memory_operand(mem, here, length)
                instr = getattr(ix.Instruction, "create" + suffix)(*call_args)
        # rep and repe are the same F3 byte: only ever switch flags on
        if "lock" in prefixes:
            instr.has_lock_prefix = True
        if "rep" in prefixes:
            instr.has_rep_prefix = True
        if "repe" in prefixes:
            instr.has_repe_prefix = True
        if "repne" in prefixes:
            instr.has_repne_prefix = True
        return instr

    def _memory_operand(self, mem: _Mem, here: int, length: int) -> ix.MemoryOperand:
        seg = mem.op.segment if mem.op.segment is not None else _REG.NONE
        if mem.rip:
            target = (here + length + mem.disp) & MASK64 if mem.rip_explicit else mem.disp
            if abs(_distance(target, here)) > _REL32_LIMIT:
                raise _fail("RIP-relative target out of range (more than 2 GB away)", mem.op)
            return ix.MemoryOperand.ctor_u64(_REG.RIP, displ=target, displ_size=8, seg=seg)
        if mem.symbolic or (mem.base == _REG.NONE and mem.index == _REG.NONE):
            size = 8  # a full 32-bit displacement
        else:
            size = 1 if mem.disp else 0  # disp8 when it fits, else disp32
        return ix.MemoryOperand(mem.base, mem.index, mem.scale, mem.disp, size, False, seg)

    @staticmethod
    def _encode(instr: ix.Instruction, here: int) -> bytes:
        instr.ip = here
        encoder = ix.BlockEncoder(64)
        encoder.add(instr)
        return encoder.encode(here)

    def _keep_near(self, index: int, instr: ix.Instruction, code: bytes, here: int) -> bytes:
        """After a few passes a branch that has been near stays near, so layout settles."""
        longest = self.longest.get(index, 0)
        if self.pass_no >= _STICKY_AFTER and len(code) < longest:
            encoder = ix.Encoder(64)
            encoder.encode(instr, here)  # as built: the rel32 form
            code = encoder.take_buffer()
        self.longest[index] = max(longest, len(code))
        return code


def _memory_size(form: F.Form, pos: int) -> int:
    return form.mem_size or F.RM_KINDS.get(form.kinds[pos], 0)


def _kind_accepts(kind: int, op: _Evaluated, form: F.Form) -> bool:
    if isinstance(op, _Reg):
        reg = op.reg
        if kind in F.REG_KINDS or kind in F.RM_KINDS:
            size = F.REG_KINDS.get(kind) or F.RM_KINDS[kind]
            return _EXT.is_gpr(reg) and _EXT.size(reg) == size
        if kind in F.FIXED_KINDS:
            return reg == F.FIXED_KINDS[kind]
        if kind == F.K.SEG_REG:
            return _EXT.is_segment_register(reg)
        if kind == F.K.CR_REG:
            return reg in _CONTROL_REGISTERS
        if kind == F.K.DR_REG:
            return _EXT.is_dr(reg)
        return False
    if isinstance(op, _Mem):
        size = op.op.size
        if kind in F.RM_KINDS:
            return size is None or size == (form.mem_size or F.RM_KINDS[kind])
        if kind == F.K.MEM:
            return size is None or form.mem_size in (0, size)
        return False
    return kind in F.IMM_KINDS or kind in F.BRANCH_KINDS


def _immediate(kind: int, op: _Value) -> int | None:
    """The signed argument for iced's ``create_*_i32/_i64``, or None if the value won't fit."""
    value = op.value
    bits, extended = F.IMM_KINDS[kind]
    if kind == F.K.IMM8_CONST_1:
        return 1 if value == 1 and not op.symbolic else None
    if op.symbolic and bits == 8:
        return None  # an address is never an 8-bit immediate; keeps the layout stable
    if extended:
        if not _fits(value, extended):
            return None
        wide = _signed(value, extended)
        return wide if -(1 << (bits - 1)) <= wide < (1 << (bits - 1)) else None
    if not _fits(value, bits):
        return None
    return _signed(value, bits)


# --- public API ------------------------------------------------------------------------------


@dataclass
class Assembly:
    code: bytes
    base: int
    labels: dict[str, int]

    def unwind_of(self, label: str) -> list[tuple[int, str, int | str]]:
        """The ``push reg`` / ``sub rsp, imm`` prologue at ``label``, as unwind data sees it."""
        start = self.labels[label]
        decoder = ix.Decoder(64, self.code[start - self.base :], ip=start)
        fmt = ix.Formatter(ix.FormatterSyntax.MASM)
        out: list[tuple[int, str, int | str]] = []
        for instr in decoder:
            end = instr.next_ip - start
            if (
                instr.mnemonic == ix.Mnemonic.PUSH
                and instr.op0_kind == ix.OpKind.REGISTER
                and _EXT.is_gpr64(instr.op0_register)
            ):
                out.append((end, "push", fmt.format_register(instr.op0_register)))
            elif (
                instr.mnemonic == ix.Mnemonic.SUB
                and instr.op_count == 2
                and instr.op0_kind == ix.OpKind.REGISTER
                and instr.op0_register == _REG.RSP
                and instr.op1_kind != ix.OpKind.REGISTER
                and instr.op1_kind != ix.OpKind.MEMORY
                and 0 < instr.immediate(1) < (1 << 31)
            ):
                out.append((end, "alloc", instr.immediate(1)))
            else:
                break
        return out


def assemble(source: str, base: int, resolve: Resolver = lambda name: None) -> Assembly:
    """Assemble ``source`` to run at address ``base``.

    ``resolve`` maps names that are not labels of the source (``nt!KeBugCheckEx``) to
    addresses, or returns None for unknown names.  Any problem with the source raises
    :class:`AsmError` carrying its line and column.
    """
    if not isinstance(base, int) or not 0 <= base <= MASK64:
        raise ValueError(f"base address out of range: {base!r}")
    lines = parse(source)
    code, labels = _Assembler(lines, base, resolve).run()
    return Assembly(code, base, labels)
