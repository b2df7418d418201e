"""The language's types: sized integers, pointers (untyped `ptr` or to a type), nt
structures from the type catalog, and arrays; with C's rules for arithmetic."""

from __future__ import annotations

from dataclasses import dataclass

from machine.types.catalog import BASE_TYPES, FUNCTION_POINTERS, Field, TypeCatalog

from . import ast as A
from .errors import DriverLangError

SCALARS = {"u8": (1, False), "u16": (2, False), "u32": (4, False), "u64": (8, False),
           "i8": (1, True), "i16": (2, True), "i32": (4, True), "i64": (8, True)}
# KSPIN_LOCK is a ULONG_PTR in wdm.h, so it has no layout of its own in the catalog.
ALIASES = {"_KSPIN_LOCK": "u64"}


@dataclass(frozen=True)
class Type:
    kind: str  # int | ptr | struct | array | void
    size: int
    signed: bool = False
    name: str = ""  # u32, _KDPC, or the struct's name
    target: Type | None = None  # pointee (None: untyped ptr) or array element
    count: int = 0
    members: tuple[Field, ...] | None = None  # an anonymous struct/union's fields

    @property
    def is_int(self) -> bool:
        return self.kind == "int"

    @property
    def scalar(self) -> bool:
        return self.kind in ("int", "ptr")

    def __str__(self) -> str:
        if self.kind == "ptr":
            return "ptr" if self.target is None else f"*{self.target}"
        if self.kind == "array":
            return f"{self.target}[{self.count}]"
        return self.name


def integer(name: str) -> Type:
    size, signed = SCALARS[name]
    return Type("int", size, signed, name)


I32, U32, I64, U64 = integer("i32"), integer("u32"), integer("i64"), integer("u64")
PTR = Type("ptr", 8, False, "ptr")
VOID = Type("void", 0, False, "void")


def pointer(target: Type | None) -> Type:
    return Type("ptr", 8, False, "ptr", target)


def int_of(size: int, signed: bool) -> Type:
    return integer(("i" if signed else "u") + str(size * 8))


def promote(t: Type) -> Type:
    """C's integer promotion: narrower than 32 bits becomes i32."""
    return I32 if t.is_int and t.size < 4 else t


def common(a: Type, b: Type) -> Type:
    """C's usual arithmetic conversions for two integer operands."""
    a, b = promote(a), promote(b)
    if a.size != b.size:
        return a if a.size > b.size else b
    return a if a.signed == b.signed else int_of(a.size, False)


def literal_type(value: int, hex_: bool) -> Type:
    """A literal's type, as C picks it: the first of i32, (u32 for hex), i64, u64 that fits."""
    for t in (I32, U32, I64, U64) if hex_ else (I32, I64, U64):
        if fits_exactly(value, t):
            return t
    return U64


def fits_exactly(value: int, t: Type) -> bool:
    bits = t.size * 8
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if t.signed else (0, (1 << bits) - 1)
    return lo <= value <= hi


def fits(value: int, t: Type) -> bool:
    """A constant can be stored in `t` when it fits its width read as signed or unsigned
    (so 0xC0000010 is a good NTSTATUS, and -1 a good u32)."""
    bits = t.size * 8
    return -(1 << (bits - 1)) <= value < (1 << bits)


def wrap(value: int, t: Type) -> int:
    """The value as `t` holds it (Python integer, signed for a signed type)."""
    bits = t.size * 8
    value &= (1 << bits) - 1
    if t.signed and value >> (bits - 1):
        value -= 1 << bits
    return value


class Types:
    """Type names and catalog field types -> Type."""

    def __init__(self, catalog: TypeCatalog) -> None:
        self.catalog = catalog

    def resolve(self, t: A.TypeName) -> Type:
        if t.name == "*":
            assert t.target is not None
            return pointer(self.resolve(t.target))
        if t.name == "[]":
            assert t.target is not None
            element = self.resolve(t.target)
            return Type("array", element.size * t.count, False, "", element, t.count)
        if t.name == "ptr":
            return PTR
        if t.name in SCALARS:
            return integer(t.name)
        if t.name in ALIASES:
            return integer(ALIASES[t.name])
        found = self.nt(t.name)
        if found is None:
            raise DriverLangError(f"unknown type '{t.name}'", t.line, t.column)
        return found

    def nt(self, name: str) -> Type | None:
        td = self.catalog.get(name)
        if td is None or "!" in name:
            return None
        if td.kind == "enum":
            return int_of(td.size, True)
        return Type("struct", td.size, False, td.name)

    def of_display(self, text: str, size: int = 0) -> Type:
        """The Type of a dt display type string ("Uint4B", "Ptr64 _IRP", "[4] Ptr64 Void")."""
        if text in FUNCTION_POINTERS:
            return PTR
        if text.startswith("Ptr64 "):
            inner = text[len("Ptr64 "):]
            return PTR if inner == "Void" else pointer(self.of_display(inner))
        if text.startswith("["):
            count, rest = text[1:].split("] ", 1)
            element = self.of_display(rest)
            return Type("array", element.size * int(count), False, "", element, int(count))
        if text in BASE_TYPES:
            bsize, signed = BASE_TYPES[text]
            return VOID if bsize == 0 else int_of(bsize, signed)
        found = self.nt(text)
        if found is not None:
            return found
        return Type("struct", size, False, text)

    def of_field(self, f: Field) -> Type:
        if f.members:
            return Type("struct", f.size, False, f.name, members=f.members)
        if f.kind == "bitfield":
            return self.of_display(f.storage)
        return self.of_display(f.type, f.size)

    def field(self, struct: Type, name: str) -> Field | None:
        if struct.members is not None:
            return next((m for m in struct.members if m.name.lower() == name.lower()), None)
        td = self.catalog.get(struct.name)
        return td.field(name) if td is not None else None
