"""kd's MASM expression evaluator.

Text is cut into tokens here (what a word is depends on the radix), parsed by the Lark
grammar `commands/grammar/masm.lark` and turned into plain node objects by an inline
Transformer; `Expr.evaluate` then computes the value left to right, as kd does, asking
an `ExprContext` for registers, symbols and memory.

The MASM rules implemented, as kd applies them:

* Numbers are in the current radix (16 by default); `0x`, `0n`, `0t`, `0y` select hex,
  decimal, octal and binary, a trailing `h` hex (`10h`, `0ffh`); a prefix with no digits
  is 0 (so `0n-123` is `0 - 0x123`).  A backtick may split a number
  (`fffff805`4d400000`).  A word that is a valid number is a number, never a symbol:
  `dead` is 0xdead; write `!dead` or `module!dead` for a symbol of that name.
* In kernel mode a constant from 0x80000000 to 0xffffffff is sign-extended unless it
  has a backtick (`80000000` is ffffffff`80000000, `0`80000000` is not); a 32-bit
  register (`eax`, `r8d`) is always sign-extended.
* `module!symbol`, `!symbol`, a bare symbol or module name; `@reg`, `@$pseudo`, `.`
  (the current instruction pointer).  A bare name is looked up as a register first
  for the common registers (`rax`, `rsp`, `eax`, ...) and names starting with `$`, and
  otherwise as a symbol first, then as a register.
* Unary `+ - not hi low by wo dwo qwo poi` (and the physical `$pby $pwo $pdwo $pqwo
  $ppoi`) bind tighter than any binary operator, so `poi rsp+8` is `poi(rsp) + 8`.
  Binary operators, tightest first: `* / mod %`, `+ -`, `<< >> >>>`, `= == < > <= >=
  !=`, `and &`, `xor ^`, `or |`.  Arithmetic wraps at 64 bits; `/` and `mod` divide as
  signed numbers, comparisons compare unsigned, `>>` is logical and `>>>` arithmetic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedInput
from lark.lexer import Lexer

from commands.errors import (
    KdBadRegisterError,
    KdExpressionError,
    KdExtraCharacterError,
    KdMemoryError,
    KdMissingExpressionError,
    KdOperandError,
    KdOverflowError,
    KdResolveError,
    KdSyntaxError,
)
from commands.grammar import load as load_grammar
from commands.target import MemoryAccessError

__all__ = [
    "ExprContext",
    "Expr",
    "Node",
    "Num",
    "Name",
    "Symbol",
    "Register",
    "CurrentIp",
    "Paren",
    "Unary",
    "Binary",
    "evaluate",
    "parse_expression",
    "parse_expression_prefix",
    "take_expression",
    "parse_number",
    "MASK64",
]

MASK64 = (1 << 64) - 1
_SIGN64 = 1 << 63


class ExprContext(Protocol):
    """What the evaluator asks of the debugger.  Names are passed lower-cased for
    registers, as typed for symbols (lookups are case-insensitive)."""

    def register(self, name: str) -> int | None:
        """`rax`, `eax`, `rip`, `$ip`, `$t0`, ...; None if there is no such register."""
        ...

    def symbol(self, name: str) -> int | None:
        """`nt!KeBugCheckEx`, `KeBugCheckEx`, or a module name (its base); None if
        unknown."""
        ...

    def read_memory(self, address: int, size: int) -> bytes:
        """Virtual memory; raises commands.target.MemoryAccessError.  A context may also
        have `read_physical(address, size)`, used by `$pby` and friends."""
        ...


# --------------------------------------------------------------------------- registers

# Registers a bare name (no `@`) means before any symbol of the same name.
_COMMON_REGISTERS = frozenset(
    "rax rbx rcx rdx rsi rdi rbp rsp rip r8 r9 r10 r11 r12 r13 r14 r15 "
    "eax ebx ecx edx esi edi ebp esp eip efl".split()
)
# 32-bit registers, sign-extended when read in an expression.
_REGISTERS32 = frozenset(
    "eax ebx ecx edx esi edi ebp esp eip r8d r9d r10d r11d r12d r13d r14d r15d".split()
)


def _register_value(name: str, value: int) -> int:
    if name in _REGISTERS32:
        return _sign_extend32(value & 0xFFFFFFFF)
    return value & MASK64


def _sign_extend32(value: int) -> int:
    if 0x80000000 <= value <= 0xFFFFFFFF:
        return value | 0xFFFFFFFF00000000
    return value


# ----------------------------------------------------------------------------- numbers

_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdef"}
_PREFIXES = {"x": 16, "n": 10, "t": 8, "y": 2}


def parse_number(word: str, radix: int = 16) -> tuple[int, bool] | None:
    """The value of a MASM number token and whether it had a backtick, or None if the
    word is not a number in `radix`.  The value may exceed 64 bits (an overflow)."""
    if radix not in _DIGITS:
        raise ValueError(f"radix must be 2, 8, 10 or 16, not {radix}")
    ticked = "`" in word
    text = word.replace("`", "").lower()
    if not text or word.startswith("`"):
        return None
    if len(text) >= 2 and text[0] == "0" and text[1] in _PREFIXES:
        base, digits = _PREFIXES[text[1]], text[2:]
    elif _all_in(text, _DIGITS[radix]):
        base, digits = radix, text
    elif len(text) > 1 and text.endswith("h") and _all_in(text[:-1], _DIGITS[16]):
        base, digits = 16, text[:-1]
    else:
        return None
    if not digits:
        return 0, ticked
    if not _all_in(digits, _DIGITS[base]):
        return None
    return int(digits, base), ticked


def _all_in(text: str, alphabet: str) -> bool:
    return all(c in alphabet for c in text)


# ------------------------------------------------------------------------------- lexer


class _Tok(Token):
    """A token with what the lexer worked out: a number's value and backtick."""

    __slots__ = ("number", "ticked")


_WORD = re.compile(r"[A-Za-z0-9_$][A-Za-z0-9_$`]*")
_SYMBOL_PART = re.compile(r"(?:[A-Za-z0-9_$@?`']|::~?)+")
_REGISTER = re.compile(r"@[A-Za-z0-9_$]+")
_SPACE = re.compile(r"\s*")
_PUNCTUATION = (
    (">>>", "SHIFTOP"),
    ("<<", "SHIFTOP"),
    (">>", "SHIFTOP"),
    ("<=", "CMPOP"),
    (">=", "CMPOP"),
    ("==", "CMPOP"),
    ("!=", "CMPOP"),
    ("=", "CMPOP"),
    ("<", "CMPOP"),
    (">", "CMPOP"),
    ("+", "ADDOP"),
    ("-", "ADDOP"),
    ("*", "MULOP"),
    ("/", "MULOP"),
    ("%", "MULOP"),
    ("&", "ANDOP"),
    ("^", "XOROP"),
    ("|", "OROP"),
    ("(", "LPAR"),
    (")", "RPAR"),
)
_KEYWORDS = {
    "mod": "MULOP",
    "and": "ANDOP",
    "xor": "XOROP",
    "or": "OROP",
    **dict.fromkeys("not hi low by wo dwo qwo poi $pby $pwo $pdwo $pqwo $ppoi".split(), "UNOP"),
}


def _tok(kind: str, text: str, start: int, end: int) -> _Tok:
    tok = _Tok(kind, text, start_pos=start, end_pos=end)
    tok.number = None
    tok.ticked = False
    return tok


def _lex(text: str, radix: int) -> Iterator[_Tok]:
    """Tokens of `text`, lazily: the parser stops pulling at the first token that cannot
    continue the expression, so whatever follows it is never looked at.  Never raises:
    text that is no token becomes a BAD token (or SYNERR, for text kd calls a syntax
    error wherever it appears)."""
    pos = _SPACE.match(text, 0).end()
    n = len(text)
    while pos < n:
        c = text[pos]
        if c == "!":
            if text.startswith("!=", pos):
                yield _tok("CMPOP", "!=", pos, pos + 2)
                pos += 2
            else:
                m = _SYMBOL_PART.match(text, pos + 1)
                if m:
                    yield _tok("SYMBOL", text[pos : m.end()], pos, m.end())
                    pos = m.end()
                else:
                    yield _tok("SYNERR", text[pos:], pos, n)
                    return
        elif c == "@" and (embedded := _embedded_end(text, pos)) is not None:
            # `@@c++(...)`, `@@(...)`, `@@masm(...)`: one NAME token, evaluated whole.
            yield _tok("NAME", text[pos:embedded], pos, embedded)
            pos = embedded
        elif c == "@":
            m = _REGISTER.match(text, pos)
            if not m:
                yield _tok("SYNERR", text[pos:], pos, n)
                return
            yield _tok("REGISTER", m.group(), pos, m.end())
            pos = m.end()
        elif c == ".":
            yield _tok("DOT", ".", pos, pos + 1)
            pos += 1
        elif _WORD.match(text, pos):
            tok = _word(text, pos, radix)
            yield tok
            if tok.type == "SYNERR":
                return
            pos = tok.end_pos
        else:
            for punct, kind in _PUNCTUATION:
                if text.startswith(punct, pos):
                    yield _tok(kind, punct, pos, pos + len(punct))
                    pos += len(punct)
                    break
            else:
                yield _tok("BAD", text[pos:], pos, n)
                return
        pos = _SPACE.match(text, pos).end()


_EMBEDDED = re.compile(r"@@(c\+\+|masm)?\(", re.IGNORECASE)


def _embedded_end(text: str, pos: int) -> int | None:
    """Where an embedded `@@c++(...)` / `@@(...)` / `@@masm(...)` at `pos` ends (just
    past its `)`), or None if there is none."""
    m = _EMBEDDED.match(text, pos)
    if not m:
        return None
    depth = 0
    for i in range(m.end() - 1, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    return None


def _embedded_value(ctx: ExprContext, node: Name) -> int:
    """An embedded expression's value: `@@masm(...)` is MASM again, the others are C++
    (evaluated by commands.cpp_expr against the session's types)."""
    m = _EMBEDDED.match(node.name)
    inner = node.name[m.end():-1]
    if (m.group(1) or "").lower() == "masm":
        return evaluate(inner, ctx)
    from commands import cpp_expr  # loaded only when an expression embeds C++

    if getattr(ctx, "target", None) is None:
        raise KdSyntaxError(node.name, node.start)
    return cpp_expr.evaluate_int(inner, cpp_expr.SessionContext(ctx))


def _word(text: str, pos: int, radix: int) -> _Tok:
    m = _WORD.match(text, pos)
    word, end = m.group(), m.end()
    if end < len(text) and text[end] == "!" and not text.startswith("!=", end):
        sym = _SYMBOL_PART.match(text, end + 1)
        if not sym:  # `module!` with no symbol: kd reports a syntax error there
            return _tok("SYNERR", text[pos:], pos, len(text))
        return _tok("SYMBOL", text[pos : sym.end()], pos, sym.end())
    kind = _KEYWORDS.get(word.lower())
    if kind:
        return _tok(kind, word, pos, end)
    number = parse_number(word, radix)
    if number is not None:
        tok = _tok("NUMBER", word, pos, end)
        tok.number, tok.ticked = number
        return tok
    if word[0].isdigit():  # no symbol starts with a digit
        return _tok("SYNERR", text[pos:], pos, len(text))
    return _tok("NAME", word, pos, end)


# ------------------------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True)
class Num:
    value: int  # as written (may exceed 64 bits: an overflow, reported on evaluation)
    ticked: bool  # written with a backtick: never sign-extended
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Name:
    """A bare word that is not a number: a register, symbol or module name."""

    name: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Symbol:
    """`module!symbol` or `!symbol`; `name` is what is looked up (`nt!Foo`, `Foo`)."""

    name: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Register:
    """`@name`; `name` lower-cased, without the `@`."""

    name: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class CurrentIp:
    """`.`, the current instruction pointer (`$ip`)."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Paren:
    inner: Node
    start: int
    end: int  # just past the `)`


@dataclass(frozen=True, slots=True)
class Unary:
    op: str  # lower-cased: "+", "-", "not", "hi", "low", "by", ..., "poi", "$pby", ...
    operand: Node
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Binary:
    op: str  # lower-cased operator text: "+", "mod", "==", "and", ...
    left: Node
    right: Node
    start: int
    end: int


Node = Num | Name | Symbol | Register | CurrentIp | Paren | Unary | Binary


class _ToNodes(Transformer):
    """Parse tree -> nodes; runs inline, as the LALR parser reduces."""

    def number(self, children):
        (tok,) = children
        return Num(tok.number, tok.ticked, tok.start_pos, tok.end_pos)

    def name(self, children):
        (tok,) = children
        return Name(str(tok), tok.start_pos, tok.end_pos)

    def symbol(self, children):
        (tok,) = children
        text = str(tok)
        return Symbol(text[1:] if text.startswith("!") else text, tok.start_pos, tok.end_pos)

    def register(self, children):
        (tok,) = children
        return Register(str(tok)[1:].lower(), tok.start_pos, tok.end_pos)

    def current_ip(self, children):
        (tok,) = children
        return CurrentIp(tok.start_pos, tok.end_pos)

    def paren(self, children):
        lpar, inner, rpar = children
        return Paren(inner, lpar.start_pos, rpar.end_pos)

    def prefix(self, children):
        op, operand = children
        return Unary(str(op).lower(), operand, op.start_pos, operand.end)

    def binary(self, children):
        left, op, right = children
        return Binary(str(op).lower(), left, right, left.start, right.end)


@cache
def _parser() -> Lark:
    return Lark(
        load_grammar("masm"),
        parser="lalr",
        lexer=_UnusedLexer,
        transformer=_ToNodes(),
    )


class _UnusedLexer(Lexer):
    """Tokens are fed to the parser by hand (see `_lex`); Lark wants a lexer class."""

    def __init__(self, conf) -> None:
        pass

    def lex(self, lexer_state, parser_state):  # pragma: no cover - never called
        return iter(())


# ------------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class Expr:
    """A parsed expression.  Positions in the nodes index `text`; an error quotes
    `text` from the failing position to `end` (the end of the argument)."""

    node: Node
    text: str
    end: int

    @property
    def source(self) -> str:
        """The expression as written."""
        return self.text[self.node.start : self.node.end]

    def evaluate(self, ctx: ExprContext, *, sign_extend: bool = True) -> int:
        """The unsigned 64-bit value.  `sign_extend` is kd's kernel-mode rule for
        constants from 0x80000000 to 0xffffffff written without a backtick."""
        return _Evaluator(ctx, self.text, self.end, sign_extend).run(self.node)


@dataclass
class _Outcome:
    node: Node | None  # None: the text does not start with a complete expression
    consumed: list[_Tok]
    stop: int  # where the first token that is not part of the expression starts
    error: KdExpressionError | None


def _parse(text: str, radix: int) -> _Outcome:
    """Feed tokens while they can continue the expression (as kd's one-pass parser
    reads as far as it can), then see whether what was read is complete."""
    if radix not in _DIGITS:
        raise ValueError(f"radix must be 2, 8, 10 or 16, not {radix}")
    state = _parser().parse_interactive("").parser_state
    consumed: list[_Tok] = []
    stopper: _Tok | None = None
    for tok in _lex(text, radix):
        trial = state.copy(deepcopy_values=False)
        try:
            trial.feed_token(tok)
        except UnexpectedInput:
            stopper = tok
            break
        state = trial
        consumed.append(tok)
    stop = stopper.start_pos if stopper is not None else len(text)
    trial = state.copy(deepcopy_values=False)
    try:
        node = trial.feed_token(Token("$END", "", start_pos=stop), True)
    except UnexpectedInput:
        node = None
    if node is not None:
        return _Outcome(node, consumed, stop, None)
    rest = text[stop:]
    if stopper is not None and stopper.type == "SYNERR":
        error: KdExpressionError = KdSyntaxError(rest, stop)
    elif "NUMBER" in state.parse_conf.states[state.position]:
        error = KdMissingExpressionError(rest, stop)
    else:
        error = KdSyntaxError(rest, stop)
    return _Outcome(None, consumed, stop, error)


def parse_expression_prefix(text: str, radix: int = 16) -> tuple[Expr, str]:
    """The expression at the start of `text` and the text after it.

    The expression runs as far as the grammar can continue it: `rsp+8 L2` gives `rsp+8`
    and `L2`; `(rsp + 8) L2` and `1 + 2` are read whole.  The rest starts at the first
    token that is not part of the expression (leading blanks dropped).  Raises
    KdMissingExpressionError if there is no expression and KdSyntaxError if it is cut
    short (`1 +`, `(1`); nothing is evaluated, so no symbol is looked up."""
    outcome = _parse(text, radix)
    if outcome.error is not None:
        raise outcome.error
    return Expr(outcome.node, text, outcome.stop), text[outcome.stop :]


def parse_expression(text: str, radix: int = 16) -> Expr:
    """The whole of `text` as one expression (KdExtraCharacterError if text is left)."""
    expr, rest = parse_expression_prefix(text, radix)
    if rest:
        raise KdExtraCharacterError(text, len(text) - len(rest))
    return Expr(expr.node, text, len(text))


def evaluate(text: str, ctx: ExprContext, radix: int = 16, *, sign_extend: bool = True) -> int:
    """The unsigned 64-bit value of the MASM expression `text` (all of it), as `?` does.

    Errors are KdError subclasses with kd's text: KdResolveError (`Couldn't resolve error
    at 'foo+1'`), KdBadRegisterError, KdMemoryError, KdOperandError (division by zero),
    KdSyntaxError / KdMissingExpressionError, and KdExtraCharacterError (a caret error)
    for text left after a complete expression, e.g. `1 2` or `1)`."""
    outcome = _parse(text, radix)
    if outcome.error is not None:
        _raise_first_unresolved(outcome, text, len(text), ctx)
        raise outcome.error
    value = Expr(outcome.node, text, len(text)).evaluate(ctx, sign_extend=sign_extend)
    if outcome.stop < len(text):
        raise KdExtraCharacterError(text, outcome.stop)
    return value


def take_expression(args: str, ctx: ExprContext, radix: int = 16) -> tuple[int, str]:
    """Evaluate the expression at the start of a command's arguments; return its value
    and the arguments after it (see `parse_expression_prefix` for where it ends).
    Errors quote the text up to the end of the expression, as kd quotes an argument:
    `dpp @$ea - 10 L10` fails with `Bad register error at '@$ea - 10 '`."""
    outcome = _parse(args, radix)
    if outcome.error is not None:
        _raise_first_unresolved(outcome, args, len(args), ctx)
        raise outcome.error
    value = Expr(outcome.node, args, outcome.stop).evaluate(ctx)
    return value, args[outcome.stop :]


def _raise_first_unresolved(outcome: _Outcome, text: str, end: int, ctx: ExprContext) -> None:
    """kd evaluates as it parses, so a name it cannot resolve is reported before a
    syntax error further on (`nt!Ke*` -> Couldn't resolve error at 'nt!Ke*')."""
    evaluator = _Evaluator(ctx, text, end, True)
    for tok in outcome.consumed:
        if tok.type == "NAME":
            evaluator.run(Name(str(tok), tok.start_pos, tok.end_pos))
        elif tok.type == "SYMBOL":
            evaluator.run(_ToNodes().symbol([tok]))
        elif tok.type == "REGISTER":
            evaluator.run(_ToNodes().register([tok]))
        elif tok.type == "DOT":
            evaluator.run(CurrentIp(tok.start_pos, tok.end_pos))


# --------------------------------------------------------------------------- evaluation

_MEMORY_SIZES = {"by": 1, "wo": 2, "dwo": 4, "qwo": 8, "poi": 8}


class _Evaluator:
    def __init__(self, ctx: ExprContext, text: str, end: int, sign_extend: bool) -> None:
        self.ctx = ctx
        self.text = text
        self.end = end
        self.sign_extend = sign_extend

    def rest(self, pos: int) -> str:
        return self.text[pos : max(pos, self.end)]

    def next_token(self, pos: int) -> int:
        """Where the token after position `pos` starts (kd reports an operator's failure
        at the token it had read ahead)."""
        return _SPACE.match(self.text, pos).end()

    def run(self, node: Node) -> int:
        try:
            return self.eval(node)
        except RecursionError:
            raise KdSyntaxError(self.rest(node.start), node.start) from None

    def eval(self, node: Node) -> int:
        match node:
            case Num():
                if node.value > MASK64:
                    raise KdOverflowError(self.rest(node.start), node.start)
                if self.sign_extend and not node.ticked:
                    return _sign_extend32(node.value)
                return node.value
            case Binary():
                left = self.eval(node.left)
                right = self.eval(node.right)
                return self.binary(node, left, right)
            case Unary():
                return self.unary(node, self.eval(node.operand))
            case Paren():
                return self.eval(node.inner)
            case Name():
                return self.name(node)
            case Symbol():
                value = self.ctx.symbol(node.name)
                if value is None:
                    raise KdResolveError(self.rest(node.start), node.start)
                return value & MASK64
            case Register():
                value = self.ctx.register(node.name)
                if value is None:
                    raise KdBadRegisterError(self.rest(node.start), node.start)
                return _register_value(node.name, value)
            case CurrentIp():
                value = self.ctx.register("$ip")
                if value is None:
                    raise KdBadRegisterError(self.rest(node.start), node.start)
                return value & MASK64
        raise TypeError(f"not an expression node: {node!r}")  # pragma: no cover

    def name(self, node: Name) -> int:
        if node.name.startswith("@@"):
            return _embedded_value(self.ctx, node) & MASK64
        low = node.name.lower()
        if low.startswith("$") or low in _COMMON_REGISTERS:
            value = self.ctx.register(low)
            if value is not None:
                return _register_value(low, value)
        value = self.ctx.symbol(node.name)
        if value is not None:
            return value & MASK64
        value = self.ctx.register(low)
        if value is not None:
            return _register_value(low, value)
        raise KdResolveError(self.rest(node.start), node.start)

    def unary(self, node: Unary, value: int) -> int:
        op = node.op
        if op == "+":
            return value
        if op == "-":
            return -value & MASK64
        if op == "not":
            return int(value == 0)
        if op == "hi":
            return (value >> 16) & 0xFFFF
        if op == "low":
            return value & 0xFFFF
        physical = op.startswith("$p")
        size = _MEMORY_SIZES[op[2:] if physical else op]
        operand = node.operand
        # kd reads memory before taking the `)` of `poi(...)`: the error is at `)`.
        pos = operand.end - 1 if isinstance(operand, Paren) else self.next_token(operand.end)
        try:
            if physical:
                reader = getattr(self.ctx, "read_physical", None)
                if reader is None:
                    raise MemoryAccessError(value)
                data = reader(value, size)
            else:
                data = self.ctx.read_memory(value, size)
        except MemoryAccessError:
            raise KdMemoryError(self.rest(pos), pos) from None
        if len(data) < size:
            raise KdMemoryError(self.rest(pos), pos)
        return int.from_bytes(data[:size], "little")

    def binary(self, node: Binary, a: int, b: int) -> int:
        op = node.op
        if op == "+":
            return (a + b) & MASK64
        if op == "-":
            return (a - b) & MASK64
        if op == "*":
            return (a * b) & MASK64
        if op in ("/", "mod", "%"):
            if b == 0:
                pos = self.next_token(node.right.end)
                raise KdOperandError(self.rest(pos), pos)
            sa, sb = _signed(a), _signed(b)
            quotient = abs(sa) // abs(sb) * (1 if (sa < 0) == (sb < 0) else -1)
            if op == "/":
                return quotient & MASK64
            return (sa - quotient * sb) & MASK64
        if op == "<<":
            return (a << (b & 63)) & MASK64
        if op == ">>":
            return a >> (b & 63)
        if op == ">>>":
            return (_signed(a) >> (b & 63)) & MASK64
        if op in ("=", "=="):
            return int(a == b)
        if op == "!=":
            return int(a != b)
        if op == "<":
            return int(a < b)
        if op == ">":
            return int(a > b)
        if op == "<=":
            return int(a <= b)
        if op == ">=":
            return int(a >= b)
        if op in ("and", "&"):
            return a & b
        if op in ("xor", "^"):
            return a ^ b
        if op in ("or", "|"):
            return a | b
        raise TypeError(f"unknown operator {op!r}")  # pragma: no cover


def _signed(value: int) -> int:
    return value - (1 << 64) if value & _SIGN64 else value
