"""Crash analysis: .bugcheck and !analyze, from nt!KiBugCheckData, the crashing
processor's stack and the trap frame on it."""

from __future__ import annotations

import hashlib
import textwrap
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from commands import analyze_exception, analyze_power, analyze_trap, fmt
from commands.errors import KdError
from commands.process import Kernel
from commands.registers import register_block, trap_registers
from commands.registry import Result, command
from commands.stack import call_site, frame_data
from commands.stackwalk import Frame, walk
from commands.symbols import Module, module_name
from commands.target import MemoryAccessError

MEMORY_REFERENCE_CODES = {0xA, 0xD1, 0x50}
KERNEL_MODE_EXCEPTION_NOT_HANDLED = 0x8E  # Arg3: the trap frame
UNEXPECTED_KERNEL_MODE_TRAP = 0x7F  # Arg1: the trap number
HARDWARE_INTERRUPT_STORM = 0xF2  # Arg1: the storming vector's ISR
BANNER = ["*" * 79, "*" + " " * 77 + "*", "*" + " " * 24 + "Bugcheck Analysis" + " " * 36 + "*",
          "*" + " " * 77 + "*", "*" * 79, ""]


@dataclass(frozen=True)
class BugcheckInfo:
    code: int
    name: str
    params: tuple[str, str, str, str]
    summary: str


@cache
def bugcheck_table() -> dict[int, BugcheckInfo]:
    text = (resources.files("commands") / "data" / "bugcheck-codes.tsv").read_text()
    out = {}
    for line in text.splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) < 7:
            continue
        code = int(cols[0], 16)
        out[code] = BugcheckInfo(code, cols[1], (cols[2], cols[3], cols[4], cols[5]), cols[6])
    return out


@cache
def subcode_table() -> dict[tuple[int, int], tuple[str, str, str, str]]:
    """(code, parameter 1) -> meanings of parameters 1..4, for codes whose parameters
    depend on parameter 1 (parameter 1's meaning is the subtype's description)."""
    text = (resources.files("commands") / "data" / "bugcheck-subcodes.tsv").read_text()
    out = {}
    for line in text.splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) < 7:
            continue
        try:
            key = (int(cols[0], 16), int(cols[2], 0))
        except ValueError:
            continue  # a subtype named by a range or a phrase, not one value
        out.setdefault(key, (cols[6], cols[3], cols[4], cols[5]))
    return out


@cache
def argument_texts() -> dict[tuple[int, int], str]:
    """(code, argument number) -> the text !analyze prints where it differs from the
    documented parameter meaning (0x1E's Arg3 and Arg4: the exception's parameters)."""
    text = (resources.files("commands") / "data" / "analyze-argument-texts.tsv").read_text()
    out = {}
    for line in text.splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) == 3:
            out[(int(cols[0], 16), int(cols[1]))] = cols[2]
    return out


def parameter_meanings(code: int, params: list[int]) -> tuple[str, str, str, str]:
    sub = subcode_table().get((code, params[0]))
    if sub is not None:
        return sub
    info = bugcheck_table().get(code)
    meanings = list(info.params if info else ("", "", "", ""))
    for i in range(4):
        meanings[i] = argument_texts().get((code, i + 1), meanings[i])
    if code == UNEXPECTED_KERNEL_MODE_TRAP:
        # kd names the one trap that happened, and says nothing of the other three
        meanings = [analyze_trap.trap_names().get(params[0], meanings[0]), "", "", ""]
    return meanings[0], meanings[1], meanings[2], meanings[3]


def read_bugcheck(s) -> tuple[int, list[int]] | None:
    data = s.nt("KiBugCheckData")
    values = [s.reader.u64(data + 8 * i) for i in range(5)]
    if values[0] == 0:
        return None
    return values[0] & 0xFFFFFFFF, values[1:]


@command(".bugcheck", syntax=".bugcheck", help="Show the bug check code and its four arguments.")
def bugcheck_cmd(s, args: str) -> Result:
    bc = read_bugcheck(s)
    if bc is None:
        return Result([], {"code": None})
    code, params = bc
    lines = [f"Bugcheck code {code:08X}",
             "Arguments " + " ".join(fmt.addr(p) for p in params)]
    return Result(lines, {"code": code, "params": params})


@dataclass
class Analysis:
    code: int
    name: str
    description: list[str]
    args: list[tuple[int, str]]
    process_name: str = ""
    address_kind: tuple[str, int, str] | None = None  # (READ/WRITE_ADDRESS, addr, region)
    trap_frame: int | None = None
    trap_lines: list[str] = field(default_factory=list)
    stack: list[Frame] = field(default_factory=list)
    stack_sites: list[str] = field(default_factory=list)
    module: str = ""
    image: str = ""
    symbol: str = ""
    image_only: bool = False  # the culprit is an image, with no routine in it to name
    context_record: int | None = None  # the exception's context, when the stack is its
    exception_lines: list[str] = field(default_factory=list)  # EXCEPTION_RECORD, CONTEXT
    func_offset: int = 0
    bucket: str = ""
    failure_hash: str = ""
    os_version: str = ""
    details: list[str] = field(default_factory=list)  # code-specific, after BUGCHECK_Pn


def _region(s, address: int) -> str:
    for name, start_sym, end_sym in (("Paged pool", "MmPagedPoolStart", "MmPagedPoolEnd"),
                                     ("NonPaged pool", "MmNonPagedPoolStart",
                                      "MmNonPagedPoolEnd")):
        try:
            start = s.reader.u64(s.nt(start_sym))
            end = s.reader.u64(s.nt(end_sym))
        except (KdError, MemoryAccessError):
            continue
        if start <= address < end:
            return name
    return ""


def _culprit(s, frames: list[Frame], trap_rip: int | None):
    """The first frame outside nt and hal, preferring the trapping instruction."""
    candidates = ([trap_rip] if trap_rip is not None else []) + [f.ip for f in frames]
    for ip in candidates:
        m = s.symbols.module_at(ip)
        if m is not None and m.name not in ("nt", "hal"):
            return m, ip
    for ip in candidates:
        gone = s.symbols.unloaded_at(ip)
        if gone is not None:
            # code of a driver unloaded since: it is to blame, by its image name
            return Module(module_name(gone.image), gone.image, "", gone.base,
                          gone.end - gone.base, 0, 0, None), ip
    for ip in candidates:
        m = s.symbols.module_at(ip)
        if m is not None:
            return m, ip
    return None, None


def analyze(s) -> Analysis:
    bc = read_bugcheck(s)
    if bc is None:
        raise KdError("No bugcheck information available")
    code, params = bc
    info = bugcheck_table().get(code)
    name = info.name if info else "UNKNOWN_BUGCHECK_CODE"
    summary = info.summary if info else ""
    meanings = parameter_meanings(code, params)
    a = Analysis(code, name, textwrap.wrap(summary, 79),
                 [(p, meanings[i]) for i, p in enumerate(params)])
    k = Kernel(s)
    proc = s.processor
    try:
        a.process_name = k.image(s.current_process(proc))
    except MemoryAccessError:
        a.process_name = ""
    regs = s.target.registers(proc)
    exc = analyze_exception.read(s, code, params) if analyze_exception.applies(code) else None
    if exc is not None:
        # kd analyses the exception's context: its stack, its faulting instruction
        a.context_record = exc.context
        a.exception_lines = list(exc.lines)
        regs = exc.registers
        a.stack = walk(s.target, s.symbols, regs["rip"], regs["rsp"], regs=regs)
    else:
        a.stack = walk(s.target, s.symbols, regs["rip"], regs["rsp"])
    a.stack_sites = [call_site(s, f.ip) for f in a.stack]
    trap = None
    if exc is None:
        trap = (params[2] or None) if code == KERNEL_MODE_EXCEPTION_NOT_HANDLED else \
            analyze_trap.stop_trap_frame(s, a.stack)
    trap_rip = None
    if trap is not None:
        a.trap_frame = trap
        tregs = trap_registers(s, trap)
        trap_rip = tregs["rip"]
        a.trap_lines = ["NOTE: The trap frame does not contain all registers.",
                        "Some register values may be zeroed or incorrect."]
        a.trap_lines += register_block(s, tregs, segments=False)
    if code in MEMORY_REFERENCE_CODES:
        write_param = params[1] if code == 0x50 else params[2]
        label = "WRITE_ADDRESS" if write_param & 1 else "READ_ADDRESS"
        a.address_kind = (label, params[0], _region(s, params[0]))
    if exc is not None and regs["rip"] == 0:
        _blame_null_ip(s, a, code, params[0])
    else:
        if exc is not None:
            trap_rip = regs["rip"]
        elif code == HARDWARE_INTERRUPT_STORM and s.symbols.module_at(params[0]) is not None:
            trap_rip = params[0]  # the storming vector's ISR, not what it interrupted
        _blame(s, a, code, *_culprit(s, a.stack, trap_rip))
    if analyze_power.applies(code, params):
        _blame_power_irp_holder(s, a, params[3])
    digest = hashlib.md5(a.bucket.encode()).hexdigest()
    a.failure_hash = "{" + "-".join((digest[:8], digest[8:12], digest[12:16], digest[16:20],
                                     digest[20:32])) + "}"
    try:
        build = s.reader.u64(s.nt("NtBuildNumber")) & 0xFFFF
        a.os_version = f"10.0.{build}"
    except (KdError, MemoryAccessError):
        a.os_version = ""
    return a


def _blame(s, a: Analysis, code: int, module: Module | None, ip: int | None) -> None:
    """SYMBOL_NAME, MODULE_NAME, IMAGE_NAME and the bucket, from the culprit's address."""
    if module is None or ip is None:
        return
    a.module = module.name
    a.image = module.image
    parts = s.symbols.split_name(ip)
    if parts and parts[1]:
        a.symbol = f"{parts[0]}!{parts[1]}+{parts[2]:x}"
        a.func_offset = parts[2]
        func = f"{parts[0]}!{parts[1]}"
    else:
        a.symbol = f"{module.name}+{ip - module.base:x}"
        a.func_offset = ip - module.base
        func = f"{module.name}!unknown_function"
    prefix = "AV_" if code in MEMORY_REFERENCE_CODES else f"0x{code:X}_"
    a.bucket = prefix + func


def _blame_null_ip(s, a: Analysis, code: int, status: int) -> None:
    """An exception at rip 0: kd reports the NULL instruction pointer; with nothing on the
    stack to name, the analysis is inconclusive (it does not blame KeBugCheckEx)."""
    a.exception_lines += analyze_exception.null_ip_lines(s, a.stack[0].regs if a.stack else {})
    a.module, a.image, a.symbol = "Unknown_Module", "Unknown_Image", "ANALYSIS_INCONCLUSIVE"
    a.bucket = analyze_exception.null_ip_bucket(code, status)


def _blame_power_irp_holder(s, a: Analysis, irp: int) -> None:
    """0x9F subtype 3: the driver holding the blocked IRP, not the watchdog's stack."""
    b = analyze_power.blocked_irp(s, irp)
    a.details = b.lines
    if b.module is not None:
        a.module, a.image, a.symbol, a.func_offset = b.module.name, b.module.image, \
            b.module.image, 0
        a.image_only = True  # "Probably caused by : x.sys", no routine to name
    a.bucket = analyze_power.bucket(b)


def _arg_lines(args: list[tuple[int, str]]) -> list[str]:
    out = []
    for i, (value, meaning) in enumerate(args, 1):
        text = f"Arg{i}: {value:016x}, {meaning}" if meaning else f"Arg{i}: {value:016x}"
        wrapped = textwrap.wrap(text, 79, subsequent_indent="\t") or [text]
        out += wrapped
    return out


def render(s, a: Analysis, verbose: bool) -> list[str]:
    out = list(BANNER)
    out.append(f"{a.name} ({a.code:x})")
    out += a.description
    out.append("Arguments:")
    out += _arg_lines(a.args)
    out += ["", "Debugging Details:", "------------------", "", ""]
    if verbose:
        out += ["KEY_VALUES_STRING: 1", "",
                "    Key  : Bugcheck.Code.LegacyAPI", f"    Value: 0x{a.code:x}", "",
                "    Key  : Failure.Bucket", f"    Value: {a.bucket}", "",
                "    Key  : Failure.Hash", f"    Value: {a.failure_hash}", "", ""]
    out += [f"BUGCHECK_CODE:  {a.code:x}", ""]
    for i, (value, _) in enumerate(a.args, 1):
        out += [f"BUGCHECK_P{i}: {value:x}", ""]
    out += a.details
    if verbose:
        out += a.exception_lines
    if verbose and a.address_kind is not None:
        label, addr, region = a.address_kind
        out += [f"{label}:  {addr:016x} {region}".rstrip(), ""]
    out += [f"PROCESS_NAME:  {a.process_name}", ""]
    if verbose and a.trap_frame is not None:
        out.append(f"TRAP_FRAME:  {a.trap_frame:016x} -- (.trap 0x{a.trap_frame:016x})")
        out += a.trap_lines
        out += ["Resetting default scope", ""]
    if verbose:
        out.append("STACK_TEXT:  ")
        for f, site in zip(a.stack, a.stack_sites, strict=True):
            out.append(f"{fmt.addr(f.child_sp)} {fmt.addr(f.ret_addr)}     : "
                       + " ".join(fmt.addr(x) for x in f.args) + f" : {site}")
        out += ["", ""]
    if not a.image_only:  # an image-only culprit was named with the code's details
        out += [f"SYMBOL_NAME:  {a.symbol}", "", f"MODULE_NAME: {a.module}", "",
                f"IMAGE_NAME:  {a.image}", ""]
    if verbose:
        if a.context_record is not None:
            cmd = f".cxr 0x{a.context_record:016x} ; kb"
        elif a.trap_frame is not None:
            cmd = f".trap 0x{a.trap_frame:016x} ; kb"
        else:
            cmd = "kb"
        out += [f"STACK_COMMAND:  {cmd}", "", f"BUCKET_ID_FUNC_OFFSET:  {a.func_offset:x}", ""]
    out += [f"FAILURE_BUCKET_ID:  {a.bucket}", ""]
    if verbose:
        out += [f"OS_VERSION:  {a.os_version}", "", "OSPLATFORM_TYPE:  x64", "",
                "OSNAME:  Windows 10", ""]
    out += [f"FAILURE_ID_HASH:  {a.failure_hash}", "", "Followup:     MachineOwner",
            "---------", ""]
    return out


def show_code(s, words: list[str]) -> Result:
    """`!analyze -show code [p1 p2 p3 p4]`: the code's name, description and what each
    parameter means (for codes whose parameters depend on parameter 1, its subtype)."""
    if not words:
        raise KdError("Numeric expression missing from '<EOL>'")
    if len(words) > 5:
        raise KdError(f"Syntax error at '{' '.join(words[5:])}'")
    code = s.evaluate(words[0]) & 0xFFFFFFFF
    params = [s.evaluate(w) & fmt.MASK64 for w in words[1:]]
    params += [0] * (4 - len(params))
    info = bugcheck_table().get(code)
    if info is None:
        raise KdError(f"Unknown bugcheck code ({code:x})")
    meanings = parameter_meanings(code, params)
    lines = [f"{info.name} ({info.code:x})", *textwrap.wrap(info.summary, 79), "Arguments:"]
    lines += _arg_lines(list(zip(params, meanings, strict=True)))
    return Result(lines, {"mode": "show", "code": info.code, "name": info.name,
                          "description": info.summary or None,
                          "args": _args_data(list(zip(params, meanings, strict=True)))})


@command("!analyze", syntax="!analyze [-v] [-show code [p1 p2 p3 p4]] [-hang]",
         help="Analyze the bug check: its meaning, the faulting context, stack and culprit; "
              "-show explains a code and its parameters; -hang looks for threads blocked on "
              "held locks.")
def analyze_cmd(s, args: str) -> Result:
    words = args.split()
    if words[:1] == ["-show"]:
        return show_code(s, words[1:])
    if "-hang" in words:
        from commands.hang_analysis import hang_cmd

        result = hang_cmd(s)
        result.data = hang_data(result.data)
        return result
    a = analyze(s)
    return Result(render(s, a, "-v" in words), analysis_data(a, "-v" in words))


def _args_data(args: list[tuple[int, str]]) -> list[dict]:
    return [{"value": value, "meaning": meaning or None} for value, meaning in args]


def analysis_data(a: Analysis, verbose: bool) -> dict:
    """!analyze's structured result: the same whether or not -v was given (text the
    analysis could not find is null)."""
    info = bugcheck_table().get(a.code)
    reference = None
    if a.address_kind is not None:
        label, address, region = a.address_kind
        reference = {"access": "write" if label == "WRITE_ADDRESS" else "read",
                     "address": address, "region": region or None}
    return {"mode": "analysis", "verbose": verbose, "code": a.code, "name": a.name,
            "description": (info.summary or None) if info else None,
            "args": _args_data(a.args), "process_name": a.process_name or None,
            "memory_reference": reference, "trap_frame": a.trap_frame,
            "context_record": a.context_record, "module": a.module or None,
            "image": a.image or None, "symbol": a.symbol or None, "image_only": a.image_only,
            "func_offset": a.func_offset, "failure_bucket_id": a.bucket,
            "failure_id_hash": a.failure_hash, "os_version": a.os_version or None,
            "stack": [frame_data(f, site) for f, site in zip(a.stack, a.stack_sites,
                                                             strict=True)]}


HANG_KEYS = ("lock", "kind", "blocking_thread", "blocked_thread", "symbol", "module", "image")


def hang_data(data: dict) -> dict:
    """!analyze -hang's result with the same keys whether a blocked thread was found or
    not: `blocked` is null, or the lock, its owner, the blocked thread and the culprit."""
    if not isinstance(data, dict) or "error" in data:
        return data
    if data.get("blocked", ...) is None:
        return {"mode": "hang", "blocked": None}
    blocked = {key: data.get(key) or None for key in HANG_KEYS}
    return {"mode": "hang", "blocked": blocked}
