"""kd's C++ expression evaluator (`??`, `@@c++(...)`).

Text is cut into tokens here (a word is a type name or a symbol depending on the
target's types), parsed by the Lark grammar `commands/grammar/cpp.lark` into plain node
objects, and evaluated over C types (`commands.cpp_types`): a variable's value is its
content, pointer arithmetic is scaled, comparisons give `bool`, integers follow C's
promotions and usual arithmetic conversions (Windows sizes: `long` is 32 bits), numbers
are decimal unless written `0x` (hex) or with a leading `0` (octal), and take the
suffixes `u`, `l`, `ul`, `ll`, `ull`, `i64`, `ui64`.

Registers need `@` (`@rax`); `@$thread`, `@$proc`, `@$prcb` and `@$pcr` are typed
pointers to `_ETHREAD`, `_EPROCESS`, `_KPRCB` and `_KPCR`, as in kd.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedInput
from lark.lexer import Lexer

from commands import cpp_types as ct
from commands.cpp_types import CType
from commands.errors import (
    KdBadRegisterError,
    KdError,
    KdExpressionError,
    KdMemoryError,
    KdMissingExpressionError,
    KdOperandError,
    KdResolveError,
    KdSyntaxError,
)
from commands.grammar import load as load_grammar
from commands.target import MemoryAccessError, TypeProvider

MASK64 = (1 << 64) - 1


class KdTypeConflictError(KdExpressionError):
    """An operator applied to a type it does not take: `Type conflict error at '...'`."""

    kind = "Type conflict"


@dataclass(frozen=True)
class GlobalSymbol:
    address: int
    function: bool
    type: str = ""  # dt display type when the symbols know it


class CppContext(Protocol):
    """What the C++ evaluator asks of the debugger."""

    types: TypeProvider

    def register(self, name: str) -> int | None:
        """`rax`, `$thread`, `$t0`, ... (lower case, no `@`); None if unknown."""
        ...

    def global_symbol(self, name: str) -> GlobalSymbol | None:
        """`nt!KiProcessorBlock`, `KeBugCheckEx`; None if unknown."""
        ...

    def read_memory(self, address: int, size: int) -> bytes:
        """Virtual memory; raises MemoryAccessError."""
        ...

    def masm(self, text: str) -> int:
        """The value of a MASM expression (for `@@masm(...)`)."""
        ...


# ------------------------------------------------------------------------------- lexer

_SPACE = re.compile(r"\s*")
_NUMBER = re.compile(r"(0[xX][0-9a-fA-F`]+|[0-9]+)((?i:ui64|i64|ull|llu|ul|lu|ll|u|l)?)"
                     r"(?![A-Za-z0-9_])")
_IDENT = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*(?:![A-Za-z_$?@][A-Za-z0-9_$?@]*)?"
                    r"(?:::~?[A-Za-z_$][A-Za-z0-9_$]*)*")
_REGISTER = re.compile(r"@\$?[A-Za-z0-9_]+")
_MACRO = re.compile(r"#(FIELD_OFFSET|CONTAINING_RECORD)\b", re.IGNORECASE)
_EMBED = re.compile(r"@@(c\+\+|masm)?\(", re.IGNORECASE)
_PUNCTUATION = (
    ("->", "ARROW"), ("<<", "SHIFTOP"), (">>", "SHIFTOP"), ("<=", "RELOP"), (">=", "RELOP"),
    ("==", "EQOP"), ("!=", "EQOP"), ("&&", "ANDAND"), ("||", "OROR"), ("<", "RELOP"),
    (">", "RELOP"), ("+", "PLUS"), ("-", "MINUS"), ("*", "STAR"), ("/", "SLASH"),
    ("%", "PERCENT"), ("&", "AMP"), ("^", "CARET"), ("|", "PIPE"), ("!", "BANG"),
    ("~", "TILDE"), ("?", "QUESTION"), (":", "COLON"), ("(", "LPAR"), (")", "RPAR"),
    ("[", "LBRACK"), ("]", "RBRACK"), (".", "DOT"), (",", "COMMA"),
)
_TAGS = ("struct", "union", "enum", "class")


class _Tok(Token):
    __slots__ = ("payload",)


def _tok(kind: str, text: str, start: int, end: int, payload: Any = None) -> _Tok:
    tok = _Tok(kind, text, start_pos=start, end_pos=end)
    tok.payload = payload
    return tok


def _matching_paren(text: str, open_at: int) -> int | None:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return None


def _lex(text: str, types: TypeProvider) -> Iterator[_Tok]:
    """Tokens of `text`; text that is no token becomes a BAD token (the parser stops)."""
    pos = _SPACE.match(text, 0).end()
    n = len(text)
    while pos < n:
        m = _EMBED.match(text, pos)
        if m:
            close = _matching_paren(text, m.end() - 1)
            if close is None:
                yield _tok("BAD", text[pos:], pos, n)
                return
            which = (m.group(1) or "masm").lower()
            yield _tok("EMBED", text[pos:close + 1], pos, close + 1,
                       (which, text[m.end():close], m.end()))
            pos = _SPACE.match(text, close + 1).end()
            continue
        m = _REGISTER.match(text, pos)
        if m:
            yield _tok("REGISTER", m.group(), pos, m.end())
        elif (m := _MACRO.match(text, pos)) is not None:
            yield _tok(m.group(1).upper(), m.group(), pos, m.end())
        elif (m := _NUMBER.match(text, pos)) is not None:
            yield _tok("NUMBER", m.group(), pos, m.end(), _literal(m.group(1), m.group(2)))
        elif (m := _IDENT.match(text, pos)) is not None:
            tok = _word(text, m, types)
            yield tok
            pos = _SPACE.match(text, tok.end_pos).end()
            continue
        else:
            for punct, kind in _PUNCTUATION:
                if text.startswith(punct, pos):
                    yield _tok(kind, punct, pos, pos + len(punct))
                    m = None
                    pos += len(punct)
                    break
            else:
                yield _tok("BAD", text[pos:], pos, n)
                return
            pos = _SPACE.match(text, pos).end()
            continue
        pos = _SPACE.match(text, m.end()).end()


def _word(text: str, m: re.Match, types: TypeProvider) -> _Tok:
    """A name: `sizeof`, `true`/`false`, a type name (C keywords joined into one token,
    `struct X`, a catalog type, a Windows typedef) or a symbol."""
    word, start, end = m.group(), m.start(), m.end()
    if word == "sizeof":
        return _tok("SIZEOF", word, start, end)
    if word in ("true", "false"):
        return _tok("NUMBER", word, start, end, (int(word == "true"), ct.BOOL))
    if word in _TAGS:
        nxt = _IDENT.match(text, _SPACE.match(text, end).end())
        if nxt is not None:
            found = ct.from_catalog(types, nxt.group())
            if found is not None:
                return _tok("TYPENAME", text[start:nxt.end()], start, nxt.end(), found)
        return _tok("BAD", text[start:], start, len(text))
    if word in ct.C_TYPE_WORDS:
        words, last = [word], end
        while True:
            nxt = _IDENT.match(text, _SPACE.match(text, last).end())
            if nxt is None or nxt.group() not in ct.C_TYPE_WORDS:
                break
            words.append(nxt.group())
            last = nxt.end()
        found = ct.c_named(" ".join(words))
        if found is None:
            return _tok("BAD", text[start:], start, len(text))
        return _tok("TYPENAME", text[start:last], start, last, found)
    if word in ct.C_NAMED_TYPES:
        return _tok("TYPENAME", word, start, end, ct.c_named(word))
    found = ct.from_catalog(types, word)
    if found is not None:
        return _tok("TYPENAME", word, start, end, found)
    return _tok("NAME", word, start, end)


def _literal(digits: str, suffix: str) -> tuple[int, CType]:
    """A number's value and C type (MSVC's rules: the first type of the list that holds
    the value)."""
    text = digits.replace("`", "")
    if text.lower().startswith("0x"):
        value, hexadecimal = int(text[2:], 16), True
    elif len(text) > 1 and text.startswith("0") and set(text) <= set("01234567"):
        value, hexadecimal = int(text, 8), True
    else:
        value, hexadecimal = int(text, 10), False
    s = suffix.lower()
    if s in ("i64", "ll"):
        order = [ct.INT64, ct.UINT64]
    elif s in ("ui64", "ull", "llu"):
        order = [ct.UINT64]
    elif s in ("ul", "lu"):
        order = [ct.ULONG, ct.UINT64]
    elif s == "u":
        order = [ct.UINT, ct.UINT64]
    elif s == "l":
        order = [ct.LONG, ct.ULONG, ct.INT64, ct.UINT64]
    elif hexadecimal:
        order = [ct.INT, ct.UINT, ct.INT64, ct.UINT64]
    else:
        order = [ct.INT, ct.INT64, ct.UINT64]
    for t in order:
        limit = 1 << (t.size * 8 - (1 if t.signed else 0))
        if value < limit:
            return value, t
    return value & MASK64, ct.UINT64


# ------------------------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True)
class Number:
    value: int
    type: CType
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Ident:
    """A symbol: `nt!KiProcessorBlock`, `KeBugCheckEx`."""

    name: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Reg:
    name: str  # lower case, without `@`
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Embedded:
    """`@@masm(text)` or `@@c++(text)`; `offset` is where `text` starts."""

    evaluator: str
    text: str
    offset: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class TypeName:
    type: CType
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Prefix:
    op: str
    operand: Any
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Infix:
    op: str
    left: Any
    right: Any
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Conditional:
    test: Any
    yes: Any
    no: Any
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Cast:
    type: TypeName
    operand: Any
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class SizeOf:
    operand: Any  # a TypeName or an expression node
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Index:
    base: Any
    index: Any
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Member:
    base: Any
    field: str
    arrow: bool
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class FieldOffset:
    type: TypeName
    path: tuple[str, ...]
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class ContainingRecord:
    address: Any
    type: TypeName
    path: tuple[str, ...]
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Paren:
    inner: Any
    start: int
    end: int


class _ToNodes(Transformer):
    """Parse tree -> nodes; runs inline, as the LALR parser reduces."""

    def number(self, c):
        (tok,) = c
        value, type_ = tok.payload
        return Number(value, type_, tok.start_pos, tok.end_pos)

    def name(self, c):
        (tok,) = c
        return Ident(str(tok), tok.start_pos, tok.end_pos)

    def register(self, c):
        (tok,) = c
        return Reg(str(tok)[1:].lower(), tok.start_pos, tok.end_pos)

    def embed(self, c):
        (tok,) = c
        which, text, offset = tok.payload
        return Embedded(which, text, offset, tok.start_pos, tok.end_pos)

    def paren(self, c):
        lpar, inner, rpar = c
        return Paren(inner, lpar.start_pos, rpar.end_pos)

    def type_name(self, c):
        tok, *stars = c
        t = tok.payload
        for _ in stars:
            t = ct.pointer_to(t)
        end = stars[-1].end_pos if stars else tok.end_pos
        return TypeName(t, tok.start_pos, end)

    def field_path(self, c):
        return tuple(str(t) for t in c if t.type == "NAME")

    def prefix(self, c):
        op, operand = c
        return Prefix(str(op), operand, op.start_pos, operand.end)

    def binary(self, c):
        left, op, right = c
        return Infix(str(op), left, right, left.start, right.end)

    def conditional(self, c):
        test, _q, yes, _c, no = c
        return Conditional(test, yes, no, test.start, no.end)

    def cast(self, c):
        lpar, type_, _rpar, operand = c
        return Cast(type_, operand, lpar.start_pos, operand.end)

    def sizeof_type(self, c):
        kw, _l, type_, rpar = c
        return SizeOf(type_, kw.start_pos, rpar.end_pos)

    def sizeof_expr(self, c):
        kw, operand = c
        return SizeOf(operand, kw.start_pos, operand.end)

    def index(self, c):
        base, _l, index, rbrack = c
        return Index(base, index, base.start, rbrack.end_pos)

    def member(self, c):
        base, _dot, name = c
        return Member(base, str(name), False, base.start, name.end_pos)

    def arrow(self, c):
        base, _arrow, name = c
        return Member(base, str(name), True, base.start, name.end_pos)

    def field_offset(self, c):
        kw, _l, type_, _c, path, rpar = c
        return FieldOffset(type_, path, kw.start_pos, rpar.end_pos)

    def containing_record(self, c):
        kw, _l, address, _c1, type_, _c2, path, rpar = c
        return ContainingRecord(address, type_, path, kw.start_pos, rpar.end_pos)


class _UnusedLexer(Lexer):
    """Tokens are fed to the parser by hand (see `_lex`); Lark wants a lexer class."""

    def __init__(self, conf) -> None:
        pass

    def lex(self, lexer_state, parser_state):  # pragma: no cover - never called
        return iter(())


@cache
def _parser() -> Lark:
    return Lark(load_grammar("cpp"), parser="lalr", lexer=_UnusedLexer,
                transformer=_ToNodes())


def parse(text: str, types: TypeProvider) -> Any:
    """The node tree of the C++ expression `text` (all of it).  Raises
    KdMissingExpressionError for no expression and KdSyntaxError where the text stops
    being an expression."""
    state = _parser().parse_interactive("").parser_state
    fed = 0
    for tok in _lex(text, types):
        trial = state.copy(deepcopy_values=False)
        try:
            trial.feed_token(tok)
        except UnexpectedInput:
            raise KdSyntaxError(text[tok.start_pos:], tok.start_pos) from None
        state = trial
        fed += 1
    try:
        return state.feed_token(Token("$END", "", start_pos=len(text)), True)
    except UnexpectedInput:
        if fed == 0 or "NUMBER" in state.parse_conf.states[state.position]:
            raise KdMissingExpressionError("", len(text)) from None
        raise KdSyntaxError("", len(text)) from None


# ------------------------------------------------------------------------------ values


@dataclass(frozen=True)
class Value:
    """A typed result.  `address` is set for an lvalue (something in memory); `value`
    holds a scalar's value once read (None for structs and arrays)."""

    type: CType
    value: int | float | None = None
    address: int | None = None
    bits: tuple[int, int] | None = None  # a bit field: (position, length)


_PSEUDO_TYPES = {"$thread": "_ETHREAD", "$proc": "_EPROCESS", "$prcb": "_KPRCB",
                 "$pcr": "_KPCR"}


def _register_type(name: str) -> CType:
    if name in ("$tpid", "$tid"):
        return ct.UINT
    if name.startswith("$"):
        return ct.UINT64
    if len(name) == 3 and name[0] == "e" or name.endswith("d") and name[0] == "r" \
            and name[1:-1].isdigit():
        return ct.UINT
    if name in ("ax", "bx", "cx", "dx", "si", "di", "sp", "bp", "cs", "ss", "ds", "es",
                "fs", "gs") or (name.endswith("w") and name[0] == "r"
                                and name[1:-1].isdigit()):
        return CType("int", "unsigned short", 2, False)
    if name in ("al", "bl", "cl", "dl", "ah", "bh", "ch", "dh", "sil", "dil", "spl",
                "bpl") or (name.endswith("b") and name[0] == "r" and name[1:-1].isdigit()):
        return CType("int", "unsigned char", 1, False)
    return ct.UINT64


def wrap(value: int, t: CType) -> int:
    """`value` converted to the integer type `t` (two's complement wrap)."""
    bits = t.size * 8
    value &= (1 << bits) - 1
    if t.signed and value >> (bits - 1):
        value -= 1 << bits
    return value


def _promote(t: CType) -> CType:
    if t.kind in ("bool", "enum") or (t.kind == "int" and t.size < 4):
        return ct.INT
    return t


def _unsigned_of(t: CType) -> CType:
    return {"int": ct.UINT, "long": ct.ULONG, "int64": ct.UINT64}.get(t.name, t)


def common_type(a: CType, b: CType) -> CType:
    """C's usual arithmetic conversions on the Windows integer sizes."""
    a, b = _promote(a), _promote(b)
    if a == b:
        return a
    if a.size != b.size:
        return a if a.size > b.size else b
    if a.signed != b.signed:
        signed = a if a.signed else b
        unsigned = b if a.signed else a
        return unsigned if unsigned.name != "unsigned int" or signed.name != "long" \
            else ct.ULONG
    return a if a.name == "long" or a.name.startswith("unsigned long") else b


# --------------------------------------------------------------------------- evaluation


class Evaluator:
    """Evaluates one parsed expression over a context; errors quote `text` from the
    failing node."""

    def __init__(self, ctx: CppContext, text: str, offset: int = 0) -> None:
        self.ctx = ctx
        self.text = text
        self.offset = offset  # where `text` sits in the text the user typed
        self.types = ctx.types

    # -- errors ---------------------------------------------------------------------
    def fail(self, cls: type[KdExpressionError], node: Any) -> KdExpressionError:
        return cls(self.text[node.start:], self.offset + node.start)

    # -- entry ----------------------------------------------------------------------
    def run(self, node: Any) -> Value:
        try:
            return self.eval(node)
        except RecursionError:
            raise self.fail(KdSyntaxError, node) from None

    def rvalue(self, node: Any) -> Value:
        """A node's value with scalars read from memory and arrays decayed to pointers."""
        return self.load(self.eval(node), node)

    def load(self, v: Value, node: Any) -> Value:
        t = v.type
        if t.kind == "array":
            return Value(ct.pointer_to(t.target), v.address)
        if v.value is not None or v.address is None or not t.is_scalar:
            return v
        size = t.size if t.kind != "function" else 8
        try:
            data = self.ctx.read_memory(v.address & MASK64, size)
        except MemoryAccessError:
            raise self.fail(KdMemoryError, node) from None
        if len(data) < size:
            raise self.fail(KdMemoryError, node)
        raw = int.from_bytes(data[:size], "little")
        if v.bits is not None:
            pos, length = v.bits
            raw = (raw >> pos) & ((1 << length) - 1)
        if t.kind == "float":
            import struct
            return Value(t, struct.unpack("<f" if size == 4 else "<d", data[:size])[0],
                         v.address)
        value = wrap(raw, t) if t.kind in ("int", "enum") else raw
        return Value(t, value, v.address, v.bits)

    def eval(self, node: Any) -> Value:
        method: Callable[[Any], Value] = getattr(self, "_" + type(node).__name__.lower())
        return method(node)

    # -- atoms ----------------------------------------------------------------------
    def _number(self, node: Number) -> Value:
        return Value(node.type, node.value)

    def _paren(self, node: Paren) -> Value:
        return self.eval(node.inner)

    def _reg(self, node: Reg) -> Value:
        value = self.ctx.register(node.name)
        if value is None:
            raise self.fail(KdBadRegisterError, node)
        pointee = _PSEUDO_TYPES.get(node.name)
        if pointee is not None:
            target = ct.from_catalog(self.types, pointee)
            if target is not None:
                return Value(ct.pointer_to(target), value & MASK64)
        t = _register_type(node.name)
        return Value(t, wrap(value, t))

    def _ident(self, node: Ident) -> Value:
        sym = self.ctx.global_symbol(node.name)
        if sym is None:
            raise self.fail(KdResolveError, node)
        if sym.function:
            return Value(ct.pointer_to(ct.FUNCTION), sym.address & MASK64)
        t = ct.from_dt(self.types, sym.type) if sym.type else ct.UINT64
        return Value(t, None, sym.address & MASK64)

    def _embedded(self, node: Embedded) -> Value:
        if node.evaluator == "c++":
            inner = Evaluator(self.ctx, node.text, self.offset + node.offset)
            return inner.load(inner.run(parse_at(node.text, self.types, inner.offset)), node)
        return Value(ct.UINT64, self.ctx.masm(node.text) & MASK64)

    def _typename(self, node: TypeName) -> Value:
        raise self.fail(KdSyntaxError, node)

    # -- operators ------------------------------------------------------------------
    def _prefix(self, node: Prefix) -> Value:
        op = node.op
        if op == "&":
            v = self.eval(node.operand)
            if v.address is None or v.bits is not None:
                raise self.fail(KdTypeConflictError, node)
            return Value(ct.pointer_to(v.type), v.address & MASK64)
        v = self.rvalue(node.operand)
        if op == "*":
            if v.type.kind != "pointer" or v.type.target.kind in ("void", "function"):
                raise self.fail(KdTypeConflictError, node)
            return Value(v.type.target, None, v.value)
        if op == "!":
            return Value(ct.BOOL, int(not self.truth(v, node)))
        if not v.type.is_integer:
            raise self.fail(KdTypeConflictError, node)
        t = _promote(v.type)
        if op == "-":
            return Value(t, wrap(-v.value, t))
        if op == "~":
            return Value(t, wrap(~v.value, t))
        return Value(t, wrap(v.value, t))  # unary +

    def truth(self, v: Value, node: Any) -> bool:
        if not v.type.is_scalar:
            raise self.fail(KdTypeConflictError, node)
        return bool(v.value)

    def _infix(self, node: Infix) -> Value:
        op = node.op
        if op in ("&&", "||"):
            left = self.truth(self.rvalue(node.left), node.left)
            if op == "&&" and not left:
                return Value(ct.BOOL, 0)
            if op == "||" and left:
                return Value(ct.BOOL, 1)
            return Value(ct.BOOL, int(self.truth(self.rvalue(node.right), node.right)))
        a = self.rvalue(node.left)
        b = self.rvalue(node.right)
        pa, pb = a.type.kind == "pointer", b.type.kind == "pointer"
        if pa or pb:
            return self._pointer_op(node, a, b)
        if not (a.type.is_integer and b.type.is_integer):
            raise self.fail(KdTypeConflictError, node)
        if op == "<<" or op == ">>":
            t = _promote(a.type)
            count = b.value & (t.size * 8 - 1)
            if op == "<<":
                return Value(t, wrap(a.value << count, t))
            return Value(t, wrap(a.value >> count, t))
        t = common_type(a.type, b.type)
        x, y = wrap(a.value, t), wrap(b.value, t)
        if op in ("==", "!=", "<", ">", "<=", ">="):
            return Value(ct.BOOL, int(_compare(op, x, y)))
        if op == "+":
            return Value(t, wrap(x + y, t))
        if op == "-":
            return Value(t, wrap(x - y, t))
        if op == "*":
            return Value(t, wrap(x * y, t))
        if op in ("/", "%"):
            if y == 0:
                raise self.fail(KdOperandError, node.right)
            q = abs(x) // abs(y) * (1 if (x < 0) == (y < 0) else -1)
            return Value(t, wrap(q if op == "/" else x - q * y, t))
        if op == "&":
            return Value(t, wrap(x & y, t))
        if op == "|":
            return Value(t, wrap(x | y, t))
        if op == "^":
            return Value(t, wrap(x ^ y, t))
        raise self.fail(KdSyntaxError, node)  # pragma: no cover - grammar has no others

    def _pointer_op(self, node: Infix, a: Value, b: Value) -> Value:
        op = node.op
        pa, pb = a.type.kind == "pointer", b.type.kind == "pointer"
        if op in ("==", "!=", "<", ">", "<=", ">="):
            if not (pa or a.type.is_integer) or not (pb or b.type.is_integer):
                raise self.fail(KdTypeConflictError, node)
            return Value(ct.BOOL, int(_compare(op, a.value & MASK64, b.value & MASK64)))
        if op == "-" and pa and pb:
            if a.type != b.type:
                raise self.fail(KdTypeConflictError, node)
            size = _stride(a.type) or 1
            diff = wrap(a.value - b.value, ct.INT64)
            q = abs(diff) // size * (1 if diff >= 0 else -1)
            return Value(ct.INT64, q)
        if op == "+" and pa != pb:
            ptr, n = (a, b) if pa else (b, a)
            if not n.type.is_integer:
                raise self.fail(KdTypeConflictError, node)
            return Value(ptr.type, (ptr.value + n.value * _stride(ptr.type)) & MASK64)
        if op == "-" and pa and b.type.is_integer:
            return Value(a.type, (a.value - b.value * _stride(a.type)) & MASK64)
        raise self.fail(KdTypeConflictError, node)

    def _conditional(self, node: Conditional) -> Value:
        if self.truth(self.rvalue(node.test), node.test):
            return self.eval(node.yes)
        return self.eval(node.no)

    def _cast(self, node: Cast) -> Value:
        t = node.type.type
        v = self.rvalue(node.operand)
        if t.kind == "void":
            return Value(ct.VOID)
        if not v.type.is_scalar or t.kind in ("struct", "array", "function"):
            raise self.fail(KdTypeConflictError, node)
        if t.kind == "bool":
            return Value(t, int(bool(v.value)))
        if t.kind == "pointer":
            return Value(t, int(v.value) & MASK64)
        if t.kind == "float":
            return Value(t, float(v.value))
        return Value(t, wrap(int(v.value), t))

    def _sizeof(self, node: SizeOf) -> Value:
        if isinstance(node.operand, TypeName):
            t = node.operand.type
        else:
            t = self.eval(node.operand).type
        return Value(ct.UINT64, t.size)

    def _index(self, node: Index) -> Value:
        base = self.rvalue(node.base)
        index = self.rvalue(node.index)
        if base.type.kind != "pointer" or not index.type.is_integer:
            raise self.fail(KdTypeConflictError, node)
        target = base.type.target
        if target.kind in ("void", "function"):
            raise self.fail(KdTypeConflictError, node)
        return Value(target, None, (base.value + index.value * target.size) & MASK64)

    def _member(self, node: Member) -> Value:
        return self.member_of(self.eval(node.base), node.field, node.arrow, node)

    def member_of(self, base: Value, field: str, arrow: bool, node: Any,
                  auto_deref: bool = False) -> Value:
        """`base.field` (or `base->field`): the member as an lvalue; a bit field is read
        through its storage unit.  `auto_deref` lets `.` follow a pointer, as dx does."""
        if arrow or (auto_deref and base.type.kind == "pointer"):
            base = self.load(base, node.base if hasattr(node, "base") else node)
            if base.type.kind != "pointer":
                raise self.fail(KdTypeConflictError, node)
            struct, address = base.type.target, base.value
        else:
            struct, address = base.type, base.address
        if struct.kind != "struct" or address is None:
            raise self.fail(KdTypeConflictError, node)
        found = find_member(self.types, struct.name, field)
        if found is None:
            pos = node.end - len(field)
            raise KdResolveError(self.text[pos:], self.offset + pos)
        offset, f = found
        t = ct.from_dt(self.types, f.storage if f.kind == "bitfield" else f.type)
        bits = (f.bit_position, f.bit_length) if f.kind == "bitfield" else None
        if f.members and f.kind not in ("struct", "union"):
            t = CType("struct", f.type, f.size)
        return Value(t, None, (address + offset) & MASK64, bits)

    def _fieldoffset(self, node: FieldOffset) -> Value:
        offset = self._path_offset(node.type, node.path)
        return Value(ct.LONG, offset)

    def _containingrecord(self, node: ContainingRecord) -> Value:
        address = self.rvalue(node.address)
        if not (address.type.is_integer or address.type.kind == "pointer"):
            raise self.fail(KdTypeConflictError, node.address)
        offset = self._path_offset(node.type, node.path)
        return Value(ct.pointer_to(node.type.type), (address.value - offset) & MASK64)

    def _path_offset(self, type_name: TypeName, path: tuple[str, ...]) -> int:
        t = type_name.type
        if t.kind != "struct":
            raise self.fail(KdTypeConflictError, type_name)
        offset, current = 0, t.name
        for part in path:
            found = find_member(self.types, current, part) if current else None
            if found is None:
                pos = self.text.find(part, type_name.end)
                raise KdResolveError(self.text[pos:], self.offset + pos)
            off, f = found
            offset += off
            current = f.type if f.kind in ("struct", "union") else ""
        return offset


def _stride(t: CType) -> int:
    target = t.target
    return 1 if target is None or target.kind in ("void", "function") else target.size


def _compare(op: str, x: int, y: int) -> bool:
    return {"==": x == y, "!=": x != y, "<": x < y, ">": x > y, "<=": x <= y,
            ">=": x >= y}[op]


def find_member(types: TypeProvider, struct: str, name: str) -> tuple[int, Any] | None:
    """A member by name (case-insensitive, as kd), also inside anonymous members:
    (offset from the struct, field)."""
    t = types.get(struct)
    if t is None or t.kind == "enum":
        return None
    return _search(t.fields, name.lower(), 0)


def _search(fields: Any, low: str, base: int) -> tuple[int, Any] | None:
    for f in fields:
        if f.name.lower() == low:
            return base + f.offset, f
    for f in fields:
        if f.members and (not f.name or f.name.startswith(("__", "<"))):
            found = _search(f.members, low, base + f.offset)
            if found is not None:
                return found
    return None


def parse_at(text: str, types: TypeProvider, offset: int) -> Any:
    """`parse`, with error positions moved by `offset` (an embedded expression)."""
    try:
        return parse(text, types)
    except KdExpressionError as exc:
        raise type(exc)(exc.rest, (exc.position or 0) + offset) from None


def evaluate(text: str, ctx: CppContext) -> Value:
    """The typed value of the C++ expression `text` (scalars read from memory)."""
    try:
        node = parse(text, ctx.types)
    except KdSyntaxError as exc:
        _raise_first_unresolved(text, ctx, exc.position or 0)
        raise
    ev = Evaluator(ctx, text)
    v = ev.run(node)
    if v.type.kind in ("struct", "array") or v.type.kind == "void":
        return v
    return ev.load(v, node)


def _raise_first_unresolved(text: str, ctx: CppContext, stop: int) -> None:
    """kd resolves names as it parses: a symbol it cannot resolve before a syntax error
    is reported instead (`(nt!_FOO*)0` -> Couldn't resolve error at 'nt!_FOO*)0')."""
    for tok in _lex(text, ctx.types):
        if tok.start_pos >= stop:
            return
        if tok.type == "NAME" and ctx.global_symbol(str(tok)) is None:
            raise KdResolveError(text[tok.start_pos:], tok.start_pos)


def evaluate_int(text: str, ctx: CppContext) -> int:
    """An integer or pointer result as an unsigned 64-bit number (for `@@c++()` inside
    MASM)."""
    v = evaluate(text, ctx)
    if v.type.kind == "array" and v.address is not None:
        return v.address
    if not v.type.is_scalar or v.value is None:
        raise KdTypeConflictError(text, 0)
    return int(v.value) & MASK64


# ---------------------------------------------------------------------------- adapter


class SessionContext:
    """A debugger Session seen as a CppContext."""

    def __init__(self, session: Any) -> None:
        self.s = session
        self.types = session.target.types

    def register(self, name: str) -> int | None:
        return self.s.register(name)

    def read_memory(self, address: int, size: int) -> bytes:
        return self.s.target.read_virtual(address, size)

    def masm(self, text: str) -> int:
        return self.s.evaluate(text)

    def global_symbol(self, name: str) -> GlobalSymbol | None:
        engine = self.s.symbols
        address = engine.address_of(name)
        if address is None or "!" not in name and engine.module_named(name) is not None:
            return None  # a bare module name is no C++ value
        module = engine.module_at(address)
        if module is None or module.symbols is None:
            return GlobalSymbol(address, False)
        rva = address - module.base
        for f in module.symbols.functions:
            if f.rva == rva:
                return GlobalSymbol(address, True)
        for d in module.symbols.data:
            if d.rva == rva:
                return GlobalSymbol(address, False, d.type)
        return GlobalSymbol(address, False)


def evaluate_in_session(session: Any, text: str) -> Value:
    try:
        return evaluate(text, SessionContext(session))
    except MemoryAccessError as exc:  # a read outside the evaluator's own guards
        raise KdError(f"Memory access error at '{exc.address:x}'") from None
