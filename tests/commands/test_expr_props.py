"""Property tests: random expression trees rendered as MASM text evaluate as a reference
evaluator says; random text never raises anything but KdError."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from commands.errors import KdError, KdOperandError
from commands.expr import evaluate, parse_expression_prefix, take_expression
from commands.target import MemoryAccessError

MASK = (1 << 64) - 1

# Binary operators by precedence level, loosest first (MASM's table).
LEVELS = [
    ["or", "|"],
    ["xor", "^"],
    ["and", "&"],
    ["=", "==", "!=", "<", ">", "<=", ">="],
    ["<<", ">>", ">>>"],
    ["+", "-"],
    ["*", "/", "mod", "%"],
]
PRECEDENCE = {op: level for level, ops in enumerate(LEVELS) for op in ops}
UNARY_PREC = len(LEVELS)
ATOM_PREC = UNARY_PREC + 1
UNARY = ["+", "-", "not", "hi", "low"]


@dataclass(frozen=True)
class Lit:
    value: int
    text: str  # how it is written

    @property
    def ticked(self) -> bool:
        return "`" in self.text


@dataclass(frozen=True)
class Un:
    op: str
    operand: object


@dataclass(frozen=True)
class Bin:
    op: str
    left: object
    right: object


def signed(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def reference(node) -> int:
    """MASM semantics, written independently of commands.expr."""
    if isinstance(node, Lit):
        v = node.value
        if not node.ticked and 0x80000000 <= v <= 0xFFFFFFFF:
            v |= 0xFFFFFFFF00000000
        return v
    if isinstance(node, Un):
        v = reference(node.operand)
        return {
            "+": v,
            "-": (-v) & MASK,
            "not": 1 if v == 0 else 0,
            "hi": (v >> 16) & 0xFFFF,
            "low": v & 0xFFFF,
        }[node.op]
    a, b = reference(node.left), reference(node.right)
    op = node.op
    if op in ("/", "mod", "%"):
        if b == 0:
            raise ZeroDivisionError
        sa, sb = signed(a), signed(b)
        q = abs(sa) // abs(sb)
        if (sa < 0) != (sb < 0):
            q = -q
        return (q if op == "/" else sa - q * sb) & MASK
    table = {
        "+": lambda: a + b,
        "-": lambda: a - b,
        "*": lambda: a * b,
        "<<": lambda: a << (b % 64),
        ">>": lambda: a >> (b % 64),
        ">>>": lambda: signed(a) >> (b % 64),
        "=": lambda: a == b,
        "==": lambda: a == b,
        "!=": lambda: a != b,
        "<": lambda: a < b,
        ">": lambda: a > b,
        "<=": lambda: a <= b,
        ">=": lambda: a >= b,
        "and": lambda: a & b,
        "&": lambda: a & b,
        "xor": lambda: a ^ b,
        "^": lambda: a ^ b,
        "or": lambda: a | b,
        "|": lambda: a | b,
    }
    return int(table[op]()) & MASK


# ---------------------------------------------------------------------------- rendering


@st.composite
def literals(draw) -> Lit:
    value = draw(
        st.one_of(
            st.integers(0, 0xFF),
            st.integers(0, 0xFFFFFFFF),
            st.integers(0x7FFFFFF0, 0x100000010),
            st.integers(0, MASK),
        )
    )
    form = draw(st.sampled_from(["hex", "0x", "0X", "0n", "0t", "0y", "h", "tick", "0xtick"]))
    if form == "hex":
        text = f"{value:x}"
    elif form in ("0x", "0X"):
        text = f"{form}{value:X}" if draw(st.booleans()) else f"{form}{value:x}"
    elif form == "0n":
        text = f"0n{value}"
    elif form == "0t":
        text = f"0t{value:o}"
    elif form == "0y":
        text = f"0y{value:b}"
    elif form == "h":
        text = f"0{value:x}h" if draw(st.booleans()) else f"{value:x}H"
    else:
        text = f"{value >> 32:x}`{value & 0xFFFFFFFF:08x}"
        if form == "0xtick":
            text = "0x" + text
    return Lit(value, text)


def trees(max_leaves: int = 12):
    return st.recursive(
        literals(),
        lambda children: st.one_of(
            st.builds(Un, st.sampled_from(UNARY), children),
            st.builds(Bin, st.sampled_from(list(PRECEDENCE)), children, children),
        ),
        max_leaves=max_leaves,
    )


def render(node, draw) -> tuple[str, int]:
    """MASM text for the tree with the fewest parentheses its precedence needs (and
    some extra, and random spacing), and the precedence of its top."""
    if isinstance(node, Lit):
        text, prec = node.text, ATOM_PREC
    elif isinstance(node, Un):
        inner, inner_prec = render(node.operand, draw)
        if inner_prec < UNARY_PREC:
            inner = f"({inner})"
        gap = " " if node.op.isalpha() else draw(st.sampled_from(["", " "]))
        text, prec = f"{node.op}{gap}{inner}", UNARY_PREC
    else:
        p = PRECEDENCE[node.op]
        left, left_prec = render(node.left, draw)
        right, right_prec = render(node.right, draw)
        if left_prec < p:
            left = f"({left})"
        if right_prec <= p:
            right = f"({right})"
        gap = " " if node.op.isalpha() else draw(st.sampled_from(["", " ", "  "]))
        text, prec = f"{left}{gap}{node.op}{gap}{right}", p
    if draw(st.integers(0, 9)) == 0:
        text, prec = f"( {text} )", ATOM_PREC
    return text, prec


class NoTarget:
    def register(self, name: str) -> int | None:
        return None

    def symbol(self, name: str) -> int | None:
        return None

    def read_memory(self, address: int, size: int) -> bytes:
        raise MemoryAccessError(address)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees(), data=st.data())
def test_evaluate_matches_reference(tree, data) -> None:
    text, _ = render(tree, data.draw)
    try:
        expected = reference(tree)
    except ZeroDivisionError:
        expected = None
    if expected is None:
        try:
            evaluate(text, NoTarget())
        except KdOperandError:
            return
        raise AssertionError(f"{text!r} should divide by zero")
    assert evaluate(text, NoTarget()) == expected, text


@settings(max_examples=200, deadline=None)
@given(tree=trees(8), data=st.data())
def test_prefix_stops_before_the_next_argument(tree, data) -> None:
    text, _ = render(tree, data.draw)
    try:
        expected = reference(tree)
    except ZeroDivisionError:
        assume(False)
    tail = data.draw(st.sampled_from(["L2", "l?10", '"quoted"', "[x]", "; r"]))
    expr, rest = parse_expression_prefix(f"{text} {tail}")
    assert rest == tail
    assert expr.evaluate(NoTarget()) == expected
    assert take_expression(f"  {text}   {tail}", NoTarget()) == (expected, tail)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, MASK))
def test_number_forms_agree(value: int) -> None:
    forms = [
        f"0x{value:x}",
        f"0n{value}",
        f"0t{value:o}",
        f"0y{value:b}",
        f"0{value:x}h",
        f"{value >> 32:x}`{value & 0xFFFFFFFF:08x}",
    ]
    results = {evaluate(f, NoTarget(), sign_extend=False) for f in forms}
    assert results == {value}
    assert evaluate(str(value), NoTarget(), radix=10, sign_extend=False) == value


# ------------------------------------------------------------------------------ garbage


class SomeTarget:
    """Answers for a few names, and memory that is readable only at even addresses."""

    def register(self, name: str) -> int | None:
        return {"rax": 7, "rsp": 0x1000, "$ip": 0x2000, "eax": 0x80000000}.get(name)

    def symbol(self, name: str) -> int | None:
        return {"nt": 0xFFFFF80000000000, "nt!foo": 0xFFFFF80000001000}.get(name.lower())

    def read_memory(self, address: int, size: int) -> bytes:
        if address % 2:
            raise MemoryAccessError(address)
        return (address * 3 & MASK).to_bytes(8, "little")[:size]


MASM_ALPHABET = st.sampled_from(
    list("0123456789abcdefhlnotxyLX!@$.`'()[]+-*/%<>=!&^|~ ;\"#?:_")
    + ["poi", "by", "wo", "dwo", "qwo", "hi", "low", "not", "and", "or", "xor", "mod"]
    + ["rax", "@rsp", "nt!foo", "nt", "$ip", "@$t0", "0x", "0n", "0t", "0y", " L", "L?"]
    + ["$pby", "$ppoi", "\t", "\n", "é", "\x00"]
)


@settings(max_examples=600, deadline=None)
@given(st.lists(MASM_ALPHABET, max_size=30).map("".join))
def test_garbage_only_raises_kd_errors(text: str) -> None:
    for call in (
        lambda: evaluate(text, SomeTarget()),
        lambda: evaluate(text, SomeTarget(), radix=10),
        lambda: parse_expression_prefix(text),
        lambda: take_expression(text, SomeTarget()),
    ):
        try:
            result = call()
        except KdError as e:
            assert str(e)
            continue
        if isinstance(result, int):
            assert 0 <= result <= MASK
        elif isinstance(result[0], int):
            assert 0 <= result[0] <= MASK


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_only_raises_kd_errors(text: str) -> None:
    try:
        value = evaluate(text, SomeTarget())
    except KdError:
        return
    assert 0 <= value <= MASK
