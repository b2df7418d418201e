"""A debugger session over one target: the state kd keeps between commands (current
processor, register context, radix) and the dispatch of command lines."""

from __future__ import annotations

from dataclasses import dataclass, field

from commands import registry
from commands.bptable import BreakpointTable
from commands.cmdline import split_name
from commands.errors import KdCommandError, KdError, KdMemoryError
from commands.expr import evaluate, take_expression
from commands.flow import run_line
from commands.lang_state import FlowState, LogFile
from commands.pseudo_regs import pseudo_value, remember_display
from commands.reader import Reader
from commands.registry import Result
from commands.symbols import SymbolEngine
from commands.target import MemoryAccessError, Target

GPRS64 = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
          "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
LEGACY = {"rax": "a", "rcx": "c", "rdx": "d", "rbx": "b"}
INDEXED = {"rsp": "sp", "rbp": "bp", "rsi": "si", "rdi": "di"}


def sub_registers(regs: dict[str, int]) -> dict[str, int]:
    """Every x64 register name derived from the 64-bit values."""
    out = dict(regs)
    for r in GPRS64:
        v = regs.get(r, 0)
        if r in LEGACY:
            c = LEGACY[r]
            out.update({f"e{c}x": v & 0xFFFFFFFF, f"{c}x": v & 0xFFFF, f"{c}l": v & 0xFF,
                        f"{c}h": (v >> 8) & 0xFF})
        elif r in INDEXED:
            c = INDEXED[r]
            out.update({f"e{c}": v & 0xFFFFFFFF, c: v & 0xFFFF, f"{c}l": v & 0xFF})
        else:
            out.update({f"{r}d": v & 0xFFFFFFFF, f"{r}w": v & 0xFFFF, f"{r}b": v & 0xFF})
    out["eip"] = regs.get("rip", 0) & 0xFFFFFFFF
    return out


@dataclass
class ScopeContext:
    """A register context set by `.trap`, `.cxr` or `.thread` (kd's "last set context")."""

    registers: dict[str, int]
    source: str  # "trap", "cxr" or "thread"
    address: int = 0  # the trap frame, context record or thread it came from


@dataclass
class Session:
    target: Target
    processor: int = 0
    radix: int = 16
    scope: ScopeContext | None = None
    pseudo: dict[str, int] = field(default_factory=dict)
    next_dump: dict[str, int] = field(default_factory=dict)  # where d*/u continue
    breakpoints: BreakpointTable = field(default_factory=BreakpointTable)
    # The most target steps one command may let a live target run (g, p over a long call,
    # a breakpoint whose command string resumes): kd runs until Ctrl+C, kdsim also stops
    # here so that a script cannot hang.
    run_budget: int = 50_000_000
    # A go's own limit, when it has one (at the terminal's prompt a go runs until the
    # target stops or Ctrl+C, as kd's does); None: the run budget.
    go_budget: int | None = None
    # kd's implicit thread and process (.thread, .process) and local context (.frame):
    # each holds until the target runs or another processor is selected, which the
    # stamp (processor, target stop count) they were set under tells.
    implicit_thread: int | None = None
    implicit_process: int | None = None
    frame_index: int = 0
    frame_registers: dict[str, int] | None = None
    frame_base: dict[str, int] | None = None  # the context the frame was unwound from
    context_stamp: tuple[int, int] | None = None
    pending_process: tuple[int, int] | None = None  # `.process /i`: (process, stop count)
    # The command being run, as typed: kd reads some arguments glued to the name
    # (`bp5 addr` is breakpoint 5, `bp 5` a breakpoint at address 5).
    command_text: str = ""
    # The command language (aliases, scripts, logs): user-named aliases (`as`), the
    # fixed-name aliases $u0-$u9 (`r $.u0=...`), and the open log file.
    aliases: dict[str, str] = field(default_factory=dict)
    fixed_aliases: list[str] = field(default_factory=lambda: [""] * 10)
    log: LogFile | None = None
    flow: FlowState = field(default_factory=lambda: FlowState())
    # Debugger settings: the symbol path and cache (.sympath, .symfix), .prefer_dml,
    # !sym's modes, and .kframes's stack depth (None: each command's own default).
    symbol_path: str = ""
    image_path: str = ""  # .exepath (kd's -i)
    symbol_cache: str = ""
    prefer_dml: bool = False
    symbols_noisy: bool = False
    symbol_prompts: bool = True
    stack_depth: int | None = None
    # How deeply breakpoint command strings are running each other (a guard).
    bp_command_depth: int = 0
    # The lab being worked (commands/lab_cmds.py's LabHost), provided by the application.
    lab: object | None = None

    def __post_init__(self) -> None:
        self.symbols = SymbolEngine(self.target)
        self.reader = Reader(self.target)
        registry.load_all()

    # -- prompt and context ---------------------------------------------------------

    @property
    def prompt(self) -> str:
        return f"{self.processor}: kd> "

    def registers(self) -> dict[str, int]:
        """The register context: the selected frame's (`.frame N`), else the set context
        (.trap/.cxr/.thread), else the current processor's."""
        base = self.stack_context()
        self._expire_implicit()
        if self.frame_registers is not None and self.frame_base == base:
            return dict(self.frame_registers)
        return base

    def stack_context(self) -> dict[str, int]:
        """Where stacks unwind from: the set context, else the processor's registers."""
        if self.scope is not None:
            return dict(self.scope.registers)
        return dict(self.target.registers(self.processor))

    def prcb(self, processor: int | None = None) -> int:
        n = self.processor if processor is None else processor
        return self.reader.u64(self.nt("KiProcessorBlock") + 8 * n)

    def current_thread(self, processor: int | None = None) -> int:
        """A processor's current thread; without a processor, kd's implicit thread."""
        if processor is None:
            self._expire_implicit()
            if self.implicit_thread is not None:
                return self.implicit_thread
        return self.reader.field("_KPRCB", self.prcb(processor), "CurrentThread")

    def current_process(self, processor: int | None = None) -> int:
        """A processor's current process; without a processor, kd's implicit process."""
        if processor is None:
            self._expire_implicit()
            if self.implicit_process is not None:
                return self.implicit_process
        thread = self.reader.field("_KPRCB", self.prcb(processor), "CurrentThread")
        return self.reader.field("_KTHREAD", thread, "ApcState.Process")

    def _stop_count(self) -> int:
        return int(getattr(self.target, "stop_count", 0))

    def set_implicit(self, thread: int | None = None, process: int | None = None,
                     frame: tuple[int, dict[str, int], dict[str, int]] | None = None) -> None:
        """Record `.thread`/`.process`/`.frame` selections (None leaves one as it is)."""
        self._expire_implicit()
        self.context_stamp = (self.processor, self._stop_count())
        if thread is not None:
            self.implicit_thread = thread
        if process is not None:
            self.implicit_process = process
        if frame is not None:
            self.frame_index, self.frame_registers, self.frame_base = frame

    def reset_implicit(self, frame_only: bool = False) -> None:
        self.frame_index, self.frame_registers, self.frame_base = 0, None, None
        if not frame_only:
            self.implicit_thread = self.implicit_process = None
            self.context_stamp = None

    def _expire_implicit(self) -> None:
        """Drop implicit selections made before the target last ran or under another
        processor; a `.process /i` switch requested before the last run takes effect."""
        stops = self._stop_count()
        pending = self.pending_process
        if pending is not None and stops > pending[1]:
            self.pending_process = None
            self.reset_implicit()
            self.implicit_process = pending[0]
            self.context_stamp = (self.processor, stops)
            return
        stamp = self.context_stamp
        if stamp is not None and stamp != (self.processor, stops):
            self.reset_implicit()

    # -- run control: the current processor and stops ------------------------------------

    def switch_processor(self, processor: int) -> None:
        """kd's `~Ns`: registers, $thread/$proc and default reads follow that processor."""
        self.processor = processor
        self.scope = None
        self.next_dump.clear()
        select = getattr(self.target, "select_processor", None)
        if select is not None:
            select(processor)

    def stopped(self, processor: int) -> None:
        """After the target ran: the stop's processor becomes current, a context set with
        .trap is dropped, u/d* start again from the new state, and the module list is read
        again (drivers may have loaded)."""
        self.processor = processor
        self.scope = None
        self.next_dump.clear()
        self.symbols = SymbolEngine(self.target)

    def break_in(self) -> None:
        """Ctrl+C while a command runs a live target: the target stops before its next
        step and the command reports the break-in; a command program (a loop, a script)
        stops at its next statement.  Safe to call from a signal handler."""
        if self.flow.depth > 0:
            self.flow.interrupted = True
        request = getattr(self.target, "break_in", None)
        if request is not None:
            request()

    def nt(self, name: str) -> int:
        addr = self.symbols.address_of(f"nt!{name}")
        if addr is None:
            raise KdError(f"Couldn't resolve error at 'nt!{name}'")
        return addr

    # -- ExprContext ----------------------------------------------------------------

    def register(self, name: str) -> int | None:
        name = name.lower().lstrip("@")
        if name.startswith("$"):
            return self._pseudo(name)
        regs = sub_registers(self.registers())
        if name == "efl":
            return regs.get("efl", 0)
        return regs.get(name)

    def _pseudo(self, name: str) -> int | None:
        value = pseudo_value(self, name)
        return value if value is not None else self.pseudo.get(name)

    def symbol(self, name: str) -> int | None:
        return self.symbols.address_of(name)

    def read_memory(self, address: int, size: int) -> bytes:
        return self.target.read_virtual(address, size)

    def read_physical(self, address: int, size: int) -> bytes:
        return self.target.read_physical(address, size)

    def evaluate(self, text: str) -> int:
        return evaluate(text, self, self.radix)

    def take(self, args: str) -> tuple[int, str]:
        return take_expression(args, self, self.radix)

    # -- running command lines ------------------------------------------------------

    def execute(self, line: str) -> list[Result]:
        """Run one input line: `;`-separated commands, control-flow tokens and blocks, with
        aliases expanded (commands/flow.py); never raises."""
        return run_line(self, line)

    def execute_one(self, text: str) -> Result:
        result = self._execute_one(text)
        result.command = text.strip()
        return result

    def _execute_one(self, text: str) -> Result:
        try:
            ct = split_name(text, registry.letter_commands())
            spec = registry.COMMANDS.get(ct.name.lower())
            if spec is None:
                raise KdCommandError(text, 0)
            self.command_text = text
            if ct.args.strip() in ("/?", "-?") and spec.names[0] not in ("?", "??"):
                # `<command> /?`: its syntax and help, from the registry.
                return registry.usage(spec)
            result = spec.handler(self, ct.args)
            remember_display(self, result)
            return result
        except KdCommandError as exc:
            if exc.command != text:
                exc = exc.relocate(text, max(0, text.find(exc.command)))
            return self._error(exc, text)
        except KdError as exc:
            return self._error(exc, text)
        except MemoryAccessError as exc:
            return self._error(KdMemoryError(f"{exc.address:x}"), text)
        except Exception as exc:  # noqa: BLE001 - a bug must not end the user's session
            line = f"kdsim internal error in '{text}': {type(exc).__name__}: {exc}"
            return Result([line], {"error": line, "internal": True})

    def _error(self, exc: KdError, text: str) -> Result:
        if isinstance(exc, KdCommandError):
            return Result([exc.line(self.prompt)], {"error": str(exc)})
        return Result([str(exc)], {"error": str(exc)})
