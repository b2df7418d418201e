"""C types for kd's C++ evaluator, built from the target's type catalog.

The catalog describes members with dt's display strings (`Uint4B`, `Ptr64 _KTHREAD`,
`[15] UChar`); the C++ evaluator works with C types and prints them with kd's C
spelling (`unsigned long`, `struct _KTHREAD *`, `unsigned char [15]`).
"""

from __future__ import annotations

from dataclasses import dataclass

from commands.target import TypeProvider

# dt base type -> (C spelling, size, signed)
_DT_BASE = {
    "UChar": ("unsigned char", 1, False),
    "Char": ("char", 1, True),
    "Uint2B": ("unsigned short", 2, False),
    "Int2B": ("short", 2, True),
    "Wchar": ("wchar_t", 2, False),
    "Uint4B": ("unsigned long", 4, False),
    "Int4B": ("long", 4, True),
    "Uint8B": ("unsigned int64", 8, False),
    "Int8B": ("int64", 8, True),
}

# C spellings (and the common Windows typedefs) a cast or sizeof may name.
_C_NAMES: dict[str, tuple[str, int, bool]] = {
    "char": ("char", 1, True),
    "signed char": ("char", 1, True),
    "unsigned char": ("unsigned char", 1, False),
    "short": ("short", 2, True),
    "short int": ("short", 2, True),
    "signed short": ("short", 2, True),
    "unsigned short": ("unsigned short", 2, False),
    "unsigned short int": ("unsigned short", 2, False),
    "wchar_t": ("wchar_t", 2, False),
    "int": ("int", 4, True),
    "signed": ("int", 4, True),
    "signed int": ("int", 4, True),
    "unsigned": ("unsigned int", 4, False),
    "unsigned int": ("unsigned int", 4, False),
    "long": ("long", 4, True),
    "long int": ("long", 4, True),
    "signed long": ("long", 4, True),
    "unsigned long": ("unsigned long", 4, False),
    "unsigned long int": ("unsigned long", 4, False),
    "long long": ("int64", 8, True),
    "signed long long": ("int64", 8, True),
    "unsigned long long": ("unsigned int64", 8, False),
    "__int8": ("char", 1, True),
    "unsigned __int8": ("unsigned char", 1, False),
    "__int16": ("short", 2, True),
    "unsigned __int16": ("unsigned short", 2, False),
    "__int32": ("int", 4, True),
    "unsigned __int32": ("unsigned int", 4, False),
    "__int64": ("int64", 8, True),
    "signed __int64": ("int64", 8, True),
    "unsigned __int64": ("unsigned int64", 8, False),
    "int64": ("int64", 8, True),
    "unsigned int64": ("unsigned int64", 8, False),
    "bool": ("bool", 1, False),
    "BOOLEAN": ("unsigned char", 1, False),
    "UCHAR": ("unsigned char", 1, False),
    "CHAR": ("char", 1, True),
    "BYTE": ("unsigned char", 1, False),
    "USHORT": ("unsigned short", 2, False),
    "SHORT": ("short", 2, True),
    "WORD": ("unsigned short", 2, False),
    "WCHAR": ("wchar_t", 2, False),
    "ULONG": ("unsigned long", 4, False),
    "LONG": ("long", 4, True),
    "DWORD": ("unsigned long", 4, False),
    "UINT": ("unsigned int", 4, False),
    "INT": ("int", 4, True),
    "ULONG64": ("unsigned int64", 8, False),
    "LONG64": ("int64", 8, True),
    "ULONGLONG": ("unsigned int64", 8, False),
    "LONGLONG": ("int64", 8, True),
    "DWORD64": ("unsigned int64", 8, False),
    "ULONG_PTR": ("unsigned int64", 8, False),
    "LONG_PTR": ("int64", 8, True),
    "SIZE_T": ("unsigned int64", 8, False),
    "UINT_PTR": ("unsigned int64", 8, False),
    "KIRQL": ("unsigned char", 1, False),
    "NTSTATUS": ("long", 4, True),
}
_C_POINTERS = {"PVOID": "void", "HANDLE": "void", "PCHAR": "char", "PSTR": "char",
               "PWCHAR": "wchar_t", "PWSTR": "wchar_t", "PUCHAR": "unsigned char",
               "PULONG": "unsigned long", "PULONG64": "unsigned int64"}
# Words that make up C type names, so the lexer can join `unsigned long int`.
C_TYPE_WORDS = frozenset({"unsigned", "signed", "char", "short", "int", "long", "__int8",
                          "__int16", "__int32", "__int64", "int64", "bool", "void",
                          "float", "double", "wchar_t"})
C_NAMED_TYPES = frozenset(_C_NAMES) | frozenset(_C_POINTERS) | {"VOID"}


@dataclass(frozen=True, slots=True)
class CType:
    """kind: int | bool | float | void | pointer | array | struct | enum | function."""

    kind: str
    name: str = ""  # C spelling of ints/floats; the tag of structs/unions/enums
    size: int = 0
    signed: bool = False
    target: CType | None = None  # pointee / element
    count: int = 0  # arrays
    union: bool = False

    @property
    def is_integer(self) -> bool:
        return self.kind in ("int", "bool", "enum")

    @property
    def is_scalar(self) -> bool:
        return self.kind in ("int", "bool", "enum", "pointer", "float", "function")

    def spelled(self) -> str:
        """kd's spelling: `unsigned long`, `struct _KTHREAD *`, `unsigned char [15]`,
        `struct _KPROCESS **`."""
        if self.kind == "pointer":
            inner = self.target.spelled() if self.target else "void"
            return inner + ("*" if inner.endswith("*") else " *")
        if self.kind == "array":
            return f"{self.target.spelled()} [{self.count}]"
        if self.kind == "struct":
            return f"{'union' if self.union else 'struct'} {self.name}"
        if self.kind == "function":
            return "<function>"
        return self.name


INT = CType("int", "int", 4, True)
UINT = CType("int", "unsigned int", 4, False)
LONG = CType("int", "long", 4, True)
ULONG = CType("int", "unsigned long", 4, False)
INT64 = CType("int", "int64", 8, True)
UINT64 = CType("int", "unsigned int64", 8, False)
BOOL = CType("bool", "bool", 1, False)
VOID = CType("void", "void", 0)
CHAR = CType("int", "char", 1, True)
FUNCTION = CType("function", "<function>", 8)


def pointer_to(t: CType) -> CType:
    return CType("pointer", "", 8, False, t)


def c_named(name: str) -> CType | None:
    """A C spelling or Windows typedef (`unsigned long`, `ULONG64`, `PVOID`)."""
    key = " ".join(name.split())
    if key in ("void", "VOID"):
        return VOID
    if key in ("float", "double"):
        return CType("float", key, 4 if key == "float" else 8, True)
    if key in _C_POINTERS:
        return pointer_to(c_named(_C_POINTERS[key]) or VOID)
    row = _C_NAMES.get(key)
    if row is None:
        return None
    spelling, size, signed = row
    if spelling == "bool":
        return BOOL
    return CType("int", spelling, size, signed)


def from_catalog(types: TypeProvider, name: str) -> CType | None:
    """A struct, union or enum of the catalog by name (`_EPROCESS`, `nt!_EPROCESS`)."""
    t = types.get(name)
    if t is None:
        return None
    if t.kind == "enum":
        return CType("enum", t.name, t.size or 4, True)
    return CType("struct", t.name, t.size, False, union=t.kind == "union")


def from_dt(types: TypeProvider, type_str: str) -> CType:
    """The C type of a dt display string (`Uint4B`, `Ptr64 _KTHREAD`, `[15] UChar`)."""
    if type_str in _DT_BASE:
        spelling, size, signed = _DT_BASE[type_str]
        return CType("int", spelling, size, signed)
    if type_str == "Void":
        return VOID
    if type_str in ("Float", "Double"):
        return CType("float", type_str.lower(), 4 if type_str == "Float" else 8, True)
    if type_str.startswith("Ptr64     "):
        return pointer_to(FUNCTION)
    if type_str.startswith("Ptr64 "):
        return pointer_to(from_dt(types, type_str[6:]))
    if type_str.startswith("["):
        count, rest = type_str[1:].split("] ", 1)
        element = from_dt(types, rest)
        return CType("array", "", int(count) * sizeof(element), False, element, int(count))
    found = from_catalog(types, type_str)
    if found is not None:
        return found
    return CType("struct", type_str, 0)


def sizeof(t: CType) -> int:
    return t.size


def dt_name(t: CType) -> str | None:
    """The catalog name to hand to dt for a struct or union."""
    return t.name if t.kind == "struct" else None
