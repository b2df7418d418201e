"""`!dh`: an image's PE headers (DOS, file, optional, section table) read from memory at
the module's base, printed in the layout of kd's image-header extension."""

from __future__ import annotations

import time

from commands.errors import KdError
from commands.registry import Result, command
from commands.target import MemoryAccessError

DOS = "_IMAGE_DOS_HEADER"
NT = "_IMAGE_NT_HEADERS64"
SECTION = "_IMAGE_SECTION_HEADER"
SECTION_SIZE = 0x28
MAX_SECTIONS = 96  # the loader's own limit; a larger count means a broken header

MACHINES = {0x8664: "X64", 0x14C: "i386", 0xAA64: "ARM64", 0x1C4: "ARM"}
FILE_FLAGS = ((0x0001, "Relocations stripped"), (0x0002, "Executable"),
              (0x0004, "Line numbers stripped"), (0x0008, "Symbols stripped"),
              (0x0020, "App can handle >2gb addresses"), (0x0100, "32 bit word machine"),
              (0x0200, "Debug information stripped"), (0x1000, "System"), (0x2000, "DLL"))
DLL_FLAGS = ((0x0020, "High entropy VA supported"), (0x0040, "Dynamic base"),
             (0x0080, "Force integrity"), (0x0100, "NX compatible"),
             (0x0200, "No isolation"), (0x0400, "No SEH"), (0x0800, "Do not bind"),
             (0x1000, "App container"), (0x2000, "WDM driver"), (0x4000, "Guard"),
             (0x8000, "Terminal server aware"))
SUBSYSTEMS = {1: "Native", 2: "Windows GUI", 3: "Windows CUI", 9: "Windows CE GUI",
              10: "EFI Application", 11: "EFI Boot Service Driver",
              12: "EFI Runtime Driver", 16: "Windows Boot Application"}
DIRECTORIES = ("Export", "Import", "Resource", "Exception", "Security", "Base Relocation",
               "Debug", "Description", "Special", "Thread Storage", "Load Configuration",
               "Bound Import", "Import Address Table", "Delay Import", "COR20 Header",
               "Reserved")
# Section flag words, in bit order as kd lists them (the alignment bits and the
# read/write/execute bits are printed after them, each as one word).
SCN_WORDS = ((0x8, "No Pad"), (0x20, "Code"), (0x40, "Initialized Data"),
             (0x80, "Uninitialized Data"), (0x100, "Other"), (0x200, "Info"),
             (0x800, "Remove"), (0x1000, "Communal"), (0x8000, "Far Data"),
             (0x20000, "Purgeable or 16-Bit"), (0x40000, "Locked"), (0x80000, "Preload"),
             (0x02000000, "Discardable"), (0x04000000, "Not Cached"),
             (0x08000000, "Not Paged"), (0x10000000, "Shared"))
# Read/write/execute bits (0x20000000 execute, 0x40000000 read, 0x80000000 write).
SCN_ACCESS = {0x0: "", 0x2: "Execute Only", 0x4: "Read Only", 0x6: "Execute Read",
              0x8: "Write Only", 0xA: "Execute Write", 0xC: "Read Write",
              0xE: "Execute Read Write"}
USAGE = ["Usage: dh [options] address", "",
         "Dumps headers from an image based at address.", "", "Options:", "",
         "   -a      Dump everything", "   -f      Dump file headers",
         "   -s      Dump section headers", ""]


def _ctime(ts: int) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(ts))


def _flag_lines(value: int, table) -> list[str]:
    return [f"            {label}" for bit, label in table if value & bit]


class NoFileHeader(ValueError):
    """No image at the address: no MZ or PE signature."""


def nt_headers(r, base: int) -> int:
    """The address of the IMAGE_NT_HEADERS64 of the image at `base` (read through the
    Reader `r`, so in its address space); NoFileHeader if there is no image there."""
    if r.field(DOS, base, "e_magic") != 0x5A4D:
        raise NoFileHeader("no MZ signature")
    nt = base + r.field(DOS, base, "e_lfanew")
    if r.field(NT, nt, "Signature") != 0x4550:
        raise NoFileHeader("no PE signature")
    return nt


def read_headers(s, base: int) -> dict:
    """The DOS/NT headers and the section table at `base`, as structured data."""
    r = s.reader
    nt = nt_headers(r, base)

    def fh(name: str) -> int:
        return r.field(NT, nt, f"FileHeader.{name}")

    def oh(name: str) -> int:
        return r.field(NT, nt, f"OptionalHeader.{name}")

    file_header = {n: fh(n) for n in ("Machine", "NumberOfSections", "TimeDateStamp",
                                      "PointerToSymbolTable", "NumberOfSymbols",
                                      "SizeOfOptionalHeader", "Characteristics")}
    optional = {n: oh(n) for n in (
        "Magic", "MajorLinkerVersion", "MinorLinkerVersion", "SizeOfCode",
        "SizeOfInitializedData", "SizeOfUninitializedData", "AddressOfEntryPoint",
        "BaseOfCode", "ImageBase", "SectionAlignment", "FileAlignment", "Subsystem",
        "MajorOperatingSystemVersion", "MinorOperatingSystemVersion", "MajorImageVersion",
        "MinorImageVersion", "MajorSubsystemVersion", "MinorSubsystemVersion",
        "SizeOfImage", "SizeOfHeaders", "CheckSum", "SizeOfStackReserve",
        "SizeOfStackCommit", "SizeOfHeapReserve", "SizeOfHeapCommit", "DllCharacteristics",
        "NumberOfRvaAndSizes")}
    dir_at = r.field_addr(NT, nt, "OptionalHeader.DataDirectory")
    directories = []
    for i in range(min(optional["NumberOfRvaAndSizes"], len(DIRECTORIES))):
        raw = r.read(dir_at + 8 * i, 8)
        directories.append((int.from_bytes(raw[:4], "little"),
                            int.from_bytes(raw[4:], "little")))
    table = nt + r.offset(NT, "OptionalHeader") + file_header["SizeOfOptionalHeader"]
    sections = []
    for i in range(min(file_header["NumberOfSections"], MAX_SECTIONS)):
        at = table + SECTION_SIZE * i
        sections.append({
            "name": r.ascii_array(r.field_addr(SECTION, at, "Name"), 8),
            "virtual_size": r.field(SECTION, at, "Misc.VirtualSize"),
            "virtual_address": r.field(SECTION, at, "VirtualAddress"),
            "raw_size": r.field(SECTION, at, "SizeOfRawData"),
            "raw_pointer": r.field(SECTION, at, "PointerToRawData"),
            "relocations_pointer": r.field(SECTION, at, "PointerToRelocations"),
            "line_numbers_pointer": r.field(SECTION, at, "PointerToLinenumbers"),
            "relocations": r.field(SECTION, at, "NumberOfRelocations"),
            "line_numbers": r.field(SECTION, at, "NumberOfLinenumbers"),
            "characteristics": r.field(SECTION, at, "Characteristics")})
    return {"base": base, "nt_headers": nt, "file_header": file_header,
            "optional_header": optional, "directories": directories, "sections": sections}


def _file_lines(h: dict) -> list[str]:
    f, o = h["file_header"], h["optional_header"]
    is_dll = f["Characteristics"] & 0x2000
    lines = ["", f"File Type: {'DLL' if is_dll else 'EXECUTABLE IMAGE'}",
             "FILE HEADER VALUES",
             f"{f['Machine']:8X} machine ({MACHINES.get(f['Machine'], 'Unknown')})",
             f"{f['NumberOfSections']:8X} number of sections",
             f"{f['TimeDateStamp']:08X} time date stamp {_ctime(f['TimeDateStamp'])}", "",
             f"{f['PointerToSymbolTable']:8X} file pointer to symbol table",
             f"{f['NumberOfSymbols']:8X} number of symbols",
             f"{f['SizeOfOptionalHeader']:8X} size of optional header",
             f"{f['Characteristics']:8X} characteristics"]
    lines += _flag_lines(f["Characteristics"], FILE_FLAGS)
    sub = o["Subsystem"]
    lines += ["", "OPTIONAL HEADER VALUES", f"{o['Magic']:8X} magic #",
              f"{o['MajorLinkerVersion']:5d}.{o['MinorLinkerVersion']:02d} linker version",
              f"{o['SizeOfCode']:8X} size of code",
              f"{o['SizeOfInitializedData']:8X} size of initialized data",
              f"{o['SizeOfUninitializedData']:8X} size of uninitialized data",
              f"{o['AddressOfEntryPoint']:8X} address of entry point",
              f"{o['BaseOfCode']:8X} base of code",
              "         ----- new -----",
              f"{o['ImageBase']:016x} image base",
              f"{o['SectionAlignment']:8X} section alignment",
              f"{o['FileAlignment']:8X} file alignment",
              f"{sub:8X} subsystem ({SUBSYSTEMS.get(sub, 'Unknown')})",
              f"{o['MajorOperatingSystemVersion']:5d}."
              f"{o['MinorOperatingSystemVersion']:02d} operating system version",
              f"{o['MajorImageVersion']:5d}.{o['MinorImageVersion']:02d} image version",
              f"{o['MajorSubsystemVersion']:5d}.{o['MinorSubsystemVersion']:02d}"
              " subsystem version",
              f"{o['SizeOfImage']:8X} size of image",
              f"{o['SizeOfHeaders']:8X} size of headers",
              f"{o['CheckSum']:8X} checksum",
              f"{o['SizeOfStackReserve']:016X} size of stack reserve",
              f"{o['SizeOfStackCommit']:016X} size of stack commit",
              f"{o['SizeOfHeapReserve']:016X} size of heap reserve",
              f"{o['SizeOfHeapCommit']:016X} size of heap commit",
              f"{o['DllCharacteristics']:8X}  DLL characteristics"]
    lines += _flag_lines(o["DllCharacteristics"], DLL_FLAGS)
    for (rva, size), name in zip(h["directories"], DIRECTORIES, strict=False):
        lines.append(f"{rva:8X} [{size:8X}] address [size] of {name} Directory")
    return lines + [""]  # kd ends the header block with an empty line


def _section_lines(h: dict) -> list[str]:
    lines: list[str] = []
    for i, sec in enumerate(h["sections"], 1):
        flags = sec["characteristics"]
        lines += ["", f"SECTION HEADER #{i:X}", f"{sec['name']:>8} name",
                  f"{sec['virtual_size']:8X} virtual size",
                  f"{sec['virtual_address']:8X} virtual address",
                  f"{sec['raw_size']:8X} size of raw data",
                  f"{sec['raw_pointer']:8X} file pointer to raw data",
                  f"{sec['relocations_pointer']:8X} file pointer to relocation table",
                  f"{sec['line_numbers_pointer']:8X} file pointer to line numbers",
                  f"{sec['relocations']:8X} number of relocations",
                  f"{sec['line_numbers']:8X} number of line numbers",
                  f"{flags:08X} flags"]
        words = [label for bit, label in SCN_WORDS if flags & bit]
        align = (flags >> 20) & 0xF
        words.append(f"{1 << (align - 1)} byte align" if align else "(no align specified)")
        access = SCN_ACCESS[(flags >> 28) & 0xE]
        if access:
            words.append(access)
        lines += [f"         {w}" for w in words]
    return lines


@command("!dh", syntax="!dh [-a | -f | -s] <module base | module name>",
         help="Display the PE headers of an image loaded in memory.")
def dh_cmd(s, args: str) -> Result:
    words = args.split()
    opts = [w.lower() for w in words if w.startswith(("-", "/"))]
    rest = [w for w in words if not w.startswith(("-", "/"))]
    # kd answers help and any switch it does not know with its usage text.
    if any(o[1:] not in ("a", "f", "s") for o in opts) or not rest:
        return Result(USAGE, {"usage": True})
    if len(rest) > 1:
        return Result(["Invalid extra argument"], {"error": "Invalid extra argument"})
    kinds = {o[1:] for o in opts if o[1:] != "a"} or {"f", "s"}
    if "-a" in opts or "/a" in opts:
        kinds = {"f", "s"}
    base = s.evaluate(rest[0])
    try:
        headers = read_headers(s, base)
    except NoFileHeader:
        raise KdError("No file header.") from None
    except MemoryAccessError:
        raise KdError("Can't read file header: error == 0") from None
    lines: list[str] = []
    if "f" in kinds:
        lines += _file_lines(headers)
    if "s" in kinds:
        lines += _section_lines(headers)
    return Result(lines, headers)


@command("!lmi", syntax="!lmi <module name | module base>",
         help="Display a module's header summary and symbol status.")
def lmi_cmd(s, args: str) -> Result:
    arg = args.strip()
    if not arg:
        return Result(["Usage: !lmi <module name | module base>"], {"usage": True})
    # kd echoes the argument lower-cased, then looks it up as a module name, then as an
    # address inside a module.
    title = f"Loaded Module Info: [{arg.lower()}] "
    module = s.symbols.module_named(arg)
    if module is None:
        try:
            module = s.symbols.module_at(s.evaluate(arg))
        except KdError:
            module = None
    if module is None:
        missing = f"{arg.lower()} not found"
        return Result([title, missing], {"error": missing})
    try:
        h = read_headers(s, module.base)
    except (MemoryAccessError, ValueError):
        # kd: the headers are paged out or overwritten
        raise KdError(f"Could not read image header at {module.base:016x}") from None
    f, o = h["file_header"], h["optional_header"]
    lines = [title,
             f"         Module: {module.image.rsplit('.', 1)[0]}",
             f"   Base Address: {module.base:016x}",
             f"     Image Name: {module.image}",
             f"   Machine Type: {f['Machine']} ({MACHINES.get(f['Machine'], 'Unknown')})",
             f"     Time Stamp: {f['TimeDateStamp']:x} {_ctime(f['TimeDateStamp'])}",
             f"           Size: {o['SizeOfImage']:x}",
             f"       CheckSum: {o['CheckSum']:x}",
             f"Characteristics: {f['Characteristics']:x}  ",
             "     Image Type: MEMORY   - Image read successfully from loaded memory."]
    sym = module.symbols
    if sym is None:
        lines += ["    Symbol Type: NONE     - pdb not found from image path.",
                  "    Load Report: no symbols loaded"]
    else:
        kind = "private symbols & lines" if sym.private else "public symbols "
        lines += ["    Symbol Type: PDB      - Symbols loaded successfully from image header.",
                  f"                 {sym.pdb}",
                  f"    Load Report: {kind}, not source indexed ",
                  f"                 {sym.pdb}"]
    data = {"module": module.name, "image": module.image, "base": module.base,
            "machine": f["Machine"], "timestamp": f["TimeDateStamp"],
            "size": o["SizeOfImage"], "checksum": o["CheckSum"],
            "characteristics": f["Characteristics"],
            "symbols": None if sym is None else sym.pdb}
    return Result(lines, data)
