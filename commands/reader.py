"""Reading typed kernel data through a Target: the debugger's view of structures."""

from __future__ import annotations

from commands.target import MemoryAccessError, Target

BASE_SIGNED = {"Char": 1, "Int2B": 2, "Int4B": 4, "Int8B": 8}


class Reader:
    """Fields by name, lists, strings — all read from target memory."""

    def __init__(self, target: Target, dtb: int | None = None) -> None:
        self.target = target
        self.types = target.types
        self.dtb = dtb
        self._fields: dict[tuple[str, str], tuple[int, int, bool, int, int]] = {}

    def read(self, address: int, size: int) -> bytes:
        return self.target.read_virtual(address, size, self.dtb)

    def int(self, address: int, size: int, signed: bool = False) -> int:
        return int.from_bytes(self.read(address, size), "little", signed=signed)

    def u64(self, address: int) -> int:
        return self.int(address, 8)

    def try_u64(self, address: int) -> int | None:
        try:
            return self.u64(address)
        except MemoryAccessError:
            return None

    def offset(self, type_name: str, path: str) -> int:
        return self._accessor(type_name, path)[0]

    def _accessor(self, type_name: str, path: str) -> tuple[int, int, bool, int, int]:
        key = (type_name, path)
        acc = self._fields.get(key)
        if acc is None:
            off, f = self.types.resolve(type_name, path)
            if f.kind == "bitfield":
                acc = (off, f.size, False, f.bit_position, f.bit_length)
            else:
                acc = (off, f.size, f.type in BASE_SIGNED, 0, 0)
            self._fields[key] = acc
        return acc

    def field(self, type_name: str, address: int, path: str) -> int:
        off, size, signed, bpos, blen = self._accessor(type_name, path)
        value = self.int(address + off, size, signed)
        if blen:
            value = (value >> bpos) & ((1 << blen) - 1)
        return value

    def field_addr(self, type_name: str, address: int, path: str) -> int:
        return address + self.offset(type_name, path)

    def unicode_string(self, address: int) -> str:
        length = self.field("_UNICODE_STRING", address, "Length")
        buf = self.field("_UNICODE_STRING", address, "Buffer")
        if not length or not buf:
            return ""
        return self.read(buf, length).decode("utf-16-le", errors="replace")

    def ascii_array(self, address: int, size: int) -> str:
        raw = self.read(address, size)
        return raw.split(b"\0", 1)[0].decode("latin-1")

    def list_entries(self, head: int, limit: int = 100_000) -> list[int]:
        """Flink-order entries of a `_LIST_ENTRY` list (head excluded)."""
        out = []
        entry = self.u64(head)
        while entry != head and len(out) < limit:
            out.append(entry)
            entry = self.u64(entry)
        return out
