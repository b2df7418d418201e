"""Loaded modules carry real PE headers that a debugger can parse from memory."""

from __future__ import annotations

import struct


def test_every_module_has_dos_nt_headers_and_sections_covering_its_code(session):
    read = session.target.read_virtual
    for module in session.symbols.modules():
        dos = read(module.base, 0x40)
        assert dos[:2] == b"MZ"
        lfanew = struct.unpack_from("<I", dos, 0x3C)[0]
        nt = read(module.base + lfanew, 0x108)
        assert nt[:4] == b"PE\0\0"
        machine, nsections, timestamp = struct.unpack_from("<HHI", nt, 4)
        assert machine == 0x8664 and timestamp == module.timestamp
        assert struct.unpack_from("<Q", nt, 0x18 + 0x18)[0] == module.base  # ImageBase
        assert struct.unpack_from("<I", nt, 0x18 + 0x38)[0] == module.size  # SizeOfImage
        table = read(module.base + lfanew + 0x108, 0x28 * nsections)
        sections = {}
        for i in range(nsections):
            name = table[0x28 * i:0x28 * i + 8].rstrip(b"\0").decode()
            vsize, rva = struct.unpack_from("<II", table, 0x28 * i + 8)
            sections[name] = (rva, vsize)
        rva, vsize = sections[".text"]
        for func in module.symbols.functions:
            assert rva <= func.rva < rva + vsize, (module.name, func.name)
