"""The debugger's symbol engine: the loaded-module list as read from memory
(nt!PsLoadedModuleList), each module's symbol file, and address <-> name lookups."""

from __future__ import annotations

from dataclasses import dataclass

from commands.reader import Reader
from commands.target import FunctionSymbol, MemoryAccessError, SymbolFile, Target

NT_IMAGES = ("ntoskrnl.exe", "ntkrnlmp.exe", "ntkrnlpa.exe", "ntkrpamp.exe")
MI_UNLOADED_DRIVERS = 50  # entries nt keeps in MmUnloadedDrivers


@dataclass(frozen=True)
class Module:
    name: str  # as kd names it: "nt", "hal", "myfault"
    image: str  # BaseDllName
    path: str  # FullDllName
    base: int
    size: int
    timestamp: int
    checksum: int
    symbols: SymbolFile | None

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass(frozen=True)
class UnloadedModule:
    """An entry of nt!MmUnloadedDrivers: a driver image that was unloaded."""

    image: str
    base: int
    end: int
    time: int  # interrupt time of the unload (100 ns units)


def module_name(image: str) -> str:
    if image.lower() in NT_IMAGES:
        return "nt"
    return image.rsplit(".", 1)[0]


class SymbolEngine:
    def __init__(self, target: Target) -> None:
        self.target = target
        self._modules: list[Module] | None = None
        self._unloaded: list[UnloadedModule] | None = None

    def nt_symbols(self) -> SymbolFile | None:
        for image in NT_IMAGES:
            sf = self.target.symbol_file(image)
            if sf is not None:
                return sf
        return None

    def modules(self) -> list[Module]:
        """The modules on PsLoadedModuleList, in load order."""
        if self._modules is not None:
            return self._modules
        mods: list[Module] = []
        nt = self.nt_symbols()
        base = self.target.kernel_base()
        if nt is not None:
            head_rva = nt.lookup("PsLoadedModuleList")
            r = Reader(self.target)
            try:
                for entry in r.list_entries(base + head_rva, limit=4096):
                    t = "_KLDR_DATA_TABLE_ENTRY"
                    image = r.unicode_string(r.field_addr(t, entry, "BaseDllName"))
                    mods.append(Module(
                        module_name(image), image,
                        r.unicode_string(r.field_addr(t, entry, "FullDllName")),
                        r.field(t, entry, "DllBase"), r.field(t, entry, "SizeOfImage"),
                        r.field(t, entry, "TimeDateStamp"), r.field(t, entry, "CheckSum"),
                        self.target.symbol_file(image)))
            except MemoryAccessError:
                pass
        self._modules = mods
        return mods

    def unloaded(self) -> list[UnloadedModule]:
        """nt's record of unloaded drivers (nt!MmUnloadedDrivers, the first
        nt!MmLastUnloadedDriver entries), oldest first; empty when there is none."""
        if self._unloaded is not None:
            return self._unloaded
        out: list[UnloadedModule] = []
        nt = self.nt_symbols()
        if nt is not None and nt.lookup("MmUnloadedDrivers") is not None:
            base = self.target.kernel_base()
            r = Reader(self.target)
            t = "_UNLOADED_DRIVERS"
            try:
                array = r.u64(base + nt.lookup("MmUnloadedDrivers"))
                count = r.int(base + nt.lookup("MmLastUnloadedDriver"), 4)
                size = self.target.types.sizeof(t)
                for i in range(min(count, MI_UNLOADED_DRIVERS) if array else 0):
                    entry = array + i * size
                    out.append(UnloadedModule(
                        r.unicode_string(r.field_addr(t, entry, "Name")),
                        r.field(t, entry, "StartAddress"), r.field(t, entry, "EndAddress"),
                        r.u64(r.field_addr(t, entry, "CurrentTime"))))
            except MemoryAccessError:
                pass
        self._unloaded = out
        return out

    def unloaded_at(self, address: int) -> UnloadedModule | None:
        """The most recent unloaded image whose range held address."""
        return next((u for u in reversed(self.unloaded()) if u.base <= address < u.end),
                    None)

    def module_at(self, address: int) -> Module | None:
        for m in self.modules():
            if m.base <= address < m.end:
                return m
        return None

    def module_named(self, name: str) -> Module | None:
        low = name.lower()
        for m in self.modules():
            if m.name.lower() == low or m.image.lower() == low:
                return m
        return None

    def name_for(self, address: int) -> str | None:
        """kd's symbolic form of an address: `nt!KeBugCheckEx+0x10`, `nt!KeBugCheckEx`,
        `myfault+0x12d0` (no symbols), `<Unloaded_foo.sys>+0x1090` in an unloaded driver,
        or None outside every module."""
        parts = self.split_name(address)
        if parts is None:
            gone = self.unloaded_at(address)
            # kd's name for an address in a driver that has been unloaded
            return f"<Unloaded_{gone.image}>+0x{address - gone.base:x}" if gone else None
        module, symbol, off = parts
        name = f"{module}!{symbol}" if symbol else module
        return f"{name}+0x{off:x}" if off else name

    def split_name(self, address: int) -> tuple[str, str | None, int] | None:
        """(module, symbol or None, displacement)."""
        m = self.module_at(address)
        if m is None:
            return None
        if m.symbols is not None:
            near = m.symbols.nearest(address - m.base)
            if near is not None:
                return m.name, near[0], near[1]
        return m.name, None, address - m.base

    def address_of(self, name: str) -> int | None:
        """`nt!KeBugCheckEx`, `myfault` (module base), or a bare symbol searched in
        every module, nt first (case-insensitive, as kd)."""
        if "!" in name:
            mod, sym = name.split("!", 1)
            m = self.module_named(mod) if mod else None
            candidates = [m] if m is not None else ([] if mod else self.modules())
            for c in candidates:
                if c.symbols is not None and sym:
                    rva = c.symbols.lookup(sym)
                    if rva is not None:
                        return c.base + rva
            return None
        m = self.module_named(name)
        if m is not None:
            return m.base
        for c in self.modules():
            if c.symbols is not None:
                rva = c.symbols.lookup(name)
                if rva is not None:
                    return c.base + rva
        return None

    def function_at(self, address: int) -> tuple[Module, FunctionSymbol] | None:
        m = self.module_at(address)
        if m is None or m.symbols is None:
            return None
        f = m.symbols.function_at(address - m.base)
        return (m, f) if f is not None else None
