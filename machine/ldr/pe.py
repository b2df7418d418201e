"""PE headers at a loaded image's base: DOS header, NT headers, section table — what
`db nt`, `!dh` and `!lmi` read."""

from __future__ import annotations

from dataclasses import dataclass

from machine.types.view import Struct

IMAGE_DOS_SIGNATURE = 0x5A4D  # "MZ"
IMAGE_NT_SIGNATURE = 0x00004550  # "PE\0\0"
IMAGE_FILE_MACHINE_AMD64 = 0x8664
IMAGE_NT_OPTIONAL_HDR64_MAGIC = 0x20B
IMAGE_FILE_EXECUTABLE_IMAGE = 0x0002
IMAGE_FILE_LARGE_ADDRESS_AWARE = 0x0020
IMAGE_SUBSYSTEM_NATIVE = 1
IMAGE_DLLCHARACTERISTICS = 0x4160  # HIGH_ENTROPY_VA | DYNAMIC_BASE | NX_COMPAT | GUARD_CF
SCN_CODE = 0x60000020  # CNT_CODE | MEM_EXECUTE | MEM_READ
SCN_DATA = 0xC8000040  # CNT_INITIALIZED_DATA | MEM_NOT_PAGED | MEM_READ | MEM_WRITE
SCN_PAGE_CODE = 0x60000020
SCN_INIT = 0x62000020  # code, discardable
LFANEW = 0xD8
FILE_ALIGNMENT = 0x200
# The real-mode stub every linker emits ("This program cannot be run in DOS mode.").
DOS_STUB = bytes.fromhex("0e1fba0e00b409cd21b8014ccd21") + \
    b"This program cannot be run in DOS mode.\r\r\n$"


@dataclass(frozen=True)
class Section:
    name: str
    rva: int
    size: int
    characteristics: int


def write_pe_headers(space, base: int, size_of_image: int, timestamp: int, entry_rva: int,
                     sections: list[Section], checksum: int = 0) -> None:
    dos = Struct(space, "_IMAGE_DOS_HEADER", base)
    for name, value in (("e_magic", IMAGE_DOS_SIGNATURE), ("e_cblp", 0x90), ("e_cp", 3),
                        ("e_cparhdr", 4), ("e_maxalloc", 0xFFFF), ("e_sp", 0xB8),
                        ("e_lfarlc", 0x40), ("e_lfanew", LFANEW)):
        dos.set(name, value)
    space.write_image(base + 0x40, DOS_STUB)
    nt = Struct(space, "_IMAGE_NT_HEADERS64", base + LFANEW)
    nt.set("Signature", IMAGE_NT_SIGNATURE)
    nt.set("FileHeader.Machine", IMAGE_FILE_MACHINE_AMD64)
    nt.set("FileHeader.NumberOfSections", len(sections))
    nt.set("FileHeader.TimeDateStamp", timestamp)
    nt.set("FileHeader.SizeOfOptionalHeader", 0xF0)
    nt.set("FileHeader.Characteristics",
           IMAGE_FILE_EXECUTABLE_IMAGE | IMAGE_FILE_LARGE_ADDRESS_AWARE)
    code = [s for s in sections if s.characteristics & 0x20]
    data = [s for s in sections if not s.characteristics & 0x20]
    headers_size = (LFANEW + 0x108 + 0x28 * len(sections) + FILE_ALIGNMENT - 1) \
        & ~(FILE_ALIGNMENT - 1)
    for name, value in (
            ("Magic", IMAGE_NT_OPTIONAL_HDR64_MAGIC), ("MajorLinkerVersion", 14),
            ("SizeOfCode", sum(s.size for s in code)),
            ("SizeOfInitializedData", sum(s.size for s in data)),
            ("AddressOfEntryPoint", entry_rva),
            ("BaseOfCode", code[0].rva if code else 0), ("ImageBase", base),
            ("SectionAlignment", 0x1000), ("FileAlignment", FILE_ALIGNMENT),
            ("MajorOperatingSystemVersion", 10), ("MajorImageVersion", 10),
            ("MajorSubsystemVersion", 10), ("SizeOfImage", size_of_image),
            ("SizeOfHeaders", headers_size), ("CheckSum", checksum),
            ("Subsystem", IMAGE_SUBSYSTEM_NATIVE),
            ("DllCharacteristics", IMAGE_DLLCHARACTERISTICS),
            ("SizeOfStackReserve", 0x40000), ("SizeOfStackCommit", 0x1000),
            ("SizeOfHeapReserve", 0x100000), ("SizeOfHeapCommit", 0x1000),
            ("NumberOfRvaAndSizes", 16)):
        nt.set(f"OptionalHeader.{name}", value)
    table = base + LFANEW + 0x108
    raw = headers_size
    for i, s in enumerate(sections):
        h = Struct(space, "_IMAGE_SECTION_HEADER", table + 0x28 * i)
        h.set_bytes("Name", s.name.encode("ascii")[:8].ljust(8, b"\0"))
        h.set("Misc.VirtualSize", s.size)
        h.set("VirtualAddress", s.rva)
        raw_size = (s.size + FILE_ALIGNMENT - 1) & ~(FILE_ALIGNMENT - 1)
        h.set("SizeOfRawData", raw_size)
        h.set("PointerToRawData", raw)
        h.set("Characteristics", s.characteristics)
        raw += raw_size
