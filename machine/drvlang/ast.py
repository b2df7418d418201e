"""Plain syntax-tree objects built by the parser's Transformer.

Every node carries the line and column (1-based) where it starts in the source, so each
error the compiler reports can point at the construct it is about.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Node:
    line: int
    column: int


# --- types ---------------------------------------------------------------------------------


@dataclass
class TypeName(Node):
    """A type as written: `u32`, `ptr`, `_KDPC`, `*_IRP`, `u8[64]`."""

    name: str  # scalar keyword or nt type name; "*" for a pointer, "[]" for an array
    target: TypeName | None = None  # pointee or element
    count: int = 0  # array length


# --- expressions ---------------------------------------------------------------------------


@dataclass
class Expr(Node):
    pass


@dataclass
class Int(Expr):
    value: int
    hex: bool = False  # C types a hex literal u32 where a decimal one would be i64


@dataclass
class Tag(Expr):
    """A pool tag literal such as 'Fult' (its value: the characters in memory order)."""

    text: str


@dataclass
class Name(Expr):
    name: str


@dataclass
class NtName(Expr):
    """`nt!Name`: an nt export."""

    name: str


@dataclass
class Unary(Expr):
    op: str  # - ~ ! & *
    operand: Expr


@dataclass
class Binary(Expr):
    op: str
    left: Expr
    right: Expr


@dataclass
class Cast(Expr):
    type: TypeName
    operand: Expr


@dataclass
class Call(Expr):
    """`Name(args)`: a driver routine, a builtin, or an nt export."""

    name: str
    args: list[Expr]
    nt: bool = False  # written nt!Name(...)
    name_column: int = 0


@dataclass
class CallPtr(Expr):
    """`call(target, args...)`: a call through a pointer."""

    target: Expr
    args: list[Expr]


@dataclass
class Field(Expr):
    base: Expr
    name: str
    arrow: bool  # -> (through a pointer) rather than . (of a structure)


@dataclass
class Index(Expr):
    base: Expr
    index: Expr


@dataclass
class RawMem(Expr):
    """`u32[addr]`: sized memory at an address."""

    type: TypeName
    address: Expr


@dataclass
class SizeOf(Expr):
    type: TypeName


# --- statements ----------------------------------------------------------------------------


@dataclass
class Stmt(Node):
    pass


@dataclass
class Let(Stmt):
    name: str
    type: TypeName | None
    value: Expr


@dataclass
class Assign(Stmt):
    op: str  # = += -= |= &=
    target: Expr
    value: Expr


@dataclass
class If(Stmt):
    cond: Expr
    then: list[Stmt]
    otherwise: list[Stmt] | None  # an `else if` is an If alone in this list


@dataclass
class While(Stmt):
    cond: Expr
    body: list[Stmt]


@dataclass
class For(Stmt):
    var: str
    start: Expr
    end: Expr
    body: list[Stmt]


@dataclass
class Break(Stmt):
    pass


@dataclass
class Continue(Stmt):
    pass


@dataclass
class Return(Stmt):
    value: Expr | None


@dataclass
class ExprStmt(Stmt):
    expr: Expr


@dataclass
class Breakpoint(Stmt):
    pass


@dataclass
class Asm(Stmt):
    """Assembly passed through verbatim; `lines` pairs each line with its source line."""

    lines: list[tuple[int, str]]


# --- declarations --------------------------------------------------------------------------


@dataclass
class Param(Node):
    name: str
    type: TypeName


@dataclass
class Global(Node):
    name: str
    type: TypeName
    value: Expr | None


@dataclass
class String(Node):
    name: str
    value: str


@dataclass
class Routine(Node):
    name: str
    params: list[Param]
    returns: TypeName | None
    body: list[Stmt]
    end_line: int = 0  # of the closing brace: where the epilogue's code is attributed


@dataclass
class Program:
    globals: list[Global] = field(default_factory=list)
    strings: list[String] = field(default_factory=list)
    routines: list[Routine] = field(default_factory=list)
    order: list[Global | String | Routine] = field(default_factory=list)  # as written
