"""A crash dump file as a debugger Target: memory through the page tables in its pages,
registers from its context records, symbols and types from kdsim's section.

The memory is read with the machine's own 4-level translation over the dump's physical
pages, so a dump answers every read exactly as the machine it was written from did.
A dump written by another tool (no kdsim section) still opens: memory, the header's
context for the processor that stopped, the shipped type layouts; without symbols.
"""

from __future__ import annotations

from pathlib import Path

from commands.crashdump import DumpFormatError, DumpImage, decode_dump
from commands.target import (
    DataSymbol,
    FunctionSymbol,
    SymbolFile,
    TargetNotLive,
    UnwindOp,
)
from kdsim import memory_reads
from machine.mm.paging import AddressSpace
from machine.mm.physical import PhysicalMemory
from machine.types.catalog import load_catalog

MAX_DUMP_SIZE = 1 << 32  # the largest file kdsim reads (its machines are far smaller)


class DumpOpenError(Exception):
    """A dump file that cannot be opened: the file and the problem."""


def open_dump(path: str) -> DumpTarget:
    """Read and check a dump file; DumpOpenError naming the file (and the offset)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_DUMP_SIZE:
            raise DumpOpenError(f"{path}: {size} bytes is larger than kdsim reads")
        data = p.read_bytes()
    except OSError as exc:
        raise DumpOpenError(f"{path}: {exc.strerror or exc}") from None
    try:
        image = decode_dump(data)
        return DumpTarget(image, path)
    except DumpFormatError as exc:
        raise DumpOpenError(f"{path}: {exc}") from None
    except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        # A kdsim section that decodes but does not hold what kdsim writes.
        raise DumpOpenError(f"{path}: kdsim's section is malformed ({exc!r})") from None


def _symbol_file(raw: dict) -> SymbolFile:
    try:
        return SymbolFile(
            str(raw["module"]), str(raw["image"]), str(raw["pdb"]),
            tuple(FunctionSymbol(str(n), int(rva), int(size),
                                 tuple(UnwindOp(int(o), str(op), a) for o, op, a in unwind))
                  for n, rva, size, unwind in raw["functions"]),
            tuple(DataSymbol(str(n), int(rva), int(size), str(t))
                  for n, rva, size, t in raw["data"]),
            bool(raw.get("private", False)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"a bad symbol file: {exc!r}") from None


NEEDED_REGISTERS = ("rip", "rsp", "rbp", "cr3", "efl", "cs")


def _registers(raw: object) -> dict[str, int]:
    if (not isinstance(raw, dict) or not all(isinstance(v, int) for v in raw.values())
            or not all(name in raw for name in NEEDED_REGISTERS)):
        raise ValueError("a bad register set")
    return {str(k): v for k, v in raw.items()}


class DumpTarget:
    def __init__(self, image: DumpImage, path: str = "") -> None:
        self.image = image
        self.path = path
        self.phys = PhysicalMemory()
        self.phys.frames = {pfn: bytearray(page) for pfn, page in image.pages.items()}
        extra = image.extra or {}
        processors = extra.get("processors")
        if isinstance(processors, list) and len(processors) == image.processors:
            self._registers = [_registers(r) for r in processors]
        else:  # another tool's dump: the header's context, for every processor
            self._registers = [dict(image.context) for _ in range(image.processors)]
        stop = extra.get("stop_processor", 0)
        self._stop = stop if isinstance(stop, int) and 0 <= stop < image.processors else 0
        msrs = extra.get("msrs")
        self._msrs = [{int(k): int(v) for k, v in m.items()} if isinstance(m, dict) else {}
                      for m in msrs] if isinstance(msrs, list) else []
        files = extra.get("symbol_files") or {}
        if not isinstance(files, dict):
            raise ValueError("bad symbol files")
        self._symbols = {str(k).lower(): _symbol_file(v) for k, v in files.items()}
        base = extra.get("kernel_base", 0)
        self._kernel_base = base if isinstance(base, int) else 0
        build = extra.get("types_build")
        if build and build != load_catalog().build:
            # kdsim ships one build's layouts: another build's dump would be misread.
            raise ValueError(f"its type layouts are of build {build}, kdsim has "
                             f"{load_catalog().build}")
        self.scenario = extra.get("scenario") if isinstance(extra.get("scenario"), dict) \
            else None
        self._spaces = memory_reads.Spaces(self.phys)
        self._selected: int | None = None
        self._implicit_dtb: int | None = None

    # -- machine ---------------------------------------------------------------------------
    @property
    def processor_count(self) -> int:
        return self.image.processors

    @property
    def is_live(self) -> bool:
        return False

    @property
    def stop_processor(self) -> int:
        return self._stop

    @property
    def stop_count(self) -> int:
        return 0  # a dump never runs

    def kernel_base(self) -> int:
        return self._kernel_base

    @property
    def types(self):
        return load_catalog()

    # -- memory ----------------------------------------------------------------------------
    def _space(self, dtb: int | None) -> AddressSpace:
        if dtb is None:
            dtb = self._implicit_dtb
        if dtb is None:
            current = self._stop if self._selected is None else self._selected
            dtb = self._registers[current].get("cr3", self.image.directory_table_base)
        return self._spaces.at(dtb)

    def read_virtual(self, address: int, size: int, dtb: int | None = None) -> bytes:
        return memory_reads.read_virtual(self._space(dtb), address, size)

    def read_physical(self, address: int, size: int) -> bytes:
        return memory_reads.read_physical(self.phys, address, size)

    def physical_pages(self) -> list[int]:
        return sorted(self.phys.frames)

    # -- registers, symbols ------------------------------------------------------------------
    def registers(self, processor: int) -> dict[str, int]:
        return dict(self._registers[processor])

    def symbol_file(self, image: str) -> SymbolFile | None:
        return self._symbols.get(image.lower())

    def read_msr(self, processor: int, msr: int) -> int:
        if processor >= len(self._msrs):
            raise KeyError(msr)
        return self._msrs[processor][msr]

    def msrs(self, processor: int) -> dict[int, int]:
        return dict(self._msrs[processor]) if processor < len(self._msrs) else {}

    def description(self) -> dict | None:
        return self.scenario

    # -- a dump cannot be changed -------------------------------------------------------------
    def write_virtual(self, address: int, data: bytes, dtb: int | None = None) -> None:
        raise TargetNotLive("a dump's memory cannot be changed")

    def write_register(self, processor: int, name: str, value: int) -> None:
        raise TargetNotLive("a dump's registers cannot be changed")

    # -- the debugger's view ----------------------------------------------------------------
    def select_processor(self, processor: int) -> None:
        self._selected = processor
        self._implicit_dtb = None

    def set_implicit_dtb(self, dtb: int | None, at_next_stop: bool = False) -> None:
        if not at_next_stop:
            self._implicit_dtb = dtb
