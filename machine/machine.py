"""The simulated computer: processors, memory, the kernel's state, and the run loop.

Every step, each processor in turn (in a fixed order, so runs are deterministic):
takes the highest pending interrupt above its IRQL, else resumes the native routine its
thread is suspended in, else enters a native routine whose entry rip has reached, else
executes one x64 instruction from memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from machine.cpu import Cpu, CpuException, DebugException, DecodeCache
from machine.cpu.debugregs import RF
from machine.ex.pool import Pool
from machine.ex.verifier import DriverVerifier
from machine.kd.breakpoints import BreakpointHit, Breakpoints
from machine.kd.databp import (
    DataBreakpoint,
    DataBreakpointError,
    DataBreakpointHit,
    DataBreakpoints,
    clear_status,
    validate,
)
from machine.kd.stepping import in_native, return_target, step_over_target
from machine.ke import native as nat
from machine.ke.processor import Processor
from machine.ke.scheduler import Scheduler
from machine.ke.threads import READY, RUNNING, ProcessRec, ThreadRec
from machine.ke.trapframe import (
    KERNEL_CS,
    KERNEL_SS,
    MACHINE_FRAME,
    RCX,
    RDX,
    USER_CS,
    USER_SS,
    save_software,
)
from machine.mm.layout import KernelLayout, RegionAllocator
from machine.mm.paging import AddressSpace, PageFault
from machine.mm.physical import PhysicalMemory
from machine.types.catalog import load_catalog
from machine.types.view import Struct

R8, R9, RAX = 8, 9, 0

# One clock tick is 15.625 ms (KeMaximumIncrement = 156250 x 100 ns); the simulated
# clock runs one processor step per microsecond.
TICK_100NS = 156250
STEP_100NS = 10
STEPS_PER_TICK = TICK_100NS // STEP_100NS
# The simulated wall clock starts at 2023-05-05 04:26:25 UTC (in 100 ns since 1601),
# less the uptime the machine boots with.
BOOT_SYSTEM_TIME = 0x01D97F0F6A5E8000


DOUBLE_FAULT = 8
# The general registers in Cpu.regs order, by the names a debugger edits them with.
DEBUGGER_GPRS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                 "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


class BugCheckHalt(Exception):
    """Raised by KeBugCheckEx: the machine stops with every processor frozen."""

    def __init__(self, code: int, params: tuple[int, int, int, int], processor: int) -> None:
        super().__init__(f"bugcheck {code:#x}")
        self.code = code
        self.params = params
        self.processor = processor


class MachineError(Exception):
    """A state the simulator cannot continue from (a bug in a scenario or in kdsim)."""


@dataclass
class MachineConfig:
    cpus: int = 2
    seed: int = 1


@dataclass
class RunResult:
    reason: str  # "bugcheck" | "budget" | "quiet" | "breakpoint" | "break" | "step"
    steps: int
    processor: int | None = None  # "step": the processor the stepped thread ended on


@dataclass
class Machine:
    config: MachineConfig
    phys: PhysicalMemory = field(init=False)
    layout: KernelLayout = field(init=False)
    kspace: AddressSpace = field(init=False)

    def __post_init__(self) -> None:
        self.phys = PhysicalMemory()
        self.layout = KernelLayout.for_seed(self.config.seed)
        self.kspace = AddressSpace(self.phys)
        self.catalog = load_catalog()
        self.cache = DecodeCache(self.phys)
        self.pool = Pool(self.kspace, self.layout.nonpaged_pool, self.layout.paged_pool,
                         self.layout.special_pool)
        self.processors: list[Processor] = []
        self.natives: dict[int, nat.NativeSpec] = {}
        self.native_base: dict[str, int] = {}
        self.symbols: dict[str, int] = {}  # "nt!Name" -> address (the machine's own linker map)
        self.modules: list = []
        self.processes: list[ProcessRec] = []
        self.threads: list[ThreadRec] = []
        self.sched = Scheduler(self)
        self.steps = 0
        self.tick_count = 0
        self.bugcheck: BugCheckHalt | None = None
        self.timeline: list = []  # (tick, callable) events, kept sorted
        self.step_budget = 50_000_000
        self.thread_index: dict[int, ThreadRec] = {}
        self.pending_driver_loads: list = []
        self.session_space = 0
        self.device_maps: dict[int, int] = {}
        self.dpc_triage_block = 0
        self.ob_header_cookie = 0
        self.object_types: dict[str, int] = {}  # type name -> _OBJECT_TYPE
        self.directories: dict[str, int] = {}  # namespace path -> _OBJECT_DIRECTORY
        self.verified: set[str] = set()  # modules under Driver Verifier (special pool)
        self.verifier = DriverVerifier()  # its state in memory (machine/ex/verifier.py)
        self.devices: list = []  # machine.hal.devices.Device
        self.work_queue = 0  # the system worker threads' _KQUEUE
        self.breakpoints = Breakpoints()
        self.data_breakpoints = DataBreakpoints()
        # The processor whose step is running (kernel code called from Python, such as
        # the pool, bug-checks on it); None between runs.
        self.stepping: Processor | None = None
        self.break_requested = False
        self.stop: BreakpointHit | None = None
        self.queued_stops: list[BreakpointHit] = []  # stops made in the same step as .stop
        self.journal: list[tuple] = []  # run control since boot (see snapshot())
        self.boot_factory = None  # rebuilds this machine as booted, for snapshots
        self.stacks = None  # RegionAllocator for kernel stacks, set at boot
        self.system_ptes = RegionAllocator(self.layout.system_ptes)  # run-time mappings

    def device_map(self, session: int | None) -> int:
        """The DOS-devices map a process of this session uses (one per session)."""
        key = -1 if session is None else session
        if key not in self.device_maps:
            self.device_maps[key] = self.pool.allocate(1, 0x40, "Dmap")
        return self.device_maps[key]

    def processor_of(self, thread: ThreadRec) -> Processor:
        """The processor a running thread is on."""
        return next(p for p in self.processors if p.current is thread)

    def thread_at(self, ethread: int) -> ThreadRec:
        return self.thread_index[ethread]

    def system_time(self) -> int:
        """KeQuerySystemTime: 100 ns units since 1601, from the deterministic clock."""
        return BOOT_SYSTEM_TIME + self.tick_count * TICK_100NS + \
            (self.steps % STEPS_PER_TICK) * STEP_100NS

    def enter_trap_native(self, proc: Processor, name: str, tf: int) -> None:
        self._enter_native(proc, nat.REGISTRY[name], tf=tf)

    # -- symbols -------------------------------------------------------------------

    def module_of(self, address: int):
        return next((img for img in self.modules
                     if img.base <= address < img.base + img.size), None)

    def sym(self, name: str) -> int:
        """Address of a kernel symbol, `nt!KeBugCheckEx` or `KeBugCheckEx` (nt)."""
        key = name if "!" in name else f"nt!{name}"
        try:
            return self.symbols[key]
        except KeyError:
            raise MachineError(f"unknown symbol {key}") from None

    def struct(self, type_name: str, address: int, space: AddressSpace | None = None) -> Struct:
        return Struct(space or self.kspace, type_name, address)

    # -- processors and IRQL -------------------------------------------------------

    def add_processor(self, number: int, pcr: int, prcb: int) -> Processor:
        cpu = Cpu(number, self.cache)
        cpu.mem = self.kspace
        proc = Processor(number, cpu, pcr, prcb)
        cpu.cr8_read = lambda p=proc: p.irql
        cpu.cr8_write = lambda v, p=proc: self.set_irql(p, v)
        self.processors.append(proc)
        return proc

    def set_irql(self, proc: Processor, irql: int) -> None:
        proc.irql = irql & 0xF
        self.kspace.write_int(proc.pcr + 0x50, 1, proc.irql)  # _KPCR.Irql


    def request_interrupt(self, proc: Processor, vector: int) -> None:
        proc.pending.add(vector)

    # -- running -------------------------------------------------------------------

    # -- the journal of run control, for snapshots ---------------------------------

    def snapshot(self):
        """The machine's state, restorable with .restore() (see machine.kd.snapshot)."""
        from machine.kd.snapshot import Snapshot

        if self.boot_factory is None:
            raise MachineError("this machine was not booted from a scenario")
        return Snapshot(self.boot_factory, tuple(self.journal), self.steps)

    def debugger_write(self, physical: int, data: bytes) -> None:
        """A debugger's edit of memory (kd's e* commands), journaled so a snapshot
        restored later has it too."""
        self.phys.write(physical, data)
        self.journal.append(("poke", physical, bytes(data)))

    def debugger_set_register(self, processor: int, name: str, value: int) -> None:
        """A debugger's edit of a register (kd's `r rax=5`): rax..r15, rip or efl of one
        processor, journaled like debugger_write.  KeyError for another name."""
        cpu = self.processors[processor].cpu
        value &= 0xFFFFFFFFFFFFFFFF
        if name == "rip":
            cpu.rip = value
        elif name == "efl":
            cpu.rflags = value
        elif name in DEBUGGER_GPRS:
            cpu.regs[DEBUGGER_GPRS.index(name)] = value
        else:
            raise KeyError(name)
        self.journal.append(("reg", processor, name, value))

    def set_breakpoint(self, address: int) -> None:
        self.journal.append(("bp+", address))
        self.breakpoints.insert(self.kspace, address)

    def clear_breakpoint(self, address: int) -> None:
        self.journal.append(("bp-", address))
        self.breakpoints.remove(self.kspace, address)

    def set_data_breakpoint(self, address: int, size: int, kind: str) -> DataBreakpoint:
        """kd's `ba`: watch [address, address+size) for execute ("e"), write ("w") or
        read/write ("r") on every processor.  Raises DataBreakpointError when the request
        is malformed (size, alignment, kind) or all four debug registers are in use."""
        address, size, kind = validate(address, size, kind)
        existing = self.data_breakpoints.find(address, size, kind)
        if existing is not None:
            return existing  # kd redefines the same breakpoint
        if all(s is not None for s in self.data_breakpoints.slots):
            raise DataBreakpointError("all 4 debug registers are in use")
        self.journal.append(("ba+", address, size, kind))
        bp = self.data_breakpoints.add(address, size, kind)
        self._load_debug_registers()
        return bp

    def clear_data_breakpoint(self, slot: int) -> None:
        if not 0 <= slot < len(self.data_breakpoints.slots) or \
                self.data_breakpoints.slots[slot] is None:
            raise DataBreakpointError(f"no data breakpoint in slot {slot}")
        self.journal.append(("ba-", slot))
        self.data_breakpoints.remove(slot)
        self._load_debug_registers()

    def _load_debug_registers(self) -> None:
        """Every processor's DR0-DR3/DR7 from the slots, mirrored where kd reads them, and
        the checks on kernel routines' accesses switched on or off to match."""
        watch = self.data_breakpoints
        addresses, dr7 = watch.registers()
        for proc in self.processors:
            proc.cpu.set_debug_registers(addresses, dr7)
            self._mirror_debug_registers(proc)
        watch.map_physical(self.kspace)
        watch.observe(self.phys)
        if watch.armed:
            # Shadows the method while a slot is set: no cost to stepping otherwise.
            self._step_processor = self._step_processor_watched  # type: ignore[method-assign]
        else:
            self.__dict__.pop("_step_processor", None)

    def _mirror_debug_registers(self, proc: Processor) -> None:
        """KPRCB.ProcessorState.SpecialRegisters.KernelDr*: a processor's debug registers
        as the debugger reads them."""
        dr = proc.cpu.dr
        special = self.struct("_KPRCB", proc.prcb).sub("ProcessorState.SpecialRegisters")
        for n in (0, 1, 2, 3, 6, 7):
            special.set(f"KernelDr{n}", dr[n])

    def _step_processor_watched(self, proc: Processor, stepping_off: bool = False) -> None:
        """_step_processor while data breakpoints are set: accesses the step made outside
        x64 instructions (kernel routines' writes) stop the machine once the step is over,
        with the routine's frame intact."""
        watch = self.data_breakpoints
        thread = proc.current
        assert thread is not None
        depth = len(thread.native)
        # The kernel routine this step runs, to name in a hit: one resumed, or entered at
        # rip (or, below, one the step entered and left suspended, e.g. a trap handler).
        if in_native(proc):
            routine: str | None = thread.native[-1].spec.name
        else:
            spec = self.natives.get(proc.cpu.rip)
            routine = spec.name if spec is not None else None
        watch.stepping = proc
        try:
            Machine._step_processor(self, proc, stepping_off)
        finally:
            watch.stepping = None
            hits = watch.take_native_hits(proc)
        if hits:
            if len(thread.native) > depth:
                routine = thread.native[-1].spec.name
            self._mirror_debug_registers(proc)
            raise watch.hit(proc, hits, proc.cpu.rip, routine)

    def _check_native_execute(self, proc: Processor, rip: int) -> None:
        """An execute data breakpoint on a kernel routine's entry faults before it runs,
        unless RF says the processor is resuming from exactly that stop."""
        cpu = proc.cpu
        if cpu.rflags & RF:
            cpu.rflags &= ~RF
            return
        bp = self.data_breakpoints.execute_slot(rip)
        if bp is not None:
            cpu.dr[6] |= 1 << bp.slot
            self._mirror_debug_registers(proc)
            raise DataBreakpointHit(proc.number, bp, rip, 1, "execute", rip)

    def run(self, max_steps: int | None = None, until_quiet: bool = False) -> RunResult:
        """Run until a bugcheck, the step budget, or (until_quiet) nothing is runnable."""
        self.journal.append(("run", max_steps, until_quiet))
        return self._run(max_steps, until_quiet)

    def step_over(self, processor: int, max_steps: int | None = None) -> RunResult:
        """kd's `p`: like step_instruction, but a call (or a rep string instruction) runs
        until the same thread is back at the next instruction with rsp as before, on
        whichever processor runs it then."""
        self.journal.append(("p", processor, max_steps))
        proc = self.processors[processor]
        target = step_over_target(self, proc)
        if target is None:
            return self._step_one(processor, 100_000 if max_steps is None else max_steps)
        rip, rsp = target
        return self._run(max_steps, done=self._thread_at(proc, rip, lambda sp: sp == rsp))

    def step_out(self, processor: int, max_steps: int | None = None) -> RunResult:
        """kd's `gu`: run until the current function returns, i.e. its thread reaches the
        return address (from the unwind data at rip) with rsp above the current frame."""
        self.journal.append(("gu", processor, max_steps))
        proc = self.processors[processor]
        ret = return_target(self, proc)
        rsp = proc.cpu.regs[4]
        return self._run(max_steps, done=self._thread_at(proc, ret, lambda sp: sp > rsp))

    def _thread_at(self, proc: Processor, rip: int, rsp_ok):
        """A test, after a global step, that proc's current thread is at rip with an rsp
        rsp_ok accepts; it returns the processor running the thread then, or None."""
        thread = proc.current
        processors = self.processors

        def reached() -> int | None:
            for p in processors:
                if p.current is thread:
                    cpu = p.cpu
                    if cpu.rip == rip and rsp_ok(cpu.regs[4]) and not thread.user_mode:
                        return p.number
                    return None
            return None

        return reached

    def _run(self, max_steps: int | None, until_quiet: bool = False, done=None) -> RunResult:
        budget = self.step_budget if max_steps is None else max_steps
        start = self.steps
        if self.bugcheck is not None:
            return RunResult("bugcheck", 0)
        pending = self._resume()
        if pending is not None:
            return pending
        try:
            self._step_off_breakpoints()
            where = done() if done is not None else None
            while where is None and self.steps - start < budget:
                if self.break_requested:  # checked inline: this is the run's hot loop
                    return self._take_break(self.steps - start)
                if self._all_idle():
                    if until_quiet and not any(t <= self.tick_count for t, _ in self.timeline):
                        return RunResult("quiet", self.steps - start)
                    # Nothing can happen before the next clock interrupt: idle loops only
                    # spin, so time skips to it (deterministically).
                    self.steps += STEPS_PER_TICK - 1 - self.steps % STEPS_PER_TICK
                self._global_step_all()
                if done is not None:
                    where = done()
        except BugCheckHalt as halt:
            self.bugcheck = halt
            return RunResult("bugcheck", self.steps - start)
        except BreakpointHit as hit:
            self.stop = hit
            return RunResult("breakpoint", self.steps - start)
        finally:
            self.stepping = None
        if where is not None:
            return RunResult("step", self.steps - start, where)
        return RunResult("budget", self.steps - start)

    def _resume(self) -> RunResult | None:
        """Before the machine moves on: the stopped processor is let go (DR6 cleared, RF
        set over an instruction breakpoint it stopped on), then a stop another processor
        made in the same step is reported, if it still stands."""
        stop, self.stop = self.stop, None
        if stop is not None:
            proc = self.processors[stop.processor]
            if isinstance(stop, DataBreakpointHit):
                clear_status(proc.cpu)
                self._mirror_debug_registers(proc)
                if stop.access == "execute" and proc.cpu.rip == stop.address:
                    proc.cpu.rflags |= RF
        while self.queued_stops:
            hit = self.queued_stops.pop(0)
            if self._still_stopped(hit):
                self.stop = hit
                return RunResult("breakpoint", 0)
        return None

    def _still_stopped(self, hit: BreakpointHit) -> bool:
        rip = self.processors[hit.processor].cpu.rip
        if isinstance(hit, DataBreakpointHit):
            if self.data_breakpoints.slots[hit.slot] is not hit.breakpoint:
                return False
            return hit.access != "execute" or rip == hit.address
        return hit.address in self.breakpoints and rip == hit.address

    def _global_step_all(self) -> None:
        """One global step that every processor completes even when one of them stops:
        the processors after it take their turn, then the stop is raised (stops they make
        in the same step are queued, to be reported one by one as kd does)."""
        try:
            self._global_step()
        except BreakpointHit as hit:
            for proc in self.processors[hit.processor + 1:]:
                if proc.frozen:
                    continue
                try:
                    self._step_processor(proc)
                except BreakpointHit as later:
                    self.queued_stops.append(later)
            raise hit from None

    def _step_off_breakpoints(self) -> None:
        """A processor stopped on a breakpoint executes the original instruction once
        (the int 3 lifted for that step) before the breakpoint goes back in."""
        for proc in self.processors:
            address = proc.cpu.rip
            if address in self.breakpoints and not proc.frozen:
                self.breakpoints.remove(self.kspace, address)
                try:
                    self._step_processor(proc, stepping_off=True)
                finally:
                    self.breakpoints.insert(self.kspace, address)

    def step_instruction(self, processor: int, limit: int = 100_000) -> RunResult:
        """Run until the processor has executed one more x64 instruction (kd's `t`);
        the other processors keep pace, step for step."""
        self.journal.append(("step", processor, limit))
        return self._step_one(processor, limit)

    def _step_one(self, processor: int, limit: int) -> RunResult:
        if self.bugcheck is not None:
            return RunResult("bugcheck", 0)
        pending = self._resume()
        if pending is not None:
            return pending
        cpu = self.processors[processor].cpu
        target = cpu.instructions_retired + 1
        steps = 0
        try:
            self._step_off_breakpoints()
            while cpu.instructions_retired < target and steps < limit:
                if self.break_requested:  # Ctrl+C stops a step that goes on, as a run
                    return self._take_break(steps)
                self._global_step_all()
                steps += 1
        except BugCheckHalt as halt:
            self.bugcheck = halt
            return RunResult("bugcheck", steps)
        except BreakpointHit as hit:
            self.stop = hit
            return RunResult("breakpoint", steps)
        finally:
            self.stepping = None
        return RunResult("step", steps, processor)

    def _take_break(self, steps: int) -> RunResult:
        """The run stops for the break-in requested (the request is consumed)."""
        self.break_requested = False
        return RunResult("break", steps)

    def request_break(self) -> None:
        """Break-in (Ctrl+C in kd): the run stops before its next step."""
        self.journal.append(("break",))
        self.break_requested = True

    def _all_idle(self) -> bool:
        return not self.sched.any_ready() and all(
            p.current is p.idle and not p.pending and not p.quantum_end
            and len(p.current.native) == 1 and p.current.native[0].spec.name == "KiIdleLoop"
            and p.cpu.rip == p.current.native[0].resume_rip
            for p in self.processors)

    def _global_step(self) -> None:
        self.steps += 1
        if self.steps % STEPS_PER_TICK == 0:
            for p in self.processors:
                if 0xD1 in p.pending:
                    p.clock_missed += 1  # it has not taken the last one yet
                self.request_interrupt(p, 0xD1)
        for proc in self.processors:
            if not proc.frozen:
                self._step_processor(proc)

    def _step_processor(self, proc: Processor, stepping_off: bool = False) -> None:
        self.stepping = proc
        cpu = proc.cpu
        thread = proc.current
        assert thread is not None
        if proc.pending and not stepping_off:
            vector = proc.pending_above_irql()
            if vector is not None:
                proc.pending.discard(vector)
                self._deliver_interrupt(proc, vector)
                return
        if thread.user_mode:
            from machine.ps.usermode import user_step

            user_step(self, proc, thread)
            return
        rip = cpu.rip
        if thread.native:
            top = thread.native[-1]
            if rip == top.resume_rip and cpu.regs[4] == top.resume_rsp:
                self._advance(proc, top, cpu.regs[RAX])
                return
        spec = self.natives.get(rip)
        if spec is not None:
            if rip in self.breakpoints and not stepping_off:
                # kernel routines run as Python: their int 3 is noticed at entry
                raise BreakpointHit(proc.number, rip)
            if self.data_breakpoints.armed:
                self._check_native_execute(proc, rip)  # and DR0-DR3 execute slots too
            self._enter_native(proc, spec)
            return
        try:
            cpu.step()
        except CpuException as exc:
            self._deliver_exception(proc, exc)

    # -- native routines ----------------------------------------------------------

    def _enter_native(self, proc: Processor, spec: nat.NativeSpec, tf: int = 0,
                      extra: dict | None = None) -> None:
        cpu = proc.cpu
        regs = cpu.regs
        rsp_entry = regs[4]
        space = cpu.mem
        args = nat.Args((regs[RCX], regs[RDX], regs[R8], regs[R9]),
                        lambda i, base=rsp_entry: space.read_u64(base + 8 + 8 * i),
                        0 if spec.trap else space.read_u64(rsp_entry))
        frame = nat.NativeFrame(spec, None, rsp_entry, extra=dict(extra or {}))
        if spec.trap and not tf:
            # Entered through an IDT gate: the CPU pushed the machine frame; the handler
            # saves the rest of the trap frame below it.
            tf = rsp_entry - (MACHINE_FRAME if spec.error_code else MACHINE_FRAME + 8)
            cs = space.read_u64(tf + MACHINE_FRAME + 0x10)
            save_software(space, tf, regs, proc.irql, cs & 1)
            regs[4] = tf
        if tf:
            frame.extra["tf"] = tf
            frame.extra["entry"] = cpu.rip
            regs[4] = tf - spec.below_trap_frame
        else:
            regs[4] = rsp_entry - spec.frame
        gen = spec.impl(self, proc, args) if not spec.trap else spec.impl(self, proc, frame)
        assert proc.current is not None
        if not hasattr(gen, "send"):
            self._return_native(proc, frame, gen or 0)
            return
        frame.gen = gen
        proc.current.native.append(frame)
        self._advance(proc, frame, None)

    def _advance(self, proc: Processor, frame: nat.NativeFrame, value: int | None) -> None:
        cpu = proc.cpu
        base = self.native_base[frame.spec.name]
        assert frame.gen is not None
        try:
            req = frame.gen.send(value)
        except StopIteration as stop:
            thread = proc.current
            assert thread is not None and thread.native and thread.native[-1] is frame
            thread.native.pop()
            self._return_native(proc, frame, stop.value or 0)
            return
        if isinstance(req, nat.Call):
            regs = cpu.regs
            for i, reg in enumerate((RCX, RDX, R8, R9)):
                if i < len(req.args):
                    regs[reg] = req.args[i] & 0xFFFFFFFFFFFFFFFF
            for i in range(4, len(req.args)):
                cpu.mem.write_u64(regs[4] + 8 * i, req.args[i])
            frame.resume_rsp = regs[4]
            frame.resume_rip = base + req.ret
            cpu.push(frame.resume_rip)
            cpu.rip = req.target
        elif isinstance(req, nat.Pause):
            frame.resume_rip = base + req.at
            frame.resume_rsp = cpu.regs[4]
            cpu.rip = frame.resume_rip
        elif isinstance(req, nat.Block):
            frame.resume_rip = base + req.at
            frame.resume_rsp = cpu.regs[4]
            cpu.rip = frame.resume_rip
            self._switch(proc, req.next_thread)
        elif isinstance(req, nat.TrapReturn):
            thread = proc.current
            assert thread is not None
            thread.native.pop()
            self._trap_return(proc, req.trap_frame)
        else:
            raise MachineError(f"{frame.spec.name} yielded {req!r}")

    def _return_native(self, proc: Processor, frame: nat.NativeFrame, value: int) -> None:
        cpu = proc.cpu
        cpu.regs[RAX] = value & 0xFFFFFFFFFFFFFFFF
        cpu.regs[4] = frame.rsp_entry
        cpu.rip = cpu.pop()

    # -- context switching ---------------------------------------------------------

    def _switch(self, proc: Processor, new: ThreadRec) -> None:
        """Save the current thread's registers, load `new`'s (KiSwapContext's core)."""
        cpu = proc.cpu
        old = proc.current
        assert old is not None
        old.saved_regs = list(cpu.regs)
        old.saved_rip = cpu.rip
        old.saved_rflags = cpu.rflags
        ko = self.struct("_KTHREAD", old.ethread)
        # The switch frame: KernelStack points 0x40 below the resumed rsp, with the
        # resume address in its last slot, where a debugger expects it on x64.
        kernel_stack = cpu.regs[4] - 0x40
        self.kspace.write_u64(kernel_stack + 0x38, cpu.rip)
        ko.set("KernelStack", kernel_stack)
        ko.set("Running", 0)
        if old.idle:
            # The idle thread is never queued; off the processor it is merely Ready.
            ko.set("State", READY)
        cpu.regs[:] = new.saved_regs
        cpu.rip = new.saved_rip
        cpu.rflags = new.saved_rflags
        cpu.mem = new.process.space
        cpu.cr3 = new.process.space.cr3
        proc.current = new
        kn = self.struct("_KTHREAD", new.ethread)
        kn.set("State", RUNNING)
        kn.set("Running", 1)
        kn.set("NextProcessor", proc.number)
        kn.set("ContextSwitches", kn.get("ContextSwitches") + 1)
        kn.set("WaitTime", self.tick_count)
        prcb = self.struct("_KPRCB", proc.prcb)
        prcb.set("CurrentThread", new.ethread)
        if kn.get("ApcState.KernelApcPending"):
            self.request_interrupt(proc, 0x1F)  # deliver its kernel APCs once it can

    def make_ready(self, thread: ThreadRec) -> None:
        self.sched.make_ready(thread)

    def next_ready(self, proc: Processor, minimum: int = 0) -> ThreadRec | None:
        return self.sched.next_ready(proc, minimum)

    # -- interrupts and exceptions ---------------------------------------------------

    def raise_vector(self, proc: Processor, vector: int, error_code: int | None = None) -> None:
        """What the CPU does on an interrupt or exception: push the machine frame (on the
        thread's kernel stack when it comes from user mode) and continue at the handler
        the IDT gate for the vector names."""
        from machine.ke.idt import read_gate

        cpu = proc.cpu
        thread = proc.current
        assert thread is not None
        handler = read_gate(self.kspace, proc.idt, vector)
        if handler is None:
            from machine.ke.bugcheck import crash

            crash(self, proc, 0x7F, (8, 0, 0, 0))  # no gate: the CPU double-faults
        if thread.user_mode:
            top = thread.initial_stack
            rip, rsp, cs, ss = thread.saved_user_rip, thread.saved_user_rsp, USER_CS, USER_SS
            thread.user_mode = False
        else:
            top = cpu.regs[4] & ~0xF
            rip, rsp, cs, ss = cpu.rip, cpu.regs[4], KERNEL_CS, KERNEL_SS
        frame = [rip, cs, cpu.rflags, rsp, ss]
        if error_code is not None:
            frame.insert(0, error_code)
        sp = top - 8 * len(frame)
        try:
            cpu.mem.write(sp, b"".join(v.to_bytes(8, "little") for v in frame))
        except PageFault:
            if vector == DOUBLE_FAULT:
                from machine.ke.bugcheck import crash

                crash(self, proc, 0x7F, (DOUBLE_FAULT, 0, 0, 0))  # a triple fault
            # The frame cannot be pushed (the stack ran into its guard page): the CPU
            # raises a double fault, which switches to its own IST stack.
            top = proc.double_fault_stack
            handler = read_gate(self.kspace, proc.idt, DOUBLE_FAULT)
            frame = [0, rip, cs, cpu.rflags, rsp, ss]
            sp = top - 8 * len(frame)
            cpu.mem.write(sp, b"".join(v.to_bytes(8, "little") for v in frame))
        cpu.regs[4] = sp
        cpu.rip = handler
        spec = self.natives.get(handler)
        if spec is not None:
            self._enter_native(proc, spec)

    def _deliver_interrupt(self, proc: Processor, vector: int) -> None:
        self.raise_vector(proc, vector)

    def _deliver_exception(self, proc: Processor, exc: CpuException) -> None:
        from machine.ke.idt import ERROR_CODE_VECTORS

        cpu = proc.cpu
        if isinstance(exc, DebugException):
            # #DB from the debug registers: the debugger's data breakpoints stop here.
            cpu.rip = exc.rip
            self._mirror_debug_registers(proc)
            raise self.data_breakpoints.hit(proc, exc.hits, exc.rip)
        if exc.vector == 3 and exc.rip - 1 in self.breakpoints:
            # One of the debugger's own breakpoints: stop there, not in the kernel.
            cpu.rip = exc.rip - 1
            raise BreakpointHit(proc.number, cpu.rip)
        cpu.rip = exc.rip  # for int 3 (a trap) the address after it, as the CPU saves
        code = (exc.error_code or 0) if exc.vector in ERROR_CODE_VECTORS else None
        self.raise_vector(proc, exc.vector, code)

    def _trap_return(self, proc: Processor, tf: int) -> None:
        from machine.ke.trapframe import restore_context

        cpu = proc.cpu
        rip, rsp, rflags = restore_context(cpu.mem, tf, cpu.regs)
        t = self.struct("_KTRAP_FRAME", tf, cpu.mem)
        self.set_irql(proc, t.get("PreviousIrql"))
        thread = proc.current
        assert thread is not None
        if t.get("SegCs") == USER_CS:
            thread.user_mode = True
            thread.saved_user_rip = rip
            thread.saved_user_rsp = rsp
            cpu.regs[4] = rsp
            cpu.rip = rip
        else:
            cpu.regs[4] = rsp
            cpu.rip = rip
        cpu.rflags = rflags

    # -- time ------------------------------------------------------------------------

    def at_tick(self, tick: int, action) -> None:
        self.timeline.append((tick, action))
        self.timeline.sort(key=lambda e: e[0])

    def run_due_events(self) -> None:
        while self.timeline and self.timeline[0][0] <= self.tick_count:
            _, action = self.timeline.pop(0)
            action(self)

