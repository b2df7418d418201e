"""`.dump`: write the target's memory as a Windows x64 kernel crash dump (commands/crashdump.py).

`.dump /f FILE` writes a full dump (every physical page, in runs), `.dump /ka FILE` a
bitmap dump; `/o` overwrites an existing file, `/c "text"` sets the header's comment.
The debugger fills the header as a dump writer does, from what it reads: the bug check
from nt!KiBugCheckData, the list heads and data block from nt's symbols, the System
process's DirectoryTableBase, the stopped processor's registers, the time from
SharedUserData.  kdsim's section carries what a kdsim debugger needs to open the file as
it was: every processor's registers and MSRs, the symbols of the loaded and unloaded
images, the type layouts' build and the scenario.
"""

from __future__ import annotations

import os

from commands.analyze import read_bugcheck
from commands.crashdump import DUMP_BITMAP, DUMP_FULL, PAGE, DumpImage, encode_dump
from commands.dpcs_timers import SHARED_USER_DATA, shared_time
from commands.errors import KdError
from commands.registry import Result, command
from commands.symbols import NT_IMAGES
from commands.target import MemoryAccessError, SymbolFile

EXTRA_FORMAT = 1
KINDS = {DUMP_FULL: "Full kernel dump", DUMP_BITMAP: "Kernel bitmap dump"}


def symbol_file_data(sf: SymbolFile) -> dict:
    return {"module": sf.module, "image": sf.image, "pdb": sf.pdb, "private": sf.private,
            "functions": [[f.name, f.rva, f.size, [[u.offset, u.op, u.arg] for u in f.unwind]]
                          for f in sf.functions],
            "data": [[d.name, d.rva, d.size, d.type] for d in sf.data]}


def _options(args: str) -> tuple[set[str], str, str]:
    words = args.strip()
    options: set[str] = set()
    comment = ""
    while words.startswith("/"):
        option, _, rest = words.partition(" ")
        key = option[1:].lower()
        if key not in ("c", "f", "ka", "o"):
            break  # an absolute path, not an option
        words = rest.lstrip()
        if key == "c":
            if words.startswith('"'):
                end = words.find('"', 1)
                end = len(words) if end < 0 else end
                comment, words = words[1:end], words[end + 1:].lstrip()
            else:
                comment, _, words = words.partition(" ")
                words = words.lstrip()
        else:
            options.add(key)
    name = words.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1]
    return options, comment, name


def _nt_or_zero(s, name: str) -> int:
    address = s.symbols.address_of(f"nt!{name}")
    return address or 0


def _u64_or_zero(s, address: int) -> int:
    try:
        return s.reader.u64(address) if address else 0
    except MemoryAccessError:
        return 0


def build_image(s, dump_type: int, comment: str) -> DumpImage:
    """Everything a dump of the target holds, read through the debugger."""
    target = s.target
    pages_of = getattr(target, "physical_pages", None)
    if pages_of is None:
        raise KdError("The target cannot provide its physical memory")
    pages: dict[int, bytes] = {}
    for pfn in pages_of():
        pages[pfn] = target.read_physical(pfn * PAGE, PAGE)
    try:
        bugcheck = read_bugcheck(s)
    except (KdError, MemoryAccessError):
        bugcheck = None
    code, params = bugcheck if bugcheck is not None else (0, [0, 0, 0, 0])
    system = s.reader.u64(s.nt("PsInitialSystemProcess"))
    dtb = s.reader.field("_KPROCESS", system, "DirectoryTableBase")
    build_number = s.reader.int(s.nt("NtBuildNumber"), 4)
    stop = target.stop_processor
    processors = [target.registers(n) for n in range(target.processor_count)]
    msrs_of = getattr(target, "msrs", None)
    msrs = [{str(k): v for k, v in sorted(msrs_of(n).items())} if msrs_of else {}
            for n in range(target.processor_count)]
    images = [m.image for m in s.symbols.modules()] + [u.image for u in s.symbols.unloaded()]
    files = {}
    for image in [*NT_IMAGES, *images]:
        sf = target.symbol_file(image)
        if sf is not None:
            files.setdefault(image.lower(), symbol_file_data(sf))
    describe = getattr(target, "description", None)
    extra = {"format": EXTRA_FORMAT, "stop_processor": stop, "processors": processors,
             "msrs": msrs, "kernel_base": target.kernel_base(), "symbol_files": files,
             "types_build": getattr(target.types, "build", ""),
             "scenario": describe() if describe is not None else None,
             "lab": s.lab is not None}
    return DumpImage(
        dump_type=dump_type,
        directory_table_base=dtb,
        ps_loaded_module_list=s.nt("PsLoadedModuleList"),
        ps_active_process_head=s.nt("PsActiveProcessHead"),
        processors=target.processor_count,
        build=build_number & 0xFFFF,
        major_version=(build_number >> 28) & 0xF,
        bugcheck_code=code,
        bugcheck_parameters=(params[0], params[1], params[2], params[3]),
        context=processors[stop],
        pages=pages,
        pfn_database=_u64_or_zero(s, _nt_or_zero(s, "MmPfnDatabase")),
        kd_debugger_data_block=_nt_or_zero(s, "KdDebuggerDataBlock"),
        system_time=shared_time(s, "SystemTime") or 0,
        uptime=shared_time(s, "InterruptTime") or 0,
        product_type=s.reader.field("_KUSER_SHARED_DATA", SHARED_USER_DATA, "NtProductType"),
        suite_mask=s.reader.field("_KUSER_SHARED_DATA", SHARED_USER_DATA, "SuiteMask"),
        comment=comment,
        extra=extra)


def write_dump(s, path: str, dump_type: int, comment: str = "",
               overwrite: bool = False) -> int:
    """Write the dump file; its size."""
    data = encode_dump(build_image(s, dump_type, comment))
    try:
        with open(path, "wb" if overwrite else "xb") as f:
            f.write(data)
    except FileExistsError:
        raise KdError(f"Unable to create file '{path}': the file exists (.dump /o "
                      "overwrites it)") from None
    except OSError as exc:
        raise KdError(f"Unable to create file '{path}': {exc.strerror}") from None
    return len(data)


@command(".dump", syntax='.dump [/f | /ka] [/o] [/c "comment"] FileName',
         help="Write a kernel crash dump of the target: /f a full dump (every physical "
              "page), /ka a bitmap dump; /o overwrites an existing file.")
def dump_cmd(s, args: str) -> Result:
    options, comment, name = _options(args)
    if not name:
        raise KdError("No file name given")
    if "f" in options and "ka" in options:
        raise KdError("Choose one of /f and /ka")
    dump_type = DUMP_BITMAP if "ka" in options else DUMP_FULL
    size = write_dump(s, os.fspath(name), dump_type, comment, "o" in options)
    return Result([f"Creating {name} - {KINDS[dump_type]}", "Dump successfully written"],
                  {"file": name, "type": dump_type, "size": size})
