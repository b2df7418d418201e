"""Fakes for renderer tests: a paged memory and a module symbolizer."""

from __future__ import annotations

import struct

from commands.target import MemoryAccessError


class PagedMemory:
    """Sparse 4 KB pages; reading an absent page raises MemoryAccessError."""

    def __init__(self) -> None:
        self.pages: dict[int, bytearray] = {}

    def map(self, address: int, size: int) -> None:
        for page in range(address >> 12, ((address + size - 1) >> 12) + 1):
            self.pages.setdefault(page, bytearray(4096))

    def write(self, address: int, data: bytes | str) -> None:
        """Bytes, or hex text (`"4d 5a 90-00"`)."""
        if isinstance(data, str):
            data = bytes.fromhex(data.replace(" ", "").replace("-", ""))
        self.map(address, len(data))
        for i, b in enumerate(data):
            self.pages[(address + i) >> 12][(address + i) & 0xFFF] = b

    def q(self, address: int, value: int) -> None:
        self.write(address, struct.pack("<Q", value))

    def d(self, address: int, value: int) -> None:
        self.write(address, struct.pack("<I", value))

    def w(self, address: int, value: int) -> None:
        self.write(address, struct.pack("<H", value))

    def b(self, address: int, value: int) -> None:
        self.write(address, bytes([value]))

    def unicode_string(self, address: int, text: str, buffer: int) -> None:
        data = text.encode("utf-16-le")
        self.w(address, len(data))
        self.w(address + 2, len(data) + 2)
        self.q(address + 8, buffer)
        self.write(buffer, data + b"\0\0")

    def read(self, address: int, size: int) -> bytes:
        out = bytearray()
        for i in range(size):
            page = self.pages.get((address + i) >> 12)
            if page is None:
                raise MemoryAccessError(address + i)
            out.append(page[(address + i) & 0xFFF])
        return bytes(out)


class ModuleSymbols:
    """Modules (name, base, size) and public symbols (module, name, address), named the
    way kd names addresses: `mod!sym+0x10`, `mod!sym`, `mod+0x12d0`."""

    def __init__(self, modules, symbols=()) -> None:
        self.modules = modules
        self.symbols = symbols

    def name_for(self, address: int) -> str | None:
        for module, base, size in self.modules:
            if base <= address < base + size:
                best = None
                for mod, name, start in self.symbols:
                    if mod == module and start <= address and (best is None or start > best[1]):
                        best = (name, start)
                if best is None:
                    return f"{module}+0x{address - base:x}"
                offset = address - best[1]
                return f"{module}!{best[0]}" + (f"+0x{offset:x}" if offset else "")
        return None
