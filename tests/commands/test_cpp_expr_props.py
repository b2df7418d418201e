"""Property tests: random C integer expressions over `unsigned __int64` evaluate as C
does (arithmetic modulo 2**64, comparisons and logical operators giving bool), and
random text never raises anything but KdError."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.cpp_expr import evaluate
from commands.errors import KdError, KdOperandError
from machine.types.catalog import load_catalog

MASK = (1 << 64) - 1
TYPES = load_catalog()

# Binary operators by C precedence level, loosest first.
LEVELS = [["|"], ["^"], ["&"], ["<<", ">>"], ["+", "-"], ["*", "/", "%"]]
PRECEDENCE = {op: level for level, ops in enumerate(LEVELS) for op in ops}
ATOM = len(LEVELS) + 1


class Ctx:
    types = TYPES

    def register(self, name):
        return None

    def global_symbol(self, name):
        return None

    def read_memory(self, address, size):
        raise AssertionError("no memory is read")

    def masm(self, text):
        raise AssertionError("no MASM")


@dataclass(frozen=True)
class Lit:
    value: int


@dataclass(frozen=True)
class Un:
    op: str
    operand: object


@dataclass(frozen=True)
class Bin:
    op: str
    left: object
    right: object


def literal_text(value: int, style: int) -> str:
    if style == 0:
        return f"0x{value:x}ui64"
    return f"{value}ui64"


def render(node, styles) -> str:
    """Fully parenthesised C text (each operand of lower or equal precedence is
    bracketed, so the tree's shape is what C parses)."""
    if isinstance(node, Lit):
        return literal_text(node.value, styles.get(node.value, 0))
    if isinstance(node, Un):
        return f"{node.op}({render(node.operand, styles)})"
    return f"({render(node.left, styles)}) {node.op} ({render(node.right, styles)})"


def reference(node) -> int:
    """C semantics on unsigned __int64 (shift counts are below 64 by construction)."""
    if isinstance(node, Lit):
        return node.value
    if isinstance(node, Un):
        v = reference(node.operand)
        return {"-": -v & MASK, "~": ~v & MASK, "+": v}[node.op]
    a, b = reference(node.left), reference(node.right)
    op = node.op
    if op in ("/", "%") and b == 0:
        raise ZeroDivisionError
    return {
        "+": (a + b) & MASK, "-": (a - b) & MASK, "*": (a * b) & MASK,
        "/": a // b if b else 0, "%": a % b if b else 0,
        "<<": (a << (b & 63)) & MASK, ">>": a >> (b & 63),
        "&": a & b, "|": a | b, "^": a ^ b,
    }[op]


literals = st.one_of(st.integers(0, 20), st.integers(0, MASK)).map(Lit)


def trees(max_leaves: int = 12):
    def extend(children):
        binary = st.builds(Bin, st.sampled_from(sorted(PRECEDENCE)), children, children)
        unary = st.builds(Un, st.sampled_from(["-", "~", "+"]), children)
        return st.one_of(binary, unary)

    return st.recursive(literals, extend, max_leaves=max_leaves)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees(), st.integers(0, 1))
def test_unsigned_int64_arithmetic(tree, style):
    text = render(tree, {})
    if style:
        text = text.replace("0x", "0X")
    try:
        expected = reference(tree)
    except ZeroDivisionError:
        with pytest.raises(KdOperandError):
            evaluate(text, Ctx())
        return
    v = evaluate(text, Ctx())
    assert v.type.spelled() == "unsigned int64", text
    assert v.value == expected, text


@settings(max_examples=200, deadline=None)
@given(trees(6), trees(6), st.sampled_from(["<", ">", "<=", ">=", "==", "!="]))
def test_comparisons_give_bool(left, right, op):
    try:
        a, b = reference(left), reference(right)
    except ZeroDivisionError:
        return
    text = f"({render(left, {})}) {op} ({render(right, {})})"
    v = evaluate(text, Ctx())
    expected = {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b, "==": a == b,
                "!=": a != b}[op]
    assert (v.type.spelled(), v.value) == ("bool", int(expected))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789abcxu()+-*/%<>=!&|^~?:[]., @$#_!", max_size=30))
def test_random_text_raises_only_kd_errors(text):
    try:
        evaluate(text, Ctx())
    except KdError:
        pass
