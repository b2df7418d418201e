"""Source text -> plain statement objects, using the grammar in ``asm.lark``."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import iced_x86
from lark import Lark, Token, Transformer
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, VisitError

from .errors import AsmError

_GRAMMAR = Path(__file__).with_name("asm.lark")

SIZE_BYTES = {"byte": 1, "word": 2, "dword": 4, "qword": 8}


def _register_table() -> dict[str, int]:
    fmt = iced_x86.Formatter(iced_x86.FormatterSyntax.MASM)
    ext = iced_x86.RegisterExt
    table: dict[str, int] = {}
    for name in dir(iced_x86.Register):
        if not name.isupper():
            continue
        reg = getattr(iced_x86.Register, name)
        if not (
            ext.is_gpr(reg)
            or ext.is_cr(reg)
            or ext.is_dr(reg)
            or ext.is_segment_register(reg)
            or reg == iced_x86.Register.RIP
        ):
            continue
        table[fmt.format_register(reg).lower()] = reg
        table[name.lower()] = reg  # r8l as well as r8b
    return table


REGISTERS: dict[str, int] = _register_table()


# --- plain objects ---------------------------------------------------------


@dataclass
class Atom:
    kind: str  # "num", "name" or "reg"
    value: int | str  # number, symbol name, or iced Register
    text: str
    line: int
    column: int


@dataclass
class Term:
    sign: int  # +1 or -1
    signed: bool  # written with an explicit + or -
    factors: list[Atom]
    line: int
    column: int


@dataclass
class Expr:
    terms: list[Term]
    line: int
    column: int


@dataclass
class RegOperand:
    reg: int
    name: str
    line: int
    column: int


@dataclass
class ValueOperand:
    """A number, symbol or sum of them: an immediate, a branch target or data."""

    expr: Expr
    line: int
    column: int


@dataclass
class MemOperand:
    size: int | None  # bytes, from "dword ptr" etc.
    segment: int | None  # iced Register
    expr: Expr
    line: int
    column: int


@dataclass
class StrOperand:
    data: bytes
    line: int
    column: int


Operand = RegOperand | ValueOperand | MemOperand | StrOperand


@dataclass
class Label:
    name: str
    line: int
    column: int


@dataclass
class Prefix:
    name: str  # lower case
    line: int
    column: int


@dataclass
class Statement:
    mnemonic: str  # lower case
    text: str
    line: int
    column: int
    prefixes: list[Prefix] = field(default_factory=list)
    operands: list[Operand] = field(default_factory=list)


Line = Label | Statement


# --- parsing ---------------------------------------------------------------


def parse_number(text: str) -> int:
    t = text.replace("`", "").lower()
    if t.startswith("0x"):
        return int(t[2:], 16)
    if t.startswith("0n"):
        return int(t[2:], 10)
    if t.endswith("h"):
        return int(t[:-1], 16)
    return int(t, 10)


class _ToObjects(Transformer):
    def start(self, items):
        return [item for item in items if item is not None]

    def label(self, items):
        (name,) = items
        return Label(str(name), name.line, name.column)

    def statement(self, items):
        prefixes = [Prefix(str(t).lower(), t.line, t.column) for t in items if _is(t, "PREFIX")]
        rest = [t for t in items if not _is(t, "PREFIX")]
        name = rest[0]
        operands = [op for op in rest[1:] if op is not None]
        return Statement(str(name).lower(), str(name), name.line, name.column, prefixes, operands)

    def value(self, items):
        (expr,) = items
        terms = expr.terms
        if len(terms) == 1 and not terms[0].signed and len(terms[0].factors) == 1:
            atom = terms[0].factors[0]
            if atom.kind == "reg":
                return RegOperand(int(atom.value), atom.text.lower(), atom.line, atom.column)
        return ValueOperand(expr, expr.line, expr.column)

    def memory(self, items):
        size, seg, bracket, expr = items
        first = size if size is not None else seg
        line, column = (first[1], first[2]) if first is not None else (bracket.line, bracket.column)
        return MemOperand(
            size[0] if size is not None else None,
            seg[0] if seg is not None else None,
            expr,
            line,
            column,
        )

    def size(self, items):
        size, _ptr = items
        return (SIZE_BYTES[str(size).lower()], size.line, size.column)

    def segment(self, items):
        (tok,) = items
        return (REGISTERS[str(tok).lower()], tok.line, tok.column)

    def segreg(self, items):
        (tok,) = items
        return RegOperand(REGISTERS[str(tok).lower()], str(tok).lower(), tok.line, tok.column)

    def string(self, items):
        (tok,) = items
        return StrOperand(str(tok)[1:-1].encode("utf-8"), tok.line, tok.column)

    def expr(self, items):
        terms: list[Term] = []
        sign_tok: Token | None = None
        for item in items:
            if item is None:
                continue
            if isinstance(item, Token):
                sign_tok = item
                continue
            factors: list[Atom] = item
            where = sign_tok if sign_tok is not None else factors[0]
            sign = -1 if sign_tok is not None and sign_tok.type == "MINUS" else 1
            terms.append(Term(sign, sign_tok is not None, factors, where.line, where.column))
            sign_tok = None
        return Expr(terms, terms[0].line, terms[0].column)

    def term(self, items):
        return [a for a in items if isinstance(a, Atom)]

    def atom(self, items):
        (tok,) = items
        text = str(tok)
        if tok.type == "NUMBER":
            return Atom("num", parse_number(text), text, tok.line, tok.column)
        reg = REGISTERS.get(text.lower())
        if reg is not None:
            return Atom("reg", reg, text, tok.line, tok.column)
        return Atom("name", text, text, tok.line, tok.column)


def _is(item, type_: str) -> bool:
    return isinstance(item, Token) and item.type == type_


@cache
def _parser() -> Lark:
    return Lark(
        _GRAMMAR.read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        propagate_positions=False,
        maybe_placeholders=True,
    )


def _describe(exc: UnexpectedInput) -> str:
    if isinstance(exc, UnexpectedCharacters):
        return f"syntax error: unexpected character {exc.char!r}"
    token = getattr(exc, "token", None)
    if token is None or token.type == "$END":
        return "syntax error: unexpected end of input"
    if token.type == "_NL":
        return "syntax error: unexpected end of line"
    return f"syntax error: unexpected {str(token)!r}"


def _end_position(source: str) -> tuple[int, int]:
    lines = source.split("\n")
    return len(lines), len(lines[-1]) + 1


def parse(source: str) -> list[Line]:
    """Parse the whole source into labels and statements, in source order."""
    try:
        tree = _parser().parse(source)
    except UnexpectedInput as exc:
        line, column = getattr(exc, "line", -1), getattr(exc, "column", -1)
        token = getattr(exc, "token", None)
        if token is not None and token.type == "$END":
            # lark places end-of-input on the last token; point just past that token
            line, column = getattr(token, "end_line", None), getattr(token, "end_column", None)
        if not (isinstance(line, int) and isinstance(column, int)) or line < 1 or column < 1:
            line, column = _end_position(source)
        raise AsmError(_describe(exc), line, column) from None
    except LarkError as exc:  # pragma: no cover - defensive
        raise AsmError(f"syntax error: {exc}", 1, 1) from None
    try:
        return _ToObjects().transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, AsmError):
            raise exc.orig_exc from None
        raise
