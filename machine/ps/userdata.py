"""What a user process keeps about itself in its own address space: the PEB's loader data
(PEB_LDR_DATA and one LDR_DATA_TABLE_ENTRY per mapped image), its process parameters
(RTL_USER_PROCESS_PARAMETERS: image path, command line, current directory) and each
thread's TEB.  A debugger reads these through the process's DirectoryTableBase, so they
live in user pages of that process only (`.process /p` then `!peb`, `!teb`).

Layout of the page after the PEB page (the PEB page itself holds the _PEB and, after it,
what events.py records there):
  +0x000 _PEB_LDR_DATA, +0x100 the loader entries, +0x400 _RTL_USER_PROCESS_PARAMETERS,
  +0x800 the strings they point to.
"""

from __future__ import annotations

import zlib

from machine.ldr.pe import Section, write_pe_headers
from machine.rtl.lists import initialize_list_head, insert_tail_list
from machine.types.view import Struct

PAGE = 0x1000
LDR_OFFSET = 0x000
ENTRIES_OFFSET = 0x100
PARAMS_OFFSET = 0x400
STRINGS_OFFSET = 0x800

USER_STACK_RESERVE = 0x100000  # one MiB reserved per thread (usermode.user_stack_top)
USER_STACK_COMMIT = 0x3000
NTDLL_SIZE = 0x1F5000
IMAGE_SIZE = 0x10000  # one 64 KiB slot per process (create.image_base)


class _Strings:
    """Appends UTF-16 strings to the process's string area."""

    def __init__(self, space, at: int, end: int) -> None:
        self.space, self.at, self.end = space, at, end

    def unicode(self, us_addr: int, text: str) -> None:
        data = text.encode("utf-16-le")
        if self.at + len(data) + 2 > self.end:
            raise ValueError("process string area full")
        self.space.write(self.at, data + b"\0\0")
        us = Struct(self.space, "_UNICODE_STRING", us_addr)
        us.set("Length", len(data))
        us.set("MaximumLength", len(data) + 2)
        us.set("Buffer", self.at)
        self.at = (self.at + len(data) + 2 + 7) & ~7


def _ldr_entry(m, space, strings: _Strings, ldr: Struct, entry: int, base: int, size: int,
               full: str, name: str) -> None:
    e = Struct(space, "_LDR_DATA_TABLE_ENTRY", entry)
    e.set("DllBase", base)
    e.set("SizeOfImage", size)
    e.set("ObsoleteLoadCount", 0xFFFF)
    strings.unicode(e.addr("FullDllName"), full)
    strings.unicode(e.addr("BaseDllName"), name)
    for links, head in (("InLoadOrderLinks", "InLoadOrderModuleList"),
                        ("InMemoryOrderLinks", "InMemoryOrderModuleList"),
                        ("InInitializationOrderLinks", "InInitializationOrderModuleList")):
        insert_tail_list(space, ldr.addr(head), e.addr(links))


def image_timestamp(name: str) -> int:
    """A user image's TimeDateStamp.  Windows builds its images reproducibly, so the
    stamp is a hash of the build rather than a date; here a hash of the file name."""
    return zlib.crc32(name.lower().encode("ascii"))


def map_image_headers(space, base: int, size: int, name: str) -> None:
    """The header page of a user image (the rest of the image is not mapped: user code
    is simulated), so that a debugger can read its PE headers and timestamp."""
    space.map_new(base, PAGE, user=True)
    write_pe_headers(space, base, size, image_timestamp(name), 0x1000,
                     [Section(".text", 0x1000, size - 0x1000, 0x60000020)])


def write_process_data(m, space, peb_addr: int, image: str, image_path: str,
                       image_base: int) -> None:
    """Map the page after the PEB and fill the PEB's Ldr and ProcessParameters."""
    page = peb_addr + PAGE
    space.map_new(page, PAGE, user=True)
    strings = _Strings(space, page + STRINGS_OFFSET, page + PAGE)
    ldr = Struct(space, "_PEB_LDR_DATA", page + LDR_OFFSET)
    ldr.set("Length", m.catalog.get("_PEB_LDR_DATA").size)
    ldr.set("Initialized", 1)
    for head in ("InLoadOrderModuleList", "InMemoryOrderModuleList",
                 "InInitializationOrderModuleList"):
        initialize_list_head(space, ldr.addr(head))
    entry_size = (m.catalog.get("_LDR_DATA_TABLE_ENTRY").size + 0xF) & ~0xF
    win_path = "C:" + image_path.split("HarddiskVolume3", 1)[-1]
    _ldr_entry(m, space, strings, ldr, page + ENTRIES_OFFSET, image_base, IMAGE_SIZE,
               win_path, image)
    _ldr_entry(m, space, strings, ldr, page + ENTRIES_OFFSET + entry_size,
               m.layout.ntdll_base, NTDLL_SIZE, "C:\\Windows\\SYSTEM32\\ntdll.dll",
               "ntdll.dll")

    map_image_headers(space, image_base, IMAGE_SIZE, image)
    map_image_headers(space, m.layout.ntdll_base, NTDLL_SIZE, "ntdll.dll")

    params = Struct(space, "_RTL_USER_PROCESS_PARAMETERS", page + PARAMS_OFFSET)
    size = m.catalog.get("_RTL_USER_PROCESS_PARAMETERS").size
    params.set("MaximumLength", size)
    params.set("Length", size)
    params.set("Flags", 1)  # RTL_USER_PROC_PARAMS_NORMALIZED: pointers, not offsets
    folder = win_path.rsplit("\\", 1)[0] + "\\"
    strings.unicode(params.addr("CurrentDirectory.DosPath"), folder)
    strings.unicode(params.addr("DllPath"), "")
    strings.unicode(params.addr("ImagePathName"), win_path)
    strings.unicode(params.addr("CommandLine"), f"\"{win_path}\"" if " " in win_path
                    else win_path)
    strings.unicode(params.addr("WindowTitle"), win_path)
    peb = Struct(space, "_PEB", peb_addr)
    peb.set("Ldr", ldr.address)
    peb.set("ProcessParameters", params.address)


def write_teb(m, space, teb: int, pid: int, tid: int, peb_addr: int, stack_top: int) -> None:
    """Map and fill a user thread's TEB (its NT_TIB, client id and PEB pointer)."""
    size = (m.catalog.get("_TEB").size + PAGE - 1) & ~(PAGE - 1)
    space.map_new(teb, size, user=True)
    t = Struct(space, "_TEB", teb)
    stack_base = (stack_top + PAGE - 1) & ~(PAGE - 1)
    t.set("NtTib.StackBase", stack_base)
    t.set("NtTib.StackLimit", stack_base - USER_STACK_COMMIT)
    t.set("NtTib.Self", teb)
    t.set("ClientId.UniqueProcess", pid)
    t.set("ClientId.UniqueThread", tid)
    t.set("ProcessEnvironmentBlock", peb_addr)
    t.set("RealClientId.UniqueProcess", pid)
    t.set("RealClientId.UniqueThread", tid)
