"""Windows 10 22H2 x64 type layouts, as `dt` knows them.

One catalog serves both sides: the machine lays out its kernel structures with it and the
debugger decodes memory with it (it reaches the debugger through the Target, as symbol
files reach kd).  The data file is produced by tools/gen_data.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

# dt's names for base types: (size, signed)
BASE_TYPES: dict[str, tuple[int, bool]] = {
    "UChar": (1, False),
    "Char": (1, True),
    "Uint2B": (2, False),
    "Int2B": (2, True),
    "Wchar": (2, False),
    "Uint4B": (4, False),
    "Int4B": (4, True),
    "Uint8B": (8, False),
    "Int8B": (8, True),
    "Float": (4, True),
    "Double": (8, True),
    "Void": (0, False),
}

POINTER_PREFIX = "Ptr64 "
FUNCTION_POINTERS = ("Ptr64     long", "Ptr64     void")


@dataclass(frozen=True, slots=True)
class Field:
    """One line of `dt`: a member at an offset, with its display type string."""

    name: str
    offset: int
    size: int
    kind: str  # base | pointer | array | struct | union | enum | bitfield
    type: str  # dt display string: "Uint4B", "Ptr64 _KTHREAD", "[15] UChar", "Pos 0, 1 Bit"
    bit_position: int = 0
    bit_length: int = 0
    storage: str = ""  # bitfields: the base type of the storage unit
    count: int = 0  # arrays
    element: str = ""  # arrays: the element's display type
    element_size: int = 0
    members: tuple[Field, ...] = ()  # anonymous struct/union: its sub-fields

    @property
    def anonymous(self) -> bool:
        return self.type == "<anonymous-tag>"

    @property
    def target(self) -> str:
        """For a pointer, what it points to ("_KTHREAD", "Void", "Ptr64 Void", "long")."""
        return pointee(self.type)


@dataclass(frozen=True, slots=True)
class TypeDef:
    name: str
    kind: str  # struct | union | enum
    size: int
    fields: tuple[Field, ...] = ()
    values: tuple[tuple[str, int], ...] = ()  # enums: (name, value) in declaration order
    _by_name: dict[str, Field] = field(default_factory=dict, compare=False, repr=False)

    def field(self, name: str) -> Field | None:
        """A field by name, case-insensitive as in kd; anonymous members are searched too."""
        return self._by_name.get(name.lower())

    def enum_name(self, value: int) -> str | None:
        for n, v in self.values:
            if v == value:
                return n
        return None


def pointee(type_str: str) -> str:
    if type_str in FUNCTION_POINTERS:
        return type_str[len("Ptr64"):].strip()
    if type_str.startswith(POINTER_PREFIX):
        return type_str[len(POINTER_PREFIX):]
    return ""


def _field(row: list) -> Field:
    name, offset, size, kind, type_ = row[:5]
    extra = row[5] if len(row) > 5 else None
    if kind == "bitfield":
        pos, length, storage = extra
        return Field(name, offset, size, kind, type_, bit_position=pos, bit_length=length,
                     storage=storage)
    if kind == "array":
        count, element, esize = extra
        return Field(name, offset, size, kind, type_, count=count, element=element,
                     element_size=esize)
    if extra is not None:
        return Field(name, offset, size, kind, type_, members=tuple(_field(m) for m in extra))
    return Field(name, offset, size, kind, type_)


def _index(fields: tuple[Field, ...]) -> dict[str, Field]:
    """Name -> field; direct fields win over members of anonymous fields."""
    out: dict[str, Field] = {}
    for f in fields:
        out.setdefault(f.name.lower(), f)
    return out


class TypeCatalog:
    """All struct, union and enum layouts of one build."""

    base_types = BASE_TYPES  # dt's base type names -> (size, signed)

    def __init__(self, data: dict) -> None:
        self.build: str = data["build"]
        self._types: dict[str, TypeDef] = {}
        self.extend(data)

    def extend(self, data: dict) -> None:
        """Add the types of another file of the same build; a type already known keeps
        its first layout (the reference facts win over a supplement)."""
        if data["build"] != self.build:
            raise ValueError(f"layouts of build {data['build']} added to {self.build}")
        for name, (kind, size, rows) in data["structs"].items():
            if name.lower() in self._types:
                continue
            fields = tuple(_field(r) for r in rows)
            self._types[name.lower()] = TypeDef(name, kind, size, fields, (), _index(fields))
        for name, (size, values) in data["enums"].items():
            if name.lower() in self._types:
                continue
            self._types[name.lower()] = TypeDef(name, "enum", size, (),
                                                tuple((n, v) for n, v in values))

    def get(self, name: str) -> TypeDef | None:
        """A type by name, with or without a `nt!` prefix, case-insensitive."""
        if "!" in name:
            name = name.split("!", 1)[1]
        return self._types.get(name.lower())

    def names(self) -> list[str]:
        return sorted(t.name for t in self._types.values())

    def sizeof(self, type_str: str) -> int:
        """Size of a dt display type string."""
        if type_str in BASE_TYPES:
            return BASE_TYPES[type_str][0]
        if type_str.startswith("Ptr64"):
            return 8
        if type_str.startswith("["):
            count, rest = type_str[1:].split("] ", 1)
            return int(count) * self.sizeof(rest)
        t = self.get(type_str)
        if t is None:
            raise KeyError(type_str)
        return t.size

    def kind_of(self, type_str: str) -> str:
        if type_str in BASE_TYPES:
            return "base"
        if type_str.startswith("Ptr64"):
            return "pointer"
        if type_str.startswith("["):
            return "array"
        t = self.get(type_str)
        return t.kind if t is not None else "base"

    def element_field(self, array: Field, index: int) -> Field:
        """The field for one element of an array field (offset relative to the array)."""
        kind = self.kind_of(array.element)
        name = f"{array.name}[{index}]"
        if kind == "array":
            count, inner = array.element[1:].split("] ", 1)
            return Field(name, index * array.element_size, array.element_size, kind,
                         array.element, count=int(count), element=inner,
                         element_size=self.sizeof(inner))
        return Field(name, index * array.element_size, array.element_size, kind, array.element)

    def resolve(self, type_name: str, path: str) -> tuple[int, Field]:
        """Offset and field of a dotted path such as `Pcb.DirectoryTableBase` or
        `Tail.Overlay.CurrentStackLocation`; `Name[3]` (or `Name[0][3]`) indexes arrays."""
        t = self.get(type_name)
        if t is None:
            raise KeyError(type_name)
        offset = 0
        fields_of: TypeDef | tuple[Field, ...] = t
        f: Field | None = None
        for part in path.split("."):
            indexes: list[int] = []
            if part.endswith("]") and "[" in part:
                part, rest = part.split("[", 1)
                try:
                    indexes = [int(i, 0) for i in rest[:-1].split("][")]
                except ValueError:
                    raise KeyError(f"{type_name}.{path}") from None
            if isinstance(fields_of, TypeDef):
                f = fields_of.field(part)
            else:
                f = next((m for m in fields_of if m.name.lower() == part.lower()), None)
            if f is None:
                raise KeyError(f"{type_name}.{path}")
            offset += f.offset
            if indexes:
                for index in indexes:
                    if f.kind != "array":
                        raise KeyError(f"{type_name}.{path}")
                    offset += index * f.element_size
                    f = self.element_field(f, index)
                elem = self.get(f.type) if f.kind in ("struct", "union") else None
                fields_of = elem if elem is not None else ()
                continue
            if f.members:
                fields_of = f.members
            else:
                sub = self.get(f.type) if f.kind in ("struct", "union") else None
                fields_of = sub if sub is not None else ()
        assert f is not None
        return offset, f


# The reference layouts, then layouts of the same build they lack (each with its source).
LAYOUT_FILES = ("layouts-win10-19045-x64.json", "layouts-supplement.json")


@cache
def load_catalog() -> TypeCatalog:
    """The shipped Windows 10 19045 x64 catalog (loaded once per process)."""
    data = resources.files("machine.types") / "data"
    main, *more = (json.loads((data / name).read_text()) for name in LAYOUT_FILES)
    catalog = TypeCatalog(main)
    for extra in more:
        catalog.extend(extra)
    return catalog
