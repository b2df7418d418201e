"""Expressions -> assembly: each leaves its value, canonical for its type, in rax."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import ast as A
from . import constants
from .emit import ARG_REGS, HOME_SPACE, Emitter, Place, hexa, reg
from .typesys import (
    I32,
    I64,
    PTR,
    U32,
    U64,
    Type,
    Types,
    common,
    fits,
    int_of,
    literal_type,
    pointer,
    promote,
    wrap,
)

INTERLOCKED = ("InterlockedIncrement", "InterlockedDecrement", "InterlockedExchange",
               "InterlockedCompareExchange")
BUILTINS = (*INTERLOCKED, "CTL_CODE")
_BUILTIN_ARGS = {"InterlockedIncrement": 1, "InterlockedDecrement": 1, "InterlockedExchange": 2,
                 "InterlockedCompareExchange": 3, "CTL_CODE": 4}

_COMPARE = {"==": ("e", "e"), "!=": ("ne", "ne"), "<": ("l", "b"), "<=": ("le", "be"),
            ">": ("g", "a"), ">=": ("ge", "ae")}
_INVERSE = {"e": "ne", "ne": "e", "l": "ge", "ge": "l", "le": "g", "g": "le",
            "b": "ae", "ae": "b", "be": "a", "a": "be"}
_ALU = {"+": "add", "-": "sub", "&": "and", "|": "or", "^": "xor"}


@dataclass(frozen=True)
class Signature:
    params: tuple[Type, ...] | None  # None: a routine written in assembly (not checked)
    returns: Type


@dataclass
class Symbols:
    """What names mean at driver level."""

    types: Types
    globals: dict[str, Type]
    routines: dict[str, Signature]
    nt_exists: Callable[[str], bool] | None


class ExprGen(Emitter):
    def __init__(self, routine: str, frame_base: int, syms: Symbols) -> None:
        super().__init__(routine, frame_base)
        self.syms = syms
        self.scopes: list[dict[str, Place]] = [{}]

    # names

    def local(self, name: str) -> Place | None:
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        return None

    def constant_of(self, name: str) -> int | None:
        if self.local(name) or name in self.syms.globals or name in self.syms.routines:
            return None
        return constants.lookup(name)

    # constant expressions

    def const(self, e: A.Expr) -> tuple[int, Type] | None:
        """The value and type of an expression known at compile time, else None."""
        if isinstance(e, A.Int):
            return e.value, literal_type(e.value, e.hex)
        if isinstance(e, A.Tag):
            return int.from_bytes(e.text.encode("ascii"), "little"), U32
        if isinstance(e, A.Name):
            value = self.constant_of(e.name)
            return None if value is None else (value, literal_type(value, True))
        if isinstance(e, A.SizeOf):
            return self.syms.types.resolve(e.type).size, U64
        if isinstance(e, A.Call) and e.name == "CTL_CODE" and not e.nt:
            self.check_count(e, 4)
            args = [self.const(a) for a in e.args]
            if any(a is None for a in args):
                raise self.fail("CTL_CODE takes constant arguments", e)
            return constants.ctl_code(*(a[0] for a in args if a)), U32
        if isinstance(e, A.Cast):
            inner = self.const(e.operand)
            t = self.syms.types.resolve(e.type)
            if inner is None or not t.scalar:
                return None
            return (wrap(inner[0], t) if t.is_int else inner[0] & (1 << 64) - 1), t
        if isinstance(e, A.Unary) and e.op in "-~!+":
            inner = self.const(e.operand)
            if inner is None or not inner[1].is_int:
                return None
            value, t = inner[0], promote(inner[1])
            if e.op == "!":
                return int(value == 0), I32
            return wrap({"-": -value, "~": ~value, "+": value}[e.op], t), t
        if isinstance(e, A.Binary):
            left, right = self.const(e.left), self.const(e.right)
            if left is None or right is None or not (left[1].is_int and right[1].is_int):
                return None
            return self.fold(e, left, right)
        return None

    def fold(self, e: A.Binary, left: tuple[int, Type], right: tuple[int, Type]):
        op = e.op
        if op in ("&&", "||"):
            return int(bool(left[0]) and bool(right[0]) if op == "&&"
                        else bool(left[0]) or bool(right[0])), I32
        if op in ("<<", ">>"):
            t = promote(left[1])
            a = wrap(left[0], t)
            n = right[0] & (8 * t.size - 1)
            return wrap(a << n if op == "<<" else a >> n, t), t
        t = common(left[1], right[1])
        a, b = wrap(left[0], t), wrap(right[0], t)
        if op in _COMPARE:
            result = {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b,
                      ">=": a >= b}[op]
            return int(result), I32
        if op in "/%" and b == 0:
            raise self.fail("division by zero", e)
        if op == "/":
            q = abs(a) // abs(b)
            return wrap(q if (a < 0) == (b < 0) else -q, t), t
        if op == "%":
            r = abs(a) % abs(b)
            return wrap(r if a >= 0 else -r, t), t
        value = {"+": a + b, "-": a - b, "*": a * b, "&": a & b, "|": a | b, "^": a ^ b}[op]
        return wrap(value, t), t

    def check_count(self, e: A.Call, count: int) -> None:
        if len(e.args) != count:
            raise self.fail(f"{e.name} takes {count} argument{'s' * (count != 1)}, "
                            f"not {len(e.args)}", e)

    def check_fits(self, e: A.Expr, t: Type) -> None:
        """A constant assigned to a narrower type must fit it."""
        known = self.const(e)
        if known is not None and t.is_int and known[1].is_int and not fits(known[0], t):
            raise self.fail(f"value {known[0]} does not fit in {t}", e)

    # simple operands: loaded straight into any register, no temporaries needed

    def simple(self, e: A.Expr) -> bool:
        if self.const(e) is not None:
            return True
        if isinstance(e, A.Name):
            if self.local(e.name) is not None:
                return True
            t = self.syms.globals.get(e.name)
            return t is not None and t.scalar or e.name in self.syms.routines
        if isinstance(e, A.Unary) and e.op == "&" and isinstance(e.operand, A.Name):
            return (self.local(e.operand.name) is not None
                    or e.operand.name in self.syms.globals
                    or e.operand.name in self.syms.routines)
        return False

    def load_simple(self, e: A.Expr, target: str) -> Type:
        known = self.const(e)
        if known is not None:
            self.constant(target, known[0])
            return known[1]
        if isinstance(e, A.Unary):  # &name
            assert isinstance(e.operand, A.Name)
            if self.local(e.operand.name) is None and e.operand.name not in self.syms.globals:
                self.emit(f"lea {target}, [{e.operand.name}]")  # a routine
                return PTR
            place = self.place(e.operand)
            assert place is not None and place.base != "rax"
            self.emit(f"lea {target}, {place.mem}")
            return self.address_type(e.operand, place)
        assert isinstance(e, A.Name)
        if e.name in self.syms.routines and self.local(e.name) is None \
                and e.name not in self.syms.globals:
            self.emit(f"lea {target}, [{e.name}]")
            return PTR
        place = self.place(e)
        assert place is not None
        self.load(target, place, e)
        return place.type

    # values

    def value(self, e: A.Expr) -> Type:
        """Code leaving e's canonical value in rax; returns its type."""
        self.where = (e.line, e.column)
        if self.simple(e):
            return self.load_simple(e, "rax")
        if isinstance(e, A.Name):
            return self.name_value(e)
        if isinstance(e, A.NtName):
            self.check_nt(e.name, e)
            self.emit(f"lea rax, [nt!{e.name}]")
            return PTR
        if isinstance(e, A.Unary):
            return self.unary(e)
        if isinstance(e, A.Binary):
            return self.binary(e)
        if isinstance(e, A.Cast):
            t = self.syms.types.resolve(e.type)
            if not t.scalar:
                raise self.fail(f"cannot cast to {t}: only to integers and pointers", e.type)
            self.convert("rax", self.value(e.operand), t)
            return t
        if isinstance(e, A.Call):
            return self.call(e)
        if isinstance(e, A.CallPtr):
            return self.call_pointer(e)
        if isinstance(e, A.SizeOf | A.Int | A.Tag):
            raise AssertionError("constants are simple")
        place = self.place(e)
        if place is None:
            raise self.fail("not a value", e)
        self.load("rax", place, e)
        return place.type

    def value_as(self, e: A.Expr, t: Type, what: str) -> Type:
        """e's value converted to `t` in rax (a constant is loaded already converted);
        returns e's own type.  `what` names the use in the error for a non-scalar."""
        known = self.const(e)
        if known is not None and t.is_int and known[1].is_int:
            self.check_fits(e, t)
            self.constant("rax", wrap(known[0], t))
            return known[1]
        self.check_fits(e, t)
        own = self.value(e)
        if not own.scalar:
            raise self.fail(f"cannot {what} a {own}", e)
        self.convert("rax", own, t)
        return own

    def name_value(self, e: A.Name) -> Type:
        t = self.syms.globals.get(e.name)
        if t is not None:  # a structure or array global (scalars are simple)
            place = Place(t, e.name)
            self.load("rax", place, e)
            return t
        raise self.fail(f"unknown name '{e.name}'", e)

    def address_type(self, e: A.Expr, place: Place) -> Type:
        t = place.type
        return pointer(t.target if t.kind == "array" else t)

    def unary(self, e: A.Unary) -> Type:
        if e.op == "&":
            return self.address_of(e)
        if e.op == "*":
            place = self.place(e)
            assert place is not None
            self.load("rax", place, e)
            return place.type
        if e.op == "!":
            t = self.value(e.operand)
            self.where = (e.line, e.column)
            self.emit("test rax, rax")
            self.emit("sete al")
            self.emit("movzx eax, al")
            return I32
        t = self.value(e.operand)
        self.where = (e.line, e.column)
        if not t.is_int:
            raise self.fail(f"'{e.op}' needs an integer, not {t}", e)
        result = promote(t)
        self.convert("rax", t, result)
        if e.op == "-":
            self.emit("neg rax")
        elif e.op == "~":
            self.emit("not rax")
        self.normalize("rax", result)
        return result

    def address_of(self, e: A.Unary) -> Type:
        operand = e.operand
        if isinstance(operand, A.Name) and operand.name in self.syms.routines \
                and self.local(operand.name) is None and operand.name not in self.syms.globals:
            self.emit(f"lea rax, [{operand.name}]")
            return PTR
        if isinstance(operand, A.NtName):
            self.check_nt(operand.name, operand)
            self.emit(f"lea rax, [nt!{operand.name}]")
            return PTR
        place = self.place(operand)
        if place is None:
            raise self.fail("cannot take the address of this expression", e)
        if place.bitfield is not None:
            raise self.fail(f"cannot take the address of bit field {place.bitfield.name}", e)
        self.emit(f"lea rax, {place.mem}")
        return self.address_type(operand, place)

    # binary operators

    def binary(self, e: A.Binary) -> Type:
        if e.op in ("&&", "||"):
            return self.truth_value(e)
        left = self.value(e.left)
        right = self.second(e.right, None if e.op in ("<<", ">>") else left)
        self.where = (e.line, e.column)
        return self.apply(e, e.op, left, right)

    def second(self, e: A.Expr, other: Type | None = None) -> Type:
        """With the first operand (of type `other`) in rax, the second into rcx (rax
        kept); a constant comes already converted to the type the two share."""
        known = self.const(e)
        if known is not None and other is not None and other.is_int and known[1].is_int:
            t = common(other, known[1])
            self.constant("rcx", wrap(known[0], t))
            return t
        if self.simple(e):
            return self.load_simple(e, "rcx")
        saved = self.save()
        t = self.value(e)
        self.emit("mov rcx, rax")
        self.restore(saved, "rax")
        return t

    def apply(self, e: A.Node, op: str, left: Type, right: Type) -> Type:
        """rax = rax op rcx, for operands of these types."""
        if op in _COMPARE:
            cc = self.compare(e, op, left, right)
            self.emit(f"set{cc} al")
            self.emit("movzx eax, al")
            return I32
        if left.kind == "ptr" or right.kind == "ptr":
            return self.pointer_arith(e, op, left, right)
        if not (left.is_int and right.is_int):
            bad = left if not left.is_int else right
            raise self.fail(f"'{op}' needs integers, not {bad}", e)
        if op in ("<<", ">>"):
            t = promote(left)
            self.convert("rax", left, t)
            self.emit(f"{'shl' if op == '<<' else 'sar' if t.signed else 'shr'} rax, cl")
            self.normalize("rax", t)
            return t
        t = common(left, right)
        self.convert("rax", left, t)
        self.convert("rcx", right, t)
        if op in _ALU:
            self.emit(f"{_ALU[op]} rax, rcx")
        elif op == "*":
            self.emit("imul rax, rcx")
        else:  # / and %: 64-bit division of canonical values is right for every width
            if t.signed:
                self.emit("cqo")
                self.emit("idiv rcx")
            else:
                self.emit("xor edx, edx")
                self.emit("div rcx")
            if op == "%":
                self.emit("mov rax, rdx")
        self.normalize("rax", t)
        return t

    def pointer_arith(self, e: A.Node, op: str, left: Type, right: Type) -> Type:
        def scale(target: str, t: Type) -> None:
            size = t.target.size if t.target is not None else 1
            if size > 1:
                self.emit(f"imul {target}, {target}, {hexa(size)}")

        if op == "+" and left.kind == "ptr" and right.is_int:
            scale("rcx", left)
            self.emit("add rax, rcx")
            return left
        if op == "+" and right.kind == "ptr" and left.is_int:
            scale("rax", right)
            self.emit("add rax, rcx")
            return right
        if op == "-" and left.kind == "ptr" and right.is_int:
            scale("rcx", left)
            self.emit("sub rax, rcx")
            return left
        if op == "-" and left.kind == "ptr" and right.kind == "ptr":
            self.emit("sub rax, rcx")
            size = left.target.size if left.target is not None else 1
            if size > 1:
                self.emit(f"mov ecx, {hexa(size)}")
                self.emit("cqo")
                self.emit("idiv rcx")
            return I64
        if op in ("&", "|", "^"):  # masks on addresses: the pointer as a number
            self.emit(f"{_ALU[op]} rax, rcx")
            return U64
        raise self.fail(f"'{op}' cannot be applied to {left} and {right}", e)

    def compare(self, e: A.Node, op: str, left: Type, right: Type) -> str:
        """cmp rax, rcx for these types; returns the condition code that is true."""
        if left.is_int and right.is_int:
            t = common(left, right)
            self.convert("rax", left, t)
            self.convert("rcx", right, t)
            signed = t.signed
        elif left.scalar and right.scalar:
            signed = False  # addresses compare unsigned
        else:
            bad = left if not left.scalar else right
            raise self.fail(f"cannot compare a {bad}", e)
        self.emit("cmp rax, rcx")
        return _COMPARE[op][0 if signed else 1]

    # conditions: jumps rather than 0/1 values where a branch is wanted

    def branch(self, e: A.Expr, target: str, when: bool) -> None:
        """Jump to `target` if e's truth is `when`; fall through otherwise."""
        self.where = (e.line, e.column)
        known = self.const(e)
        if known is not None:
            if bool(known[0]) == when:
                self.emit(f"jmp {target}")
            return
        if isinstance(e, A.Unary) and e.op == "!":
            self.branch(e.operand, target, not when)
            return
        if isinstance(e, A.Binary) and e.op in ("&&", "||"):
            if (e.op == "&&") == when:  # both must hold to jump
                skip = self.new_label()
                self.branch(e.left, skip, not when)
                self.branch(e.right, target, when)
                self.label(skip)
            else:  # either one decides
                self.branch(e.left, target, when)
                self.branch(e.right, target, when)
            return
        if isinstance(e, A.Binary) and e.op in _COMPARE:
            left = self.value(e.left)
            right = self.second(e.right, left)
            self.where = (e.line, e.column)
            cc = self.compare(e, e.op, left, right)
            self.emit(f"j{cc if when else _INVERSE[cc]} {target}")
            return
        t = self.value(e)
        if not t.scalar:
            raise self.fail(f"a {t} is not a condition", e)
        self.emit("test rax, rax")
        self.emit(f"{'jne' if when else 'je'} {target}")

    def truth_value(self, e: A.Expr) -> Type:
        false, done = self.new_label(), self.new_label()
        self.branch(e, false, False)
        self.emit("mov eax, 1")
        self.emit(f"jmp {done}")
        self.label(false)
        self.emit("xor eax, eax")
        self.label(done)
        return I32

    # places (lvalues)

    def place(self, e: A.Expr) -> Place | None:
        """Where e lives, emitting code for any address it needs (left in rax), or None
        when e is not something in memory."""
        if isinstance(e, A.Name):
            found = self.local(e.name)
            if found is not None:
                return found
            t = self.syms.globals.get(e.name)
            if t is not None:
                return Place(t, e.name)
            if e.name in self.syms.routines or self.constant_of(e.name) is not None:
                return None
            raise self.fail(f"unknown name '{e.name}'", e)
        if isinstance(e, A.Unary) and e.op == "*":
            t = self.value(e.operand)
            self.where = (e.line, e.column)
            return Place(self.pointee(t, e), "rax")
        if isinstance(e, A.RawMem):
            t = self.syms.types.resolve(e.type)
            if not t.is_int:
                raise self.fail(f"raw memory is read as u8, u16, u32 or u64, not {t}", e)
            self.address(e.address)
            return Place(t, "rax")
        if isinstance(e, A.Field):
            return self.field(e)
        if isinstance(e, A.Index):
            return self.index(e)
        return None

    def is_place(self, e: A.Expr) -> bool:
        """e names memory (as opposed to computing a value)."""
        if isinstance(e, A.Name):
            return (self.local(e.name) is not None or e.name in self.syms.globals)
        return isinstance(e, A.Field | A.Index | A.RawMem) or \
            (isinstance(e, A.Unary) and e.op == "*")

    def address(self, e: A.Expr) -> None:
        t = self.value(e)
        if not t.scalar:
            raise self.fail(f"an address must be an integer or pointer, not {t}", e)

    def pointee(self, t: Type, e: A.Node) -> Type:
        if t.kind != "ptr":
            raise self.fail(f"cannot dereference a {t}", e)
        if t.target is None:
            raise self.fail("cannot dereference an untyped ptr: cast it, e.g. (*u32)p, "
                            "or read u8[p] .. u64[p]", e)
        return t.target

    def field(self, e: A.Field) -> Place:
        if e.arrow:
            t = self.value(e.base)
            self.where = (e.line, e.column)
            if t.kind != "ptr":
                raise self.fail(f"'->' needs a pointer to a structure, not {t}", e)
            base = Place(self.pointee(t, e), "rax")
            if base.type.kind != "struct":
                raise self.fail(f"'->' needs a pointer to a structure, not {t}", e)
        else:
            found = self.place(e.base)
            if found is None or found.type.kind != "struct":
                what = found.type if found is not None else "value"
                raise self.fail(f"'.' needs a structure, not a {what}", e)
            base = found
        f = self.syms.types.field(base.type, e.name)
        if f is None:
            raise self.fail(f"{base.type.name} has no field '{e.name}'", e)
        bitfield = f if f.kind == "bitfield" else None
        return base.at(f.offset, self.syms.types.of_field(f), bitfield)

    def index(self, e: A.Index) -> Place:
        known = self.const(e.index)
        base = self.place(e.base) if self.is_place(e.base) else None
        if base is not None and base.type.kind == "array":
            element = base.type.target
            assert element is not None
            if known is not None:
                if not 0 <= known[0] < base.type.count:
                    raise self.fail(f"index {known[0]} is outside {base.type}", e.index)
                return base.at(known[0] * element.size, element)
            self.where = (e.line, e.column)
            self.emit(f"lea rax, {base.mem}")
        else:
            if base is not None:
                self.load("rax", base, e.base)
                t = base.type
            else:
                t = self.value(e.base)
            self.where = (e.line, e.column)
            element = self.pointee(t, e)
            if known is not None:
                return Place(element, "rax", wrap(known[0], I64) * element.size)
        index_type = self.second(e.index)
        self.where = (e.line, e.column)
        if not index_type.is_int:
            raise self.fail(f"an index must be an integer, not {index_type}", e.index)
        if element.size > 1:
            self.emit(f"imul rcx, rcx, {hexa(element.size)}")
        self.emit("add rax, rcx")
        return Place(element, "rax")

    # calls

    def call(self, e: A.Call) -> Type:
        if not e.nt and e.name in INTERLOCKED:
            return self.interlocked(e)
        if not e.nt and e.name == "CTL_CODE":
            known = self.const(e)
            assert known is not None
            self.constant("rax", known[0])
            return known[1]
        sig = None if e.nt else self.syms.routines.get(e.name)
        if sig is not None and sig.params is not None and len(e.args) != len(sig.params):
            n = len(sig.params)
            raise self.fail(f"{e.name} takes {n} argument{'s' * (n != 1)}, not {len(e.args)}",
                            e)
        if sig is None:
            self.check_nt(e.name, e)
        params = sig.params if sig is not None and sig.params is not None else None
        self.arguments(e.args, params)
        self.where = (e.line, e.column)
        self.emit(f"call {e.name}" if sig is not None else f"call nt!{e.name}")
        return sig.returns if sig is not None else U64

    def call_pointer(self, e: A.CallPtr) -> Type:
        t = self.value(e.target)
        if not t.scalar:
            raise self.fail(f"cannot call a {t}", e.target)
        saved = self.save()
        self.arguments(e.args, None)
        self.where = (e.line, e.column)
        self.restore(saved, "rax")
        self.emit("call rax")
        return U64

    def check_nt(self, name: str, e: A.Node) -> None:
        if self.syms.nt_exists is not None and not self.syms.nt_exists(name):
            raise self.fail(f"unknown routine '{name}': not in this driver nor in nt", e)

    def arguments(self, args: list[A.Expr], params: tuple[Type, ...] | None) -> None:
        """Evaluate arguments left to right, then place them: rcx, rdx, r8, r9, stack."""
        saved: dict[int, int] = {}
        for i, arg in enumerate(args):
            if not self.simple(arg):
                t = self.value(arg)
                self.pass_as(i, arg, t, params, "rax")
                saved[i] = self.save()
        for i in range(4, len(args)):
            arg = args[i]
            self.where = (arg.line, arg.column)
            home = f"qword ptr [rsp+{hexa(HOME_SPACE + 8 * (i - 4))}]"
            known = self.const(arg)
            if i in saved:
                self.emit(f"mov rax, qword ptr [rsp+{hexa(saved[i])}]")
            elif known is not None and -(1 << 31) <= self.wrap_arg(i, known, params) < (1 << 31):
                self.pass_check(i, arg, known[1], params)
                self.emit(f"mov {home}, {hexa(self.wrap_arg(i, known, params))}")
                continue
            else:
                self.pass_as(i, arg, self.load_simple(arg, "rax"), params, "rax")
            self.emit(f"mov {home}, rax")
        for i in range(min(4, len(args))):
            arg = args[i]
            self.where = (arg.line, arg.column)
            known = self.const(arg)
            if i in saved:
                self.emit(f"mov {ARG_REGS[i]}, qword ptr [rsp+{hexa(saved[i])}]")
            elif known is not None:
                self.pass_check(i, arg, known[1], params)
                self.constant(ARG_REGS[i], self.wrap_arg(i, known, params))
            else:
                self.pass_as(i, arg, self.load_simple(arg, ARG_REGS[i]), params, ARG_REGS[i])
        for i in sorted(saved, reverse=True):
            self.free(saved[i])

    @staticmethod
    def wrap_arg(i: int, known: tuple[int, Type], params) -> int:
        """A constant argument as the parameter's type holds it (else as a 64-bit value)."""
        t = params[i] if params is not None and params[i].is_int else I64
        return wrap(known[0], t)

    def pass_check(self, i: int, arg: A.Expr, t: Type, params) -> None:
        if params is not None:
            self.check_fits(arg, params[i])

    def pass_as(self, i: int, arg: A.Expr, t: Type, params, target: str) -> None:
        if params is not None:
            self.pass_check(i, arg, t, params)
            if not t.scalar:
                raise self.fail(f"cannot pass a {t}", arg)
            self.convert(target, t, params[i])

    def interlocked(self, e: A.Call) -> Type:
        self.check_count(e, _BUILTIN_ARGS[e.name])
        t = self.value(e.args[0])
        if t.kind != "ptr":
            raise self.fail(f"{e.name} needs a pointer, e.g. &Counter, not {t}", e.args[0])
        size = 8 if t.target is not None and t.target.size == 8 else 4
        result = int_of(size, True)
        self.where = (e.line, e.column)
        mem = f"{'qword' if size == 8 else 'dword'} ptr"
        if e.name in ("InterlockedIncrement", "InterlockedDecrement"):
            step = 1 if e.name == "InterlockedIncrement" else -1
            self.emit(f"mov {reg('rcx', size)}, {step}")
            self.emit(f"lock xadd {mem} [rax], {reg('rcx', size)}")
            self.emit(f"lea {reg('rax', size)}, [rcx{'+' if step > 0 else '-'}1]")
        elif e.name == "InterlockedExchange":
            address = self.save()
            self.value(e.args[1])
            self.where = (e.line, e.column)
            self.emit("mov rcx, rax")
            self.restore(address, "rax")
            self.emit(f"xchg {mem} [rax], {reg('rcx', size)}")
            self.emit(f"mov {reg('rax', size)}, {reg('rcx', size)}")
        else:
            address = self.save()
            self.value(e.args[1])
            exchange = self.save()
            self.value(e.args[2])
            self.where = (e.line, e.column)
            self.restore(exchange, "rdx")
            self.restore(address, "rcx")
            self.emit(f"lock cmpxchg {mem} [rcx], {reg('rdx', size)}")
        self.normalize("rax", result)
        return result


__all__ = ["BUILTINS", "ExprGen", "Signature", "Symbols", "U32", "I32", "I64", "U64"]
