"""The live simulated machine as a debugger Target: memory through its page tables,
registers from its processors, symbols from its loader, types from its catalog."""

from __future__ import annotations

from commands.target import (
    STOP_BREAK,
    STOP_BREAKPOINT,
    STOP_BUDGET,
    STOP_BUGCHECK,
    STOP_DATA,
    STOP_STEP,
    ArmedBreakpoints,
    DataSymbol,
    DataWatch,
    FunctionSymbol,
    MemoryAccessError,
    StopEvent,
    SymbolFile,
    UnwindOp,
)
from kdsim import memory_reads
from machine.kd.databp import DataBreakpointHit
from machine.machine import Machine, RunResult
from machine.mm.paging import AddressSpace, PageFault
from machine.mm.physical import PhysicalAccessError

GPRS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


class LiveTarget:
    def __init__(self, machine: Machine) -> None:
        self.m = machine
        self._symbols: dict[str, SymbolFile] = {}
        self._spaces = memory_reads.Spaces(machine.phys)
        self._stopped_on: int | None = None  # set by run control; None: the bug check's
        self._selected: int | None = None  # kd's `~Ns`, until the next stop
        self._stops = 0  # every stop of a run (the debugger's implicit contexts expire)
        self._implicit_dtb: int | None = None  # kd's `.process`, until the next stop
        self._dtb_at_next_stop: int | None = None  # kd's `.process /i`

    @property
    def processor_count(self) -> int:
        return len(self.m.processors)

    @property
    def is_live(self) -> bool:
        return True

    @property
    def stop_processor(self) -> int:
        """The processor the target last stopped on: the one that bug-checked, or the
        one a run-control request (breakpoint, step, break-in) stopped on."""
        if self._stopped_on is not None:
            return self._stopped_on
        halt = self.m.bugcheck
        return halt.processor if halt is not None else 0

    @property
    def types(self):
        return self.m.catalog

    def kernel_base(self) -> int:
        return self.m.modules[0].base

    def _space(self, dtb: int | None) -> AddressSpace:
        if dtb is None:
            dtb = self._implicit_dtb
        if dtb is None:
            current = self.stop_processor if self._selected is None else self._selected
            return self.m.processors[current].cpu.mem
        return self._spaces.at(dtb)

    def read_virtual(self, address: int, size: int, dtb: int | None = None) -> bytes:
        return memory_reads.read_virtual(self._space(dtb), address, size)

    def read_physical(self, address: int, size: int) -> bytes:
        return memory_reads.read_physical(self.m.phys, address, size)

    # -- time (kernel-state commands) ----------------------------------------------------
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

    # -- memory edits and model-specific registers (e*, rdmsr) --------------------------

    def write_virtual(self, address: int, data: bytes, dtb: int | None = None) -> None:
        space = self._space(dtb)
        # Translate every page first so a bad address leaves memory untouched; write
        # physical frames directly, as a debugger does, so read-only code pages can be
        # patched (the physical write drops the processors' decode caches of the page).
        spans: list[tuple[int, int, int]] = []
        pos = 0
        while pos < len(data):
            va = (address + pos) & 0xFFFFFFFFFFFFFFFF
            n = min(len(data) - pos, 0x1000 - (va & 0xFFF))
            try:
                spans.append((space.translate(va), pos, n))
            except PageFault as exc:
                raise MemoryAccessError(exc.va) from None
            pos += n
        try:
            for pa, p, n in spans:
                self.m.debugger_write(pa, data[p:p + n])
        except PhysicalAccessError as exc:
            raise MemoryAccessError(address) from exc

    def read_msr(self, processor: int, msr: int) -> int:
        return self.m.processors[processor].msrs[msr]

    # -- what a dump of the target holds (.dump) ----------------------------------------

    def physical_pages(self) -> list[int]:
        """The frame numbers of the machine's physical memory (its RAM is the frames it
        has handed out), ascending."""
        return sorted(self.m.phys.frames)

    def msrs(self, processor: int) -> dict[int, int]:
        return dict(self.m.processors[processor].msrs)

    def description(self) -> dict | None:
        """The scenario the machine runs, for a dump's kdsim section."""
        scen = getattr(self.m, "scenario", None)
        if scen is None:
            return None
        return {"name": scen.name, "title": scen.title, "seed": self.m.config.seed}

    # -- register edits -----------------------------------------------------------------

    def write_register(self, processor: int, name: str, value: int) -> None:
        # The machine journals the edit, as it does memory edits, so a snapshot keeps it;
        # KeyError for a register it cannot set.
        self.m.debugger_set_register(processor, name.lower(), value)

    # -- run control -----------------------------------------------------------------

    def go(self, armed: ArmedBreakpoints, max_steps: int | None = None) -> StopEvent:
        return self._run(armed, lambda: self.m.run(max_steps))

    def step_into(self, processor: int, armed: ArmedBreakpoints,
                  max_steps: int | None = None) -> StopEvent:
        limit = 100_000 if max_steps is None else max_steps
        return self._run(armed, lambda: self.m.step_instruction(processor, limit))

    def step_over(self, processor: int, armed: ArmedBreakpoints,
                  max_steps: int | None = None) -> StopEvent:
        return self._run(armed, lambda: self.m.step_over(processor, max_steps))

    def step_out(self, processor: int, armed: ArmedBreakpoints,
                 max_steps: int | None = None) -> StopEvent:
        return self._run(armed, lambda: self.m.step_out(processor, max_steps))

    def break_in(self) -> None:
        self.m.request_break()

    def select_processor(self, processor: int) -> None:
        self._selected = processor
        self._implicit_dtb = None

    # -- implicit process (.process, .thread /p) -----------------------------------

    @property
    def stop_count(self) -> int:
        return self._stops

    def set_implicit_dtb(self, dtb: int | None, at_next_stop: bool = False) -> None:
        if at_next_stop:
            self._dtb_at_next_stop = dtb
        else:
            self._implicit_dtb = dtb

    def _run(self, armed: ArmedBreakpoints, run) -> StopEvent:
        m = self.m
        if m.bugcheck is not None:
            # Frozen at the bug check: nothing runs, nothing is armed.
            return self._stopped(StopEvent(STOP_BUGCHECK, m.bugcheck.processor))
        self._arm_data(armed.data)
        for address in sorted(armed.code):
            m.set_breakpoint(address)
        try:
            result = run()
        finally:
            # kd takes its int 3 bytes out while the target is stopped; data watches stay
            # in the debug registers until the next run re-arms them.
            for address in sorted(armed.code):
                m.clear_breakpoint(address)
        return self._stopped(self._event(result))

    def _stopped(self, event: StopEvent) -> StopEvent:
        self._stopped_on = event.processor
        self._selected = None
        self._stops += 1
        self._implicit_dtb, self._dtb_at_next_stop = self._dtb_at_next_stop, None
        return event

    def _event(self, result: RunResult) -> StopEvent:
        m = self.m
        if result.reason == "bugcheck":
            assert m.bugcheck is not None
            return StopEvent(STOP_BUGCHECK, m.bugcheck.processor, steps=result.steps)
        if result.reason == "breakpoint":
            hit = m.stop
            assert hit is not None
            if isinstance(hit, DataBreakpointHit):
                bp = hit.breakpoint
                watch = DataWatch(bp.address, bp.size, _ACCESS_LETTER[bp.kind])
                return StopEvent(STOP_DATA, hit.processor, bp.address, watch, result.steps)
            return StopEvent(STOP_BREAKPOINT, hit.processor, hit.address, steps=result.steps)
        if result.reason == "step":
            where = result.processor if result.processor is not None else self.stop_processor
            return StopEvent(STOP_STEP, where, steps=result.steps)
        if result.reason == "break":
            return StopEvent(STOP_BREAK, self.stop_processor, steps=result.steps)
        return StopEvent(STOP_BUDGET, self.stop_processor, steps=result.steps)

    def _arm_data(self, wanted: tuple[DataWatch, ...]) -> None:
        """The debug registers hold exactly `wanted`: slots no longer wanted are cleared,
        new watches take free slots (one already set stays, keeping its slot)."""
        m = self.m
        want = {(w.address, w.size, _ACCESS_KIND[w.access]) for w in wanted}
        for slot, bp in enumerate(m.data_breakpoints.slots):
            if bp is not None and (bp.address, bp.size, bp.kind) not in want:
                m.clear_data_breakpoint(slot)
        for w in wanted:
            m.set_data_breakpoint(w.address, w.size, w.access)


_ACCESS_LETTER = {"execute": "e", "write": "w", "readwrite": "r"}
_ACCESS_KIND = {"e": "execute", "w": "write", "r": "readwrite"}
