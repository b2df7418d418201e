"""The live simulated machine as a debugger Target: memory through its page tables,
registers from its processors, symbols from its loader, types from its catalog."""

from __future__ import annotations

from commands.target import DataSymbol, FunctionSymbol, MemoryAccessError, SymbolFile, UnwindOp
from machine.machine import Machine
from machine.mm.paging import AddressSpace, PageFault
from machine.mm.physical import PhysicalAccessError

GPRS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


class LiveTarget:
    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self._symbols: dict[str, SymbolFile] = {}
        self._spaces: dict[int, AddressSpace] = {}

    @property
    def processor_count(self) -> int:
        return len(self.m.processors)

    @property
    def is_live(self) -> bool:
        return True

    @property
    def stop_processor(self) -> int:
        """The processor the target stopped on: the one that bug-checked."""
        halt = self.m.bugcheck
        return halt.processor if halt is not None else 0

    @property
    def types(self):
        return self.m.catalog

    def kernel_base(self) -> int:
        return self.m.modules[0].base

    def _space(self, dtb: int | None) -> AddressSpace:
        if dtb is None:
            return self.m.processors[self.stop_processor].cpu.mem
        pfn = (dtb & 0x000FFFFFFFFFF000) >> 12
        space = self._spaces.get(pfn)
        if space is None:
            space = self._spaces[pfn] = AddressSpace(self.m.phys, pml4_pfn=pfn)
        return space

    def read_virtual(self, address: int, size: int, dtb: int | None = None) -> bytes:
        try:
            return self._space(dtb).read(address, size)
        except PageFault as exc:
            raise MemoryAccessError(exc.va) from None
        except PhysicalAccessError as exc:
            raise MemoryAccessError(address) from exc

    def read_physical(self, address: int, size: int) -> bytes:
        try:
            return self.m.phys.read(address, size)
        except PhysicalAccessError as exc:
            raise MemoryAccessError(exc.pa) from None

    def registers(self, processor: int) -> dict[str, int]:
        p = self.m.processors[processor]
        cpu = p.cpu
        regs = dict(zip(GPRS, cpu.regs, strict=True))
        regs.update(rip=cpu.rip, efl=cpu.rflags, cs=0x10, ss=0x18, ds=0x2B, es=0x2B,
                    fs=0x53, gs=0x2B, cr0=cpu.cr0, cr2=cpu.cr2, cr3=cpu.cr3, cr4=cpu.cr4,
                    cr8=p.irql)
        # debug registers, as the debugger's data breakpoints left them
        regs.update(dr0=cpu.dr[0], dr1=cpu.dr[1], dr2=cpu.dr[2], dr3=cpu.dr[3],
                    dr6=cpu.dr[6], dr7=cpu.dr[7])
        return regs

    def symbol_file(self, image: str) -> SymbolFile | None:
        key = image.lower()
        if key in self._symbols:
            return self._symbols[key]
        for img in self.m.modules:
            if img.image.lower() == key:
                sf = SymbolFile(
                    img.name, img.image, img.pdb,
                    tuple(FunctionSymbol(f.name, f.rva, f.size,
                                         tuple(UnwindOp(o, op, arg) for o, op, arg in f.unwind))
                          for f in img.functions),
                    tuple(DataSymbol(d.name, d.rva, d.size, d.type) for d in img.data))
                self._symbols[key] = sf
                return sf
        return None
