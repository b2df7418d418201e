"""Loaded images: nt, hal and scenario drivers mapped in kernel space, linked on
PsLoadedModuleList through `_KLDR_DATA_TABLE_ENTRY`s, each with its symbol table (what a
PDB would give a debugger: functions with their unwind data, and data symbols)."""

from __future__ import annotations

from dataclasses import dataclass, field

from machine.ke import native as nat
from machine.ldr.pe import SCN_CODE, SCN_DATA, Section, write_pe_headers
from machine.mm.physical import PAGE_SIZE
from machine.rtl.lists import insert_tail_list
from machine.types.view import Struct

# (offset, op, arg) like x64 UNWIND_CODEs; see commands.target.UnwindOp for the meaning.
Unwind = tuple[tuple[int, str, int | str], ...]

# A trap handler's frame: the CPU's machine frame (with or without an error code), then
# the rest of the _KTRAP_FRAME below it.
TRAP_UNWIND: Unwind = ((0, "machframe", 1), (1, "alloc", 0x160))
TRAP_UNWIND_NO_ERROR: Unwind = ((0, "machframe", 0), (1, "alloc", 0x168))


@dataclass
class FunctionInfo:
    name: str
    rva: int
    size: int
    unwind: Unwind = ()


@dataclass
class DataInfo:
    name: str
    rva: int
    size: int = 8
    type: str = ""


@dataclass
class ModuleImage:
    name: str  # debugger module name
    image: str  # file name
    pdb: str
    base: int
    size: int
    full_path: str
    timestamp: int = 0
    functions: list[FunctionInfo] = field(default_factory=list)
    data: list[DataInfo] = field(default_factory=list)
    ldr_entry: int = 0
    sections: list = field(default_factory=list)  # machine.ldr.pe.Section
    driver_object: int = 0  # a driver's _DRIVER_OBJECT, once IopLoadDriver made it
    checksum: int = 0


NT_TEXT_RVA = 0x200000
NT_DATA_RVA = 0xC00000
NT_SIZE = 0x1046000
HAL_SIZE = 0x6D000

# nt's data symbols the machine keeps state in: (name, size, type for the debugger)
NT_DATA = (
    ("PsActiveProcessHead", 0x10, "_LIST_ENTRY"),
    ("PsLoadedModuleList", 0x10, "_LIST_ENTRY"),
    ("KiBugCheckData", 0x28, ""),
    ("KeNumberProcessors", 0x8, ""),
    ("KiProcessorBlock", 0x200, ""),
    ("KeTickCount", 0x10, ""),
    ("KeMaximumIncrement", 0x8, ""),
    ("PsInitialSystemProcess", 0x8, ""),
    ("PsIdleProcess", 0x8, ""),
    ("KiInitialThread", 0x8, ""),
    ("NtBuildNumber", 0x8, ""),
    ("KdDebuggerDataBlock", 0x10, ""),
    ("MmPagedPoolStart", 0x8, ""),
    ("MmPagedPoolEnd", 0x8, ""),
    ("MmNonPagedPoolStart", 0x8, ""),
    ("MmNonPagedPoolEnd", 0x8, ""),
    ("ObHeaderCookie", 0x8, ""),
    ("ObpRootDirectoryObject", 0x8, ""),
    ("ObTypeIndexTable", 0x800, ""),
    ("ExpSystemResourcesList", 0x10, "_LIST_ENTRY"),
    ("IopCancelSpinLock", 0x8, ""),
)


def build_native_image(m, name: str, image: str, pdb: str, base: int, size: int,
                       full_path: str, text_rva: int, module: str) -> ModuleImage:
    """Lay out the native routines of one module and write their entry bytes."""
    img = ModuleImage(name, image, pdb, base, size, full_path)
    m.kspace.map_new(base, PAGE_SIZE)  # headers page
    rva = text_rva
    specs = [s for s in nat.REGISTRY.values() if s.module == module]
    code_end = text_rva + sum((s.size + 0xF) & ~0xF for s in specs) + 0x1000
    m.kspace.map_new(base + text_rva, code_end - text_rva, writable=False, executable=True)
    for spec in specs:
        addr = base + rva
        m.native_base[spec.name] = addr
        m.natives[addr] = spec
        m.symbols[f"{name}!{spec.name}"] = addr
        body = nat.prologue_bytes(spec)
        # The rest of the routine is int 3 filler: its behaviour is the Python behind it.
        m.kspace.write_image(addr, body.ljust(spec.size, b"\xcc"))
        if spec.trap:
            unwind: Unwind = TRAP_UNWIND if spec.error_code else TRAP_UNWIND_NO_ERROR
            if spec.below_trap_frame:
                unwind += ((2, "alloc", spec.below_trap_frame),)
        elif spec.frame:
            unwind = ((len(body), "alloc", spec.frame),)
        else:
            unwind = ()
        img.functions.append(FunctionInfo(spec.name, rva, spec.size, unwind))
        for label, off in spec.labels:
            img.data.append(DataInfo(label, rva + off, 0))
            m.symbols[f"{name}!{label}"] = addr + off
        rva += (spec.size + 0xF) & ~0xF
    img.sections.append(Section(".text", text_rva, rva - text_rva, SCN_CODE))
    return img


def add_data_symbols(m, img: ModuleImage, rva: int, entries) -> None:
    size = sum((e[1] + 0xF) & ~0xF for e in entries)
    m.kspace.map_new(img.base + rva, size + PAGE_SIZE)
    img.sections.append(Section(".data", rva, size, SCN_DATA))
    for sym_name, sz, type_name in entries:
        img.data.append(DataInfo(sym_name, rva, sz, type_name))
        m.symbols[f"{img.name}!{sym_name}"] = img.base + rva
        rva += (sz + 0xF) & ~0xF


def write_unicode_string(m, us_addr: int, text: str, tag: str = "Strg") -> None:
    """Fill a `_UNICODE_STRING` at us_addr with a pool copy of text."""
    data = text.encode("utf-16-le")
    buf = m.pool.allocate(0, len(data) + 2, tag)
    m.kspace.write(buf, data + b"\0\0")
    us = Struct(m.kspace, "_UNICODE_STRING", us_addr)
    us.set("Length", len(data))
    us.set("MaximumLength", len(data) + 2)
    us.set("Buffer", buf)


def link_loaded_module(m, img: ModuleImage, entry_point: int = 0) -> None:
    """Write img's PE headers and insert a `_KLDR_DATA_TABLE_ENTRY` for it at the tail
    of PsLoadedModuleList."""
    write_pe_headers(m.kspace, img.base, img.size, img.timestamp,
                     entry_point - img.base if entry_point else 0, img.sections, img.checksum)
    entry = m.pool.allocate(0, m.catalog.get("_KLDR_DATA_TABLE_ENTRY").size, "MmLd")
    e = Struct(m.kspace, "_KLDR_DATA_TABLE_ENTRY", entry)
    e.set("DllBase", img.base)
    e.set("EntryPoint", entry_point)
    e.set("SizeOfImage", img.size)
    e.set("SizeOfImageNotRounded", img.size)
    e.set("TimeDateStamp", img.timestamp)
    e.set("LoadCount", 1)
    e.set("Flags", 0x49104000)
    e.set("CheckSum", img.checksum)
    write_unicode_string(m, e.addr("FullDllName"), img.full_path, "MmLd")
    write_unicode_string(m, e.addr("BaseDllName"), img.image, "MmLd")
    insert_tail_list(m.kspace, m.sym("nt!PsLoadedModuleList"), entry)
    img.ldr_entry = entry
    m.modules.append(img)
