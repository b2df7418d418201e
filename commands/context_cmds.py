"""Changing contexts as kd does: `.frame` (the local context: one frame of the stack),
`.thread` and `.process` (the implicit thread and process), `.cxr` (a register context
from a `_CONTEXT` record) and `.exr` (an `_EXCEPTION_RECORD`).

A set register context (.thread/.cxr, and .trap) is what `r` shows after "Last set
context:" and where `k` starts; it holds until reset or until the target runs.  The
implicit process's DirectoryTableBase translates memory reads (user addresses differ
between processes)."""

from __future__ import annotations

import re

from commands import fmt
from commands.analyze import bugcheck_table, read_bugcheck
from commands.errors import KdError, KdMissingExpressionError, KdSyntaxError
from commands.process import Kernel
from commands.registers import register_block
from commands.registry import Result, command
from commands.session import ScopeContext
from commands.stack import call_site, frame_row, frames_for_context
from commands.target import MemoryAccessError

THREAD_OBJECT = 6  # _KOBJECTS: ThreadObject
PROCESS_OBJECT = 3  # _KOBJECTS: ProcessObject
GPRS = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
SEGMENTS = ("cs", "ss", "ds", "es", "fs", "gs")
CONTEXT_FIELDS = {**{r: r.capitalize() for r in GPRS}, "rip": "Rip", "efl": "EFlags",
                  "cs": "SegCs", "ss": "SegSs", "ds": "SegDs", "es": "SegEs", "fs": "SegFs",
                  "gs": "SegGs", "dr0": "Dr0", "dr1": "Dr1", "dr2": "Dr2", "dr3": "Dr3",
                  "dr6": "Dr6", "dr7": "Dr7"}
# The names kd's event filters give exception codes (what `.exr` prints after the code).
EXCEPTION_NAMES = {
    0xC0000005: "Access violation", 0x80000003: "Break instruction exception",
    0x80000004: "Single step exception", 0xC0000094: "Integer divide-by-zero",
    0xC0000095: "Integer overflow", 0xC000001D: "Illegal instruction",
    0xC0000096: "Privileged instruction", 0xC00000FD: "Stack overflow",
    0xC0000006: "In-page I/O error", 0x80000002: "Data misaligned",
    0x80000001: "Guard page violation", 0xC0000008: "Invalid handle",
    0xC000001E: "Invalid lock sequence", 0xC000001C: "Invalid system call",
    0xC0000409: "Security check failure or stack buffer overrun",
    0xC0000420: "Assertion failure", 0xC0000421: "Verifier stop",
    0xE06D7363: "C++ EH exception",
}
EXCEPTION_MAXIMUM_PARAMETERS = 15
CACHE_NOTE = ".cache forcedecodeuser done"
CACHE_WARNING = "WARNING: .cache forcedecodeuser is not enabled"
SWITCH_LATER = ["You need to continue execution (press 'g' <enter>) for the context",
                "to be switched. When the debugger breaks in again, you will be in",
                "the new process context."]


def take_options(args: str, allowed: str) -> tuple[set[str], str]:
    """Leading `/x` (or `-x`) options of a dot command; an unknown one is a syntax error."""
    opts: set[str] = set()
    text = args.strip()
    while text[:1] in ("/", "-") and len(text) > 1 and text[1].isalpha():
        letter = text[1].lower()
        if letter not in allowed:
            raise KdSyntaxError(text)
        opts.add(letter)
        text = text[2:].lstrip()
    return opts, text


def _object_type(s, address: int) -> int:
    return s.reader.field("_DISPATCHER_HEADER", address, "Type")


# -- .frame ---------------------------------------------------------------------------------


def current_frame(s) -> int:
    """The local context's frame number (0 unless `.frame` chose another for the current
    register context)."""
    regs = s.registers()
    if s.frame_registers is not None and regs == s.frame_registers:
        return s.frame_index
    return 0


@command(".frame", syntax=".frame [/r] [/c] [FrameNumber]",
         help="Show the local context (current frame), or set it to frame N; /r also "
              "shows that frame's registers as the unwinder recovered them.")
def frame_cmd(s, args: str) -> Result:
    opts, text = take_options(args, "rc")
    base = s.stack_context()
    index = current_frame(s)
    lines: list[str] = []
    wanted = s.evaluate(text) if text else None
    frames = frames_for_context(s, base, (wanted if wanted is not None else index) + 1)
    if wanted is not None:
        if wanted >= len(frames):
            lines.append(f"Cannot find frame 0x{wanted:x}, previous scope unchanged")
            frames = frames_for_context(s, base, index + 1)
        else:
            index = wanted
            if index == 0:
                s.reset_implicit(frame_only=True)
            else:
                s.set_implicit(frame=(index, dict(frames[index].regs), base))
    if index >= len(frames):
        index = 0
    f = frames[index]
    lines.append(frame_row(s, f, args=False, trap=False))
    if "r" in opts and (wanted is None or wanted < len(frames)):
        lines += register_block(s, s.registers(), segments=True)
    return Result(lines, {"frame": index, "child_sp": f.child_sp, "ret_addr": f.ret_addr,
                          "call_site": call_site(s, f.ip), "registers": dict(f.regs)})


# -- .thread / .process ---------------------------------------------------------------------


def thread_registers(s, thread: int) -> dict[str, int]:
    """A thread's register context as kd recovers it: the processor's registers while it
    runs; else rip and rsp from the switch frame its KernelStack points at, everything
    else zero (nothing else is saved where the debugger can find it)."""
    state = s.reader.field("_KTHREAD", thread, "State")
    ctx = Kernel(s).thread_context(thread, state)
    if ctx is None:
        raise KdError(f"Unable to get context for thread {fmt.hex16(thread)}")
    if "rax" in ctx:
        return dict(ctx)
    regs = {r: 0 for r in GPRS}
    regs.update({seg: 0 for seg in SEGMENTS}, efl=0)
    regs.update(rip=ctx["rip"], rsp=ctx["rsp"])
    return regs


def _user_symbols(s, opts: set[str], lines: list[str]) -> None:
    if "r" in opts:
        lines += ["Loading User Symbols", ""]


def _switch_process(s, process: int) -> None:
    dirbase = s.reader.field("_EPROCESS", process, "Pcb.DirectoryTableBase")
    setter = getattr(s.target, "set_implicit_dtb", None)
    if setter is not None:
        setter(dirbase)
    s.set_implicit(process=process)


@command(".thread", syntax=".thread [/p] [/r] [/w] [address]",
         help="Set the implicit thread and the register context to a thread's (its saved "
              "context when it waits); /p also its process, /r reloads user symbols; no "
              "address: back to the current processor's thread.")
def thread_cmd(s, args: str) -> Result:
    opts, text = take_options(args, "prw")
    if not text:
        if s.scope is not None and s.scope.source == "thread":
            s.scope = None
        s.reset_implicit()
        setter = getattr(s.target, "set_implicit_dtb", None)
        if setter is not None:
            setter(None)
        thread = s.current_thread()
        return Result([f"Implicit thread is now {fmt.addr(thread)}"], {"thread": thread})
    thread, rest = s.take(text)
    if rest.strip():
        raise KdSyntaxError(rest.strip())
    if _object_type(s, thread) != THREAD_OBJECT:
        raise KdError(f"{fmt.hex16(thread)} is not a valid thread address")
    regs = thread_registers(s, thread)
    s.scope = ScopeContext(regs, "thread", thread)
    s.set_implicit(thread=thread)
    lines = [f"Implicit thread is now {fmt.addr(thread)}"]
    data: dict = {"thread": thread, "registers": regs}
    if "p" in opts:
        process = s.reader.field("_KTHREAD", thread, "Process")
        _switch_process(s, process)
        lines.append(f"Implicit process is now {fmt.addr(process)}")
        if s.target.is_live:
            lines.append(CACHE_NOTE)
        data["process"] = process
    _user_symbols(s, opts, lines)
    return Result(lines, data)


@command(".process", syntax=".process [/p] [/r] [/i] [address]",
         help="Show the implicit process, or set it: reads of user addresses then use its "
              "page tables; /i (live target) switches at the next break, /r reloads user "
              "symbols.")
def process_cmd(s, args: str) -> Result:
    opts, text = take_options(args, "pri")
    if not text:
        process = s.current_process()
        return Result([f"Implicit process is now {fmt.addr(process)}"], {"process": process})
    process, rest = s.take(text)
    if rest.strip():
        raise KdSyntaxError(rest.strip())
    if _object_type(s, process) != PROCESS_OBJECT:
        raise KdError(f"{fmt.hex16(process)} is not a valid process address")
    if "i" in opts:
        if not s.target.is_live:
            raise KdError("The system is not live: .process /i needs a live target")
        dirbase = s.reader.field("_EPROCESS", process, "Pcb.DirectoryTableBase")
        setter = getattr(s.target, "set_implicit_dtb", None)
        if setter is not None:
            setter(dirbase, at_next_stop=True)
        s.pending_process = (process, int(getattr(s.target, "stop_count", 0)))
        return Result(list(SWITCH_LATER), {"process": process, "pending": True})
    _switch_process(s, process)
    lines = [f"Implicit process is now {fmt.addr(process)}"]
    if s.target.is_live:
        lines.append(CACHE_NOTE if "p" in opts else CACHE_WARNING)
    _user_symbols(s, opts, lines)
    return Result(lines, {"process": process})


# -- .cxr / .exr ----------------------------------------------------------------------------


def context_registers(s, record: int) -> dict[str, int]:
    """The registers of a `_CONTEXT` record in memory."""
    return {reg: s.reader.field("_CONTEXT", record, fld) for reg, fld in CONTEXT_FIELDS.items()}


@command(".cxr", syntax=".cxr [address]",
         help="Set the register context from a CONTEXT record and show it (no address: "
              "back to the default context).")
def cxr_cmd(s, args: str) -> Result:
    opts, text = take_options(args, "fw")
    if not text:
        if s.scope is None:
            return Result([], {"context": None})
        s.scope = None
        return Result(["Resetting default context"], {"context": None})
    record, rest = s.take(text)
    if rest.strip():
        raise KdSyntaxError(rest.strip())
    try:
        regs = context_registers(s, record)
    except MemoryAccessError:
        raise KdError(f"Memory access error at '{text}'") from None
    s.scope = ScopeContext(regs, "cxr", record)
    lines = register_block(s, regs, segments=True)
    return Result(lines, {"context_record": record, "registers": regs})


def exception_record_of_bugcheck(s) -> int | None:
    """The exception record a bug check's parameters point at (0x7E's third, for
    example), from the documented meaning of each parameter; None when it has none."""
    try:
        bc = read_bugcheck(s)
    except (KdError, MemoryAccessError):
        return None
    if bc is None:
        return None
    code, params = bc
    info = bugcheck_table().get(code) or bugcheck_table().get(code & 0x0FFFFFFF)
    if info is None:
        return None
    for meaning, value in zip(info.params, params, strict=False):
        low = meaning.lower()
        if re.search(r"exception ?record", low) and not re.search(
                r"parameter|->|reserved", low):
            return value or None
    return None


def exception_lines(s, record: int) -> tuple[list[str], dict]:
    r = s.reader
    t = "_EXCEPTION_RECORD"
    code = r.field(t, record, "ExceptionCode") & 0xFFFFFFFF
    flags = r.field(t, record, "ExceptionFlags")
    address = r.field(t, record, "ExceptionAddress")
    count = r.field(t, record, "NumberParameters")
    params = [r.field(t, record, f"ExceptionInformation[{i}]")
              for i in range(min(count, EXCEPTION_MAXIMUM_PARAMETERS))]
    parts = s.symbols.split_name(address)
    where = fmt.hex16(address)
    if parts is not None:
        module, symbol, disp = parts
        name = f"{module}!{symbol}" if symbol else module
        where += f" ({name}+0x{disp:016x})" if disp else f" ({name})"
    name = EXCEPTION_NAMES.get(code)
    lines = [f"ExceptionAddress: {where}",
             f"   ExceptionCode: {code:08x}" + (f" ({name})" if name else ""),
             f"  ExceptionFlags: {flags:08x}",
             f"NumberParameters: {count}"]
    lines += [f"   Parameter[{i}]: {fmt.hex16(p)}" for i, p in enumerate(params)]
    if code == 0xC0000005 and len(params) == 2:
        kind = {0: "read from", 1: "write to"}.get(params[0])
        if params[0] == 8:
            lines.append(f"Attempt to execute non-executable address {fmt.hex16(params[1])}")
        else:
            lines.append(f"Attempt to {kind or 'write to'} address {fmt.hex16(params[1])}")
    elif code == 0xC0000006 and len(params) == 3:
        lines.append(f"Inpage operation failed at {fmt.hex16(params[1])}, due to I/O error "
                     f"{fmt.hex16(params[2])}")
    data = {"record": record, "code": code, "flags": flags, "address": address,
            "parameters": params}
    return lines, data


@command(".exr", syntax=".exr address | .exr -1",
         help="Show an EXCEPTION_RECORD; -1: the last exception (the bug check's record, "
              "when its parameters carry one).")
def exr_cmd(s, args: str) -> Result:
    text = args.strip()
    if not text:
        raise KdMissingExpressionError("")
    value, rest = s.take(text)
    if rest.strip():
        raise KdSyntaxError(rest.strip())
    if value & fmt.MASK64 == fmt.MASK64:
        record = exception_record_of_bugcheck(s)
        if record is None:
            return Result(["Last event was not an exception"], {"record": None})
    else:
        record = value & fmt.MASK64
    try:
        lines, data = exception_lines(s, record)
    except MemoryAccessError:
        line = f"Cannot read Exception record @ {fmt.hex16(record)}"
        return Result([line], {"error": line})
    return Result(lines, data)
