"""The Windows x64 kernel crash-dump file: writing and reading it.

Layout (offsets of DUMP_HEADER64, the AMD64 CONTEXT inside it and the bitmap header, as
the dump format documents them and kdmp-parser and Volatility read them):

* 0x0000 DUMP_HEADER64, two pages: `PAGE`/`DU64`, versions, DirectoryTableBase,
  PfnDataBase, PsLoadedModuleList, PsActiveProcessHead, machine type, processor count,
  the bug check and its parameters, KdDebuggerDataBlock, the physical memory runs
  (0x88), the CONTEXT of the processor that stopped (0x348), an exception record
  (0xF00), the dump type (0xF98), the file size, system time, comment, uptime.  Unused
  bytes hold the `PAGE` pattern, as Windows leaves them.
* Full dump (type 1, `.dump /f`): every page of every run follows at 0x2000, packed in
  run order.
* Bitmap dump (type 5, `.dump /ka`): at 0x2000 an `SDMP`/`DUMP` header with the offset of
  the first page, the number of pages present and of bitmap bits, then the bitmap (bit n:
  page frame n is present); the present pages follow in frame order.
* Then kdsim's own section, which other readers ignore (they stop at the pages): the
  bytes `KDSIMX01`, a u64 length and that many bytes of zlib-compressed JSON (the
  symbols and types of the modules, every processor's registers and MSRs, the scenario),
  and as the file's last 16 bytes `KDSIMEND` and the section's file offset.  See
  docs/dump-files.md.

Reading checks every field it uses against the file's size before it allocates or reads,
and reports a bad file as a DumpFormatError naming the offset and the problem.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field

PAGE = 0x1000
HEADER_SIZE = 0x2000
PAGE_PATTERN = b"PAGE"
SIGNATURE, VALID_DUMP = b"PAGE", b"DU64"
MACHINE_AMD64 = 0x8664
DUMP_FULL, DUMP_BITMAP = 1, 5
BITMAP_SIGNATURE, BITMAP_VALID = b"SDMP", b"DUMP"
MAX_RUNS = (0x348 - 0x98) // 16  # the runs that fit the 700-byte descriptor buffer

# DUMP_HEADER64 field offsets.
OFF_DTB, OFF_PFN_DB, OFF_MODULE_LIST, OFF_PROCESS_HEAD = 0x10, 0x18, 0x20, 0x28
OFF_MACHINE, OFF_PROCESSORS, OFF_BUGCHECK, OFF_PARAMS = 0x30, 0x34, 0x38, 0x40
OFF_KDDEBUGGER_DATA = 0x80
OFF_RUN_COUNT, OFF_PAGE_COUNT, OFF_RUNS = 0x88, 0x90, 0x98
OFF_CONTEXT, OFF_EXCEPTION, OFF_DUMP_TYPE = 0x348, 0xF00, 0xF98
OFF_REQUIRED_SPACE, OFF_SYSTEM_TIME, OFF_COMMENT, OFF_UPTIME = 0xFA0, 0xFA8, 0xFB0, 0x1030
OFF_PRODUCT_TYPE, OFF_SUITE_MASK = 0x1040, 0x1044
COMMENT_SIZE = 128
EXCEPTION_SIZE = 0x98

# The AMD64 CONTEXT: offsets of what kdsim fills in.
CONTEXT_SIZE = 0x4D0
CONTEXT_FLAGS = 0x10001F  # CONTEXT_AMD64 | control, integer, segments, floating point, debug
MXCSR_DEFAULT = 0x1F80
CTX_FLAGS, CTX_MXCSR, CTX_MXCSR2 = 0x30, 0x34, 0x118
CTX_SEGMENTS = (("cs", 0x38), ("ds", 0x3A), ("es", 0x3C), ("fs", 0x3E), ("gs", 0x40),
                ("ss", 0x42))
CTX_EFLAGS = 0x44
CTX_REGISTERS = (("dr0", 0x48), ("dr1", 0x50), ("dr2", 0x58), ("dr3", 0x60), ("dr6", 0x68),
                 ("dr7", 0x70), ("rax", 0x78), ("rcx", 0x80), ("rdx", 0x88), ("rbx", 0x90),
                 ("rsp", 0x98), ("rbp", 0xA0), ("rsi", 0xA8), ("rdi", 0xB0), ("r8", 0xB8),
                 ("r9", 0xC0), ("r10", 0xC8), ("r11", 0xD0), ("r12", 0xD8), ("r13", 0xE0),
                 ("r14", 0xE8), ("r15", 0xF0), ("rip", 0xF8))

# Bitmap header fields (offsets from 0x2000).
BMP_FIRST_PAGE, BMP_PRESENT, BMP_BITS, BMP_BITMAP = 0x20, 0x28, 0x30, 0x38

EXTRA_MAGIC, EXTRA_END = b"KDSIMX01", b"KDSIMEND"
EXTRA_LIMIT = 64 << 20  # the most kdsim's section may hold once decompressed


class DumpFormatError(Exception):
    """A file that is not a dump kdsim can open: the offset and the problem."""

    def __init__(self, offset: int, problem: str) -> None:
        super().__init__(f"offset 0x{offset:x}: {problem}")
        self.offset = offset
        self.problem = problem


@dataclass
class DumpImage:
    """What a kernel dump holds."""

    dump_type: int  # DUMP_FULL or DUMP_BITMAP
    directory_table_base: int
    ps_loaded_module_list: int
    ps_active_process_head: int
    processors: int
    build: int  # the OS build number (MinorVersion)
    major_version: int  # 0xF a free build, 0xC a checked one (nt!NtBuildNumber's top nibble)
    bugcheck_code: int
    bugcheck_parameters: tuple[int, int, int, int]
    context: dict[str, int]  # the registers of the processor that stopped
    pages: dict[int, bytes]  # page frame number -> its 4 KiB
    pfn_database: int = 0
    kd_debugger_data_block: int = 0
    system_time: int = 0
    uptime: int = 0
    product_type: int = 0
    suite_mask: int = 0
    comment: str = ""
    extra: dict | None = None  # kdsim's section (None: a dump written by another tool)
    runs: list[tuple[int, int]] = field(default_factory=list)  # (first page, count)


def page_runs(pfns: list[int]) -> list[tuple[int, int]]:
    """Sorted frame numbers as runs of consecutive frames."""
    runs: list[list[int]] = []
    for pfn in sorted(pfns):
        if runs and runs[-1][0] + runs[-1][1] == pfn:
            runs[-1][1] += 1
        else:
            runs.append([pfn, 1])
    return [(base, count) for base, count in runs]


def pack_context(regs: dict[str, int]) -> bytes:
    ctx = bytearray(CONTEXT_SIZE)
    struct.pack_into("<II", ctx, CTX_FLAGS, CONTEXT_FLAGS, MXCSR_DEFAULT)
    struct.pack_into("<I", ctx, CTX_MXCSR2, MXCSR_DEFAULT)
    for name, off in CTX_SEGMENTS:
        struct.pack_into("<H", ctx, off, regs.get(name, 0) & 0xFFFF)
    struct.pack_into("<I", ctx, CTX_EFLAGS, regs.get("efl", 0) & 0xFFFFFFFF)
    for name, off in CTX_REGISTERS:
        struct.pack_into("<Q", ctx, off, regs.get(name, 0) & 0xFFFFFFFFFFFFFFFF)
    return bytes(ctx)


def unpack_context(raw: bytes) -> dict[str, int]:
    regs = {name: struct.unpack_from("<H", raw, off)[0] for name, off in CTX_SEGMENTS}
    regs["efl"] = struct.unpack_from("<I", raw, CTX_EFLAGS)[0]
    regs.update({name: struct.unpack_from("<Q", raw, off)[0] for name, off in CTX_REGISTERS})
    return regs


# -- writing ----------------------------------------------------------------------------------

def _header(image: DumpImage, runs: list[tuple[int, int]], size: int) -> bytearray:
    h = bytearray(PAGE_PATTERN * (HEADER_SIZE // 4))
    h[0:8] = SIGNATURE + VALID_DUMP
    struct.pack_into("<IIQQQQ", h, 0x08, image.major_version, image.build,
                     image.directory_table_base,
                     image.pfn_database, image.ps_loaded_module_list,
                     image.ps_active_process_head)
    struct.pack_into("<IIII", h, OFF_MACHINE, MACHINE_AMD64, image.processors,
                     image.bugcheck_code, 0)
    struct.pack_into("<4Q", h, OFF_PARAMS, *image.bugcheck_parameters)
    h[0x60:0x80] = bytes(0x20)  # VersionUser
    struct.pack_into("<Q", h, OFF_KDDEBUGGER_DATA, image.kd_debugger_data_block)
    h[OFF_RUN_COUNT:OFF_CONTEXT] = bytes(OFF_CONTEXT - OFF_RUN_COUNT)
    if image.dump_type == DUMP_FULL:
        struct.pack_into("<IIQ", h, OFF_RUN_COUNT, len(runs), 0,
                         sum(count for _, count in runs))
        for i, (base, count) in enumerate(runs):
            struct.pack_into("<QQ", h, OFF_RUNS + 16 * i, base, count)
    h[OFF_CONTEXT:OFF_CONTEXT + CONTEXT_SIZE] = pack_context(image.context)
    h[OFF_EXCEPTION:OFF_EXCEPTION + EXCEPTION_SIZE] = bytes(EXCEPTION_SIZE)
    struct.pack_into("<IIqqq", h, OFF_DUMP_TYPE, image.dump_type, 0, size, image.system_time,
                     0)
    comment = image.comment.encode("ascii", "replace")[:COMMENT_SIZE - 1]
    h[OFF_COMMENT:OFF_COMMENT + COMMENT_SIZE] = comment.ljust(COMMENT_SIZE, b"\0")
    struct.pack_into("<q", h, OFF_UPTIME, image.uptime)
    struct.pack_into("<II", h, OFF_PRODUCT_TYPE, image.product_type, image.suite_mask)
    return h


def _extra_section(extra: dict | None) -> bytes:
    if extra is None:
        return b""
    body = zlib.compress(json.dumps(extra, sort_keys=True).encode(), 6)
    return EXTRA_MAGIC + struct.pack("<Q", len(body)) + body


def encode_dump(image: DumpImage) -> bytes:
    """The dump file's bytes."""
    pfns = sorted(image.pages)
    extra = _extra_section(image.extra)
    if image.dump_type == DUMP_FULL:
        runs = page_runs(pfns)
        if len(runs) > MAX_RUNS:
            raise ValueError(f"{len(runs)} physical memory runs; a full dump holds "
                             f"{MAX_RUNS}")
        body = b"".join(image.pages[p] for p in pfns)
        standard = HEADER_SIZE + len(body)
        head = b""
    else:
        bits = ((pfns[-1] + 1 if pfns else 0) + 31) // 32 * 32  # whole u32s of bits
        bitmap = bytearray(bits // 8)
        for p in pfns:
            bitmap[p >> 3] |= 1 << (p & 7)
        first = -(-(HEADER_SIZE + BMP_BITMAP + len(bitmap)) // PAGE) * PAGE
        head = bytearray(first - HEADER_SIZE)
        head[0:8] = BITMAP_SIGNATURE + BITMAP_VALID
        struct.pack_into("<QQQ", head, BMP_FIRST_PAGE, first, len(pfns), bits)
        head[BMP_BITMAP:BMP_BITMAP + len(bitmap)] = bitmap
        body = b"".join(image.pages[p] for p in pfns)
        standard = first + len(body)
        runs = []
    total = standard + len(extra) + (16 if extra else 0)
    header = _header(image, runs, total)
    trailer = EXTRA_END + struct.pack("<Q", standard) if extra else b""
    return bytes(header) + bytes(head) + body + extra + trailer


# -- reading ----------------------------------------------------------------------------------

class _File:
    """Bounded reads of the file's bytes: a read past the end is a DumpFormatError."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def take(self, offset: int, size: int, what: str) -> bytes:
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise DumpFormatError(offset, f"{what} ({size} bytes) runs past the end of the "
                                          f"file ({len(self.data)} bytes)")
        return self.data[offset:offset + size]

    def u32(self, offset: int, what: str) -> int:
        return struct.unpack("<I", self.take(offset, 4, what))[0]

    def u64(self, offset: int, what: str) -> int:
        return struct.unpack("<Q", self.take(offset, 8, what))[0]


def decode_dump(data: bytes) -> DumpImage:
    """A dump file's bytes as a DumpImage; DumpFormatError for a file that is not one."""
    f = _File(data)
    if f.take(0, 4, "the signature") != SIGNATURE:
        raise DumpFormatError(0, "not a kernel dump: the signature is not PAGE")
    if f.take(4, 4, "the dump signature") != VALID_DUMP:
        raise DumpFormatError(4, "not a 64-bit kernel dump: ValidDump is not DU64")
    f.take(0, HEADER_SIZE, "the dump header")
    machine = f.u32(OFF_MACHINE, "MachineImageType")
    if machine != MACHINE_AMD64:
        raise DumpFormatError(OFF_MACHINE, f"machine type 0x{machine:x} is not AMD64 (0x8664)")
    processors = f.u32(OFF_PROCESSORS, "NumberProcessors")
    if not 1 <= processors <= 64:
        raise DumpFormatError(OFF_PROCESSORS, f"{processors} processors (1 to 64 expected)")
    dump_type = f.u32(OFF_DUMP_TYPE, "DumpType")
    if dump_type == DUMP_FULL:
        pages, runs = _full_pages(f)
        standard = HEADER_SIZE + PAGE * len(pages)
    elif dump_type == DUMP_BITMAP:
        pages, standard = _bitmap_pages(f)
        runs = page_runs(list(pages))
    else:
        raise DumpFormatError(OFF_DUMP_TYPE, f"dump type {dump_type} is not one kdsim reads "
                                             "(1: full, 5: bitmap)")
    context = unpack_context(f.take(OFF_CONTEXT, CONTEXT_SIZE, "the context record"))
    mxcsr = f.u32(OFF_CONTEXT + CTX_MXCSR, "MxCsr")
    if mxcsr != f.u32(OFF_CONTEXT + CTX_MXCSR2, "MxCsr2"):
        raise DumpFormatError(OFF_CONTEXT + CTX_MXCSR, "the context's MxCsr does not match "
                                                       "its FltSave.MxCsr")
    comment = f.take(OFF_COMMENT, COMMENT_SIZE, "Comment").split(b"\0", 1)[0]
    return DumpImage(
        dump_type=dump_type,
        directory_table_base=f.u64(OFF_DTB, "DirectoryTableBase"),
        ps_loaded_module_list=f.u64(OFF_MODULE_LIST, "PsLoadedModuleList"),
        ps_active_process_head=f.u64(OFF_PROCESS_HEAD, "PsActiveProcessHead"),
        processors=processors,
        build=f.u32(0x0C, "MinorVersion"),
        major_version=f.u32(0x08, "MajorVersion"),
        bugcheck_code=f.u32(OFF_BUGCHECK, "BugCheckCode"),
        bugcheck_parameters=struct.unpack("<4Q", f.take(OFF_PARAMS, 32, "the parameters")),
        context=context,
        pages=pages,
        pfn_database=f.u64(OFF_PFN_DB, "PfnDataBase"),
        kd_debugger_data_block=f.u64(OFF_KDDEBUGGER_DATA, "KdDebuggerDataBlock"),
        system_time=f.u64(OFF_SYSTEM_TIME, "SystemTime"),
        uptime=f.u64(OFF_UPTIME, "SystemUpTime"),
        product_type=f.u32(OFF_PRODUCT_TYPE, "ProductType"),
        suite_mask=f.u32(OFF_SUITE_MASK, "SuiteMask"),
        comment=comment.decode("ascii", "replace"),
        extra=_read_extra(f, standard),
        runs=runs,
    )


def _full_pages(f: _File) -> tuple[dict[int, bytes], list[tuple[int, int]]]:
    count = f.u32(OFF_RUN_COUNT, "NumberOfRuns")
    if count > MAX_RUNS:
        raise DumpFormatError(OFF_RUN_COUNT, f"{count} physical memory runs (at most "
                                             f"{MAX_RUNS} fit the header)")
    total = f.u64(OFF_PAGE_COUNT, "NumberOfPages")
    runs = []
    for i in range(count):
        base, pages = struct.unpack("<QQ", f.take(OFF_RUNS + 16 * i, 16, f"run {i}"))
        if base + pages > 1 << 40:
            raise DumpFormatError(OFF_RUNS + 16 * i, f"run {i} lies beyond physical memory")
        runs.append((base, pages))
    stored = sum(n for _, n in runs)
    if stored != total:
        raise DumpFormatError(OFF_PAGE_COUNT, f"NumberOfPages is {total} but the runs hold "
                                              f"{stored} pages")
    # The pages must be in the file before anything is allocated for them.
    f.take(HEADER_SIZE, PAGE * stored, f"the {stored} pages of the runs")
    pages: dict[int, bytes] = {}
    offset = HEADER_SIZE
    for i, (base, n) in enumerate(runs):
        for k in range(n):
            if base + k in pages:
                raise DumpFormatError(OFF_RUNS + 16 * i, f"run {i} repeats page 0x{base + k:x}")
            pages[base + k] = f.data[offset:offset + PAGE]
            offset += PAGE
    return pages, runs


def _bitmap_pages(f: _File) -> tuple[dict[int, bytes], int]:
    base = HEADER_SIZE
    signature = f.take(base, 4, "the bitmap header")
    if signature not in (b"SDMP", b"FDMP"):
        raise DumpFormatError(base, "the bitmap header's signature is not SDMP or FDMP")
    if f.take(base + 4, 4, "the bitmap header") != BITMAP_VALID:
        raise DumpFormatError(base + 4, "the bitmap header's ValidDump is not DUMP")
    first = f.u64(base + BMP_FIRST_PAGE, "FirstPage")
    present = f.u64(base + BMP_PRESENT, "TotalPresentPages")
    bits = f.u64(base + BMP_BITS, "the bitmap size")
    bitmap = f.take(base + BMP_BITMAP, (bits + 7) // 8, "the bitmap")
    if first < base + BMP_BITMAP + len(bitmap):
        raise DumpFormatError(base + BMP_FIRST_PAGE, "FirstPage lies inside the bitmap")
    f.take(first, PAGE * present, f"the {present} present pages")
    pages: dict[int, bytes] = {}
    offset = first
    for byte_index, byte in enumerate(bitmap):
        while byte:
            low = byte & -byte
            pfn = byte_index * 8 + low.bit_length() - 1
            byte ^= low
            if len(pages) == present:
                raise DumpFormatError(base + BMP_PRESENT, "the bitmap has more pages than "
                                                          "TotalPresentPages")
            pages[pfn] = f.data[offset:offset + PAGE]
            offset += PAGE
    if len(pages) != present:
        raise DumpFormatError(base + BMP_PRESENT, f"TotalPresentPages is {present} but the "
                                                  f"bitmap has {len(pages)}")
    return pages, offset


def _read_extra(f: _File, standard: int) -> dict | None:
    """kdsim's section, if the file ends with its trailer."""
    size = len(f.data)
    if size < standard + 32 or f.data[size - 16:size - 8] != EXTRA_END:
        if f.data[standard:standard + 8] == EXTRA_MAGIC:
            raise DumpFormatError(standard, "kdsim's section is cut short: the file ends "
                                            "before its trailer")
        return None
    at = struct.unpack("<Q", f.data[size - 8:])[0]
    if f.take(at, 8, "kdsim's section") != EXTRA_MAGIC:
        raise DumpFormatError(at, "kdsim's section does not start with KDSIMX01")
    length = f.u64(at + 8, "the length of kdsim's section")
    body = f.take(at + 16, length, "kdsim's section")
    try:
        raw = zlib.decompressobj().decompress(body, EXTRA_LIMIT)
        extra = json.loads(raw)
    except (zlib.error, ValueError) as exc:
        raise DumpFormatError(at + 16, f"kdsim's section cannot be read: {exc}") from None
    if not isinstance(extra, dict):
        raise DumpFormatError(at + 16, "kdsim's section is not an object")
    return extra
