"""Source text -> the syntax tree of ast.py, using the grammar in driver.lark.

All parsing happens here: the grammar decides the shape, the Transformer only builds
the plain objects (and rejects the few things a grammar cannot say, such as a pool tag
of the wrong length).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken, VisitError

from . import ast as A
from .errors import DriverLangError

_GRAMMAR = Path(__file__).with_name("driver.lark")

# How an expected terminal is named in a syntax error.
_TERMINALS = {
    "NAME": "a name", "NTNAME": "an nt!Name", "NTTYPE": "an nt type", "SCALAR": "a type",
    "INTEGER": "a number", "TAG": "a pool tag", "STRING": "a string", "ASM_BLOCK": "asm { }",
    "RBRACE": "'}'", "_ARROW": "'->'", "_DOTDOT": "'..'", "$END": "end of input",
}


@cache
def _parser() -> Lark:
    return Lark(_GRAMMAR.read_text(), parser="lalr", lexer="contextual",
                propagate_positions=True, maybe_placeholders=True)


def _expected_name(terminal: str, parser: Lark) -> str:
    if terminal in _TERMINALS:
        return _TERMINALS[terminal]
    try:
        pattern = parser.get_terminal(terminal).pattern
    except KeyError:
        return terminal
    return f"'{pattern.value}'" if pattern.type == "str" else terminal


# Terminals that continue an expression, and those that can start one: a syntax error
# names them as a group rather than listing a dozen operators.
_OPERATORS = {"OROR", "ANDAND", "BAR", "CARET", "AMP", "EQ", "NE", "LT", "LE", "GT", "GE",
              "SHL", "SHR", "PLUS", "MINUS", "STAR", "SLASH", "PERCENT", "_ARROW", "DOT",
              "LSQB"}
_STARTS = {"NAME", "INTEGER", "TAG", "NTNAME", "LPAR", "CALL", "SIZEOF", "SCALAR", "TILDE",
           "BANG", "PLUS", "MINUS", "AMP", "STAR"}


_STATEMENTS = {"LET", "IF", "WHILE", "FOR", "BREAK", "CONTINUE", "RETURN", "BREAKPOINT",
               "ASM_BLOCK"}


def _expected(names: set[str] | frozenset[str], parser: Lark) -> str:
    names = set(names)
    groups = []
    if {"LET", "IF"} <= names:
        names -= _STATEMENTS | _STARTS
        groups.append("a statement")
    if {"NAME", "INTEGER"} <= names:
        names -= _STARTS
        groups.append("an expression")
    if len(names & _OPERATORS) >= 3:
        names -= _OPERATORS
        groups.append("an operator")
    words = sorted({_expected_name(t, parser) for t in names}) + groups
    return ", ".join(words)


def _found(token: Token) -> str:
    if token.type == "$END":
        return "end of input"
    return f"'{token.value}'"


def parse(source: str) -> A.Program:
    """Parse a driver; any problem raises DriverLangError with its line and column."""
    parser = _parser()
    try:
        tree = parser.parse(source)
    except UnexpectedToken as exc:
        if exc.token.type == "$END":
            line, column = _end(source)
        else:
            line, column = exc.token.line, exc.token.column
            if source.startswith("/*", exc.token.start_pos or 0):
                raise DriverLangError("unterminated comment", line, column) from None
        # `accepts` is exact where the LALR tables' `expected` may list too much
        raise DriverLangError(f"unexpected {_found(exc.token)}, expected "
                              f"{_expected(exc.accepts or exc.expected, parser)}",
                              line, column) from None
    except UnexpectedCharacters as exc:
        char = source[exc.pos_in_stream] if exc.pos_in_stream < len(source) else ""
        what = "unterminated comment" if source.startswith("/*", exc.pos_in_stream) \
            else f"unexpected character {char!r}"
        raise DriverLangError(what, exc.line, exc.column) from None
    except UnexpectedEOF as exc:
        raise DriverLangError(f"unexpected end of input, expected "
                              f"{_expected(set(exc.expected), parser)}",
                              *_end(source)) from None
    try:
        return _Build().transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, DriverLangError):
            raise exc.orig_exc from None
        raise


def _end(source: str) -> tuple[int, int]:
    """Line and column just past the last character."""
    return source.count("\n") + 1, len(source) - source.rfind("\n")


def _at(meta) -> tuple[int, int]:
    return meta.line, meta.column


def _tok(token: Token) -> tuple[int, int]:
    return token.line, token.column


def _integer(token: Token) -> A.Int:
    text = str(token)
    value = int(text, 16) if text[:2].lower() == "0x" else int(text)
    if value >= 1 << 64:
        raise DriverLangError(f"number {text} does not fit in 64 bits", *_tok(token))
    return A.Int(*_tok(token), value, text[:2].lower() == "0x")


@v_args(meta=True)
class _Build(Transformer):
    """Parse tree -> ast objects."""

    # declarations

    def start(self, meta, items):
        prog = A.Program()
        for item in items:
            prog.order.append(item)
            if isinstance(item, A.Global):
                prog.globals.append(item)
            elif isinstance(item, A.String):
                prog.strings.append(item)
            else:
                prog.routines.append(item)
        return prog

    def global_decl(self, meta, items):
        name, type_, _eq, value = items
        return A.Global(*_tok(name), str(name), type_, value)

    def string_decl(self, meta, items):
        name, _eq, text = items
        return A.String(*_tok(name), str(name), str(text)[1:-1])

    def routine_decl(self, meta, items):
        name, *params, returns, (body, end_line) = items
        params = [p for p in params if p is not None]
        return A.Routine(*_tok(name), str(name), params, returns, body, end_line)

    def param(self, meta, items):
        name, type_ = items
        return A.Param(*_tok(name), str(name), type_)

    # types

    def type(self, meta, items):
        return items[0]

    def scalar_type(self, meta, items):
        return A.TypeName(*_tok(items[0]), str(items[0]))

    def nt_type(self, meta, items):
        return A.TypeName(*_tok(items[0]), str(items[0]))

    def pointer_type(self, meta, items):
        star, target = items
        return A.TypeName(*_tok(star), "*", target)

    def array_type(self, meta, items):
        element, count = items
        n = _integer(count).value
        if not 1 <= n <= 0x100000:
            raise DriverLangError(f"array length {count} must be 1..0x100000", *_tok(count))
        return A.TypeName(element.line, element.column, "[]", element, n)

    # statements

    def block(self, meta, items):
        *stmts, close = items
        return stmts, close.line

    def let_stmt(self, meta, items):
        name, type_, _eq, value = items
        return A.Let(*_at(meta), str(name), type_, value)

    def assign_stmt(self, meta, items):
        target, op, value = items
        return A.Assign(op.line, op.column, str(op), target, value)

    def if_stmt(self, meta, items):
        cond, (then, _), otherwise = items
        return A.If(*_at(meta), cond, then, otherwise)

    def else_part(self, meta, items):
        part = items[0]
        return [part] if isinstance(part, A.If) else part[0]

    def while_stmt(self, meta, items):
        cond, (body, _) = items
        return A.While(*_at(meta), cond, body)

    def for_stmt(self, meta, items):
        var, start, end, (body, _) = items
        return A.For(*_at(meta), str(var), start, end, body)

    def break_stmt(self, meta, items):
        return A.Break(*_at(meta))

    def continue_stmt(self, meta, items):
        return A.Continue(*_at(meta))

    def return_stmt(self, meta, items):
        return A.Return(*_at(meta), items[0])

    def breakpoint_stmt(self, meta, items):
        return A.Breakpoint(*_at(meta))

    def expr_stmt(self, meta, items):
        return A.ExprStmt(*_at(meta), items[0])

    def asm_stmt(self, meta, items):
        token = items[0]
        text = str(token)
        body = text[text.index("{") + 1:-1]
        first = token.line + text[:text.index("{")].count("\n")
        lines = [(first + i, line) for i, line in enumerate(body.split("\n"))]
        return A.Asm(*_tok(token), [(n, s) for n, s in lines if s.strip()])

    # expressions

    def binary(self, meta, items):
        left, op, right = items
        return A.Binary(op.line, op.column, str(op), left, right)

    def unary(self, meta, items):
        op, operand = items
        return A.Unary(*_tok(op), str(op), operand)

    def cast(self, meta, items):
        type_, operand = items
        return A.Cast(*_at(meta), type_, operand)

    def arrow(self, meta, items):
        base, name = items
        return A.Field(*_tok(name), base, str(name), True)

    def dot(self, meta, items):
        base, name = items
        return A.Field(*_tok(name), base, str(name), False)

    def index(self, meta, items):
        base, index = items
        return A.Index(*_at(meta), base, index)

    def integer(self, meta, items):
        return _integer(items[0])

    def tag(self, meta, items):
        token = items[0]
        text = str(token)[1:-1]
        if not 1 <= len(text) <= 4 or not text.isascii():
            raise DriverLangError(f"pool tag {token} must be 1 to 4 ASCII characters",
                                  *_tok(token))
        return A.Tag(*_tok(token), text)

    def name(self, meta, items):
        return A.Name(*_tok(items[0]), str(items[0]))

    def nt_name(self, meta, items):
        return A.NtName(*_tok(items[0]), str(items[0])[3:])

    def call(self, meta, items):
        name, *args = items
        return A.Call(*_tok(name), str(name), [a for a in args if a is not None],
                      name_column=name.column)

    def nt_call(self, meta, items):
        name, *args = items
        return A.Call(*_tok(name), str(name)[3:], [a for a in args if a is not None], True,
                      name.column)

    def call_ptr(self, meta, items):
        target, *args = items
        return A.CallPtr(*_at(meta), target, list(args))

    def raw_mem(self, meta, items):
        kind, address = items
        return A.RawMem(*_tok(kind), A.TypeName(*_tok(kind), str(kind)), address)

    def sizeof(self, meta, items):
        return A.SizeOf(*_at(meta), items[0])
