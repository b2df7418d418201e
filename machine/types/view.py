"""Typed access to structures in simulated memory: read and write fields by name."""

from __future__ import annotations

from functools import lru_cache

from machine.types.catalog import BASE_TYPES, TypeCatalog, load_catalog


@lru_cache(maxsize=4096)
def _accessor(type_name: str, path: str) -> tuple[int, int, bool, int, int]:
    """(offset, size, signed, bit_position, bit_length) for a field path."""
    cat = load_catalog()
    offset, f = cat.resolve(type_name, path)
    if f.kind == "bitfield":
        return offset, f.size, False, f.bit_position, f.bit_length
    signed = BASE_TYPES.get(f.type, (0, False))[1] if f.kind == "base" else False
    size = f.size if f.kind in ("base", "pointer", "enum", "bitfield") else f.size
    return offset, size, signed, 0, 0


class Struct:
    """A structure of a catalog type at a virtual address in an address space."""

    __slots__ = ("space", "type_name", "address")

    def __init__(self, space, type_name: str, address: int) -> None:
        self.space = space
        self.type_name = type_name
        self.address = address

    def offset(self, path: str) -> int:
        return _accessor(self.type_name, path)[0]

    def addr(self, path: str) -> int:
        """Address of a field (for embedded structures, lists, arrays)."""
        return self.address + _accessor(self.type_name, path)[0]

    def get(self, path: str) -> int:
        off, size, signed, bpos, blen = _accessor(self.type_name, path)
        value = self.space.read_int(self.address + off, size, signed)
        if blen:
            value = (value >> bpos) & ((1 << blen) - 1)
        return value

    def set(self, path: str, value: int) -> None:
        off, size, _signed, bpos, blen = _accessor(self.type_name, path)
        if blen:
            mask = ((1 << blen) - 1) << bpos
            old = self.space.read_int(self.address + off, size)
            value = (old & ~mask) | ((value << bpos) & mask)
        self.space.write_int(self.address + off, size, value)

    def set_bytes(self, path: str, data: bytes) -> None:
        self.space.write(self.addr(path), data)

    def sub(self, path: str, type_name: str | None = None) -> Struct:
        """The embedded structure at a field, viewed as its own type (or as type_name)."""
        off, f = load_catalog().resolve(self.type_name, path)
        return Struct(self.space, type_name or f.type, self.address + off)


def sizeof(type_name: str, catalog: TypeCatalog | None = None) -> int:
    t = (catalog or load_catalog()).get(type_name)
    if t is None:
        raise KeyError(type_name)
    return t.size
