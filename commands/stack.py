"""Stack traces: k and its variants, unwound from the current context through stack
memory.

`k[b|p|P|v] [c] [n] [f] [L] [M] [= StackPtr [InstructionPtr]] [FrameCount]`: b/v add the
four home-slot arguments (v also the trap-frame annotation), p/P show what public symbols
give (no parameter types: the plain layout), c call sites only, n frame numbers (always
shown by current kd), f the stack memory each frame uses, L/M accepted.  `kd [WordCount]`
dumps the raw stack, one pointer-sized value a line with its symbol."""

from __future__ import annotations

from commands import fmt
from commands.errors import KdSyntaxError
from commands.memdump import dump, read_units
from commands.registry import Result, command
from commands.stackwalk import MAX_FRAMES, Frame, walk

HEADER = " # Child-SP          RetAddr               Call Site"
HEADER_ARGS = (" # Child-SP          RetAddr               : Args to Child"
               "                                                           : Call Site")
MEMORY_HEADER = " #   Memory  Child-SP"
SET_CONTEXT_NOTE = "  *** Stack trace for last set context - .thread/.cxr resets it"
FLAG_LETTERS = "bvpPcnfLM"


def call_site(s, address: int) -> str:
    name = s.symbols.name_for(address)
    return name if name is not None else f"0x{fmt.addr(address)}"


def frame_row(s, f: Frame, args: bool, trap: bool, number: bool = True) -> str:
    prefix = f"{f.number:02x} " if number else ""
    row = f"{prefix}{fmt.addr(f.child_sp)} {fmt.addr(f.ret_addr)}     "
    if args:
        row += ": " + " ".join(fmt.addr(a) for a in f.args) + " : "
    row += call_site(s, f.ip)
    if trap and f.trap_frame is not None:
        row += f" (TrapFrame @ {fmt.addr(f.trap_frame)})"
    return row


def default_depth(s) -> int:
    """The frame count `k` shows and the words `kd` dumps when none is given: `.kframes`
    sets it (kd's default is 0n256)."""
    return MAX_FRAMES if s.stack_depth is None else s.stack_depth


def frames_for_context(s, regs: dict[str, int], count: int = MAX_FRAMES) -> list[Frame]:
    return walk(s.target, s.symbols, regs.get("rip", 0), regs.get("rsp", 0), count, regs)


def base_context(s) -> dict[str, int]:
    """The context stacks unwind from: a set context (.thread/.cxr/.trap), else the
    processor's registers (a `.frame` selection does not move the top of the stack)."""
    return s.stack_context()


def frame_data(f: Frame, site: str) -> dict:
    """One frame as structured data (k, !thread and !analyze share the layout)."""
    return {"frame": f.number, "child_sp": f.child_sp, "ret_addr": f.ret_addr, "ip": f.ip,
            "call_site": site, "args": list(f.args), "trap_frame": f.trap_frame}


def parse_k_args(s, variant: str, args: str) -> tuple[str, dict[str, int], int]:
    """Flags, start context and frame count of a k command line."""
    flags = variant[1:]
    text = args.strip()
    while text[:1] and text[0] in FLAG_LETTERS:
        flags += text[0]
        text = text[1:].lstrip()
    regs = dict(base_context(s))
    if text.startswith("="):
        values: list[int] = []
        rest = text[1:].strip()
        while rest and rest[0] != ";" and len(values) < 4:
            value, rest = s.take(rest)
            values.append(value)
            rest = rest.strip()
        if rest:
            raise KdSyntaxError(rest)
        if not values:
            raise KdSyntaxError(text)
        # x64: `= StackPtr [FrameCount]`, `= StackPtr InstructionPtr FrameCount`; four
        # values are the x86-style `= BasePtr StackPtr InstructionPtr FrameCount`.
        count = default_depth(s)
        if len(values) == 1:
            regs["rsp"] = values[0]
        elif len(values) == 2:
            regs["rsp"], count = values
        elif len(values) == 3:
            regs["rsp"], regs["rip"], count = values
        else:
            regs["rbp"], regs["rsp"], regs["rip"], count = values
        return flags, regs, count
    count = s.evaluate(text) if text else default_depth(s)
    return flags, regs, count


def render(s, frames: list[Frame], flags: str) -> list[str]:
    if "c" in flags:
        lines = [" # Call Site"]
        lines += [f"{f.number:02x} {call_site(s, f.ip).split('+')[0]}" for f in frames]
        return lines
    with_args = "b" in flags or "v" in flags
    memory = "f" in flags
    header = HEADER_ARGS if with_args else HEADER
    if memory:
        header = MEMORY_HEADER + header[len(" # Child-SP"):]
    lines = [header]
    previous = None
    for f in frames:
        row = frame_row(s, f, with_args, "v" in flags)
        if memory:
            # Blank for frame 0 and where the walk moved to another stack (a trap from
            # user mode), where the distance says nothing about the frame.
            used = "" if previous is None or f.child_sp < previous else \
                f"{f.child_sp - previous:x}"
            row = f"{f.number:02x} {used:>9} " + row[3:]
        previous = f.child_sp
        lines.append(row)
    return lines


def _k(variant: str):
    def handler(s, args: str) -> Result:
        flags, regs, count = parse_k_args(s, variant, args)
        frames = frames_for_context(s, regs, max(0, min(count, 0xFFFF)))
        lines = [SET_CONTEXT_NOTE] if s.scope is not None else []
        lines += render(s, frames, flags)
        rows = [frame_data(f, call_site(s, f.ip)) for f in frames]
        for prev, row in zip([None, *frames], rows, strict=False):
            # the Memory column (kf): every row has the key, null where kd leaves it blank
            below = "f" not in flags or prev is None or row["child_sp"] < prev.child_sp
            row["memory"] = None if below else row["child_sp"] - prev.child_sp
        return Result(lines, {"flags": flags, "set_context": s.scope is not None,
                              "frames": rows})

    return handler


K_HELP = {
    "k": "Show the stack of the current context: k[b|p|P|v] [c] [n] [f] [L] "
         "[= StackPtr [InstructionPtr]] [FrameCount].",
    "kb": "Stack with the first four arguments (home slots) of each frame.",
    "kv": "Stack with arguments and trap-frame annotations.",
    "kn": "Stack with frame numbers.",
    "kp": "Stack with parameters (public symbols: the plain layout; also kP).",
    "kc": "Call sites only.",
    "kf": "Stack with the stack memory each frame uses (Memory column).",
    "kL": "Stack without source lines.",
}

for _v, _help in K_HELP.items():
    command(_v, syntax=f"{_v} [flags] [= StackPtr [InstructionPtr]] [count]",
            help=_help)(_k(_v))


@command("kd", syntax="kd [WordCount]",
         help="Dump the raw stack from the stack pointer: one pointer-sized value a line, "
              "with its symbol.")
def kd_cmd(s, args: str) -> Result:
    count = s.evaluate(args) if args.strip() else default_depth(s)
    rsp = base_context(s).get("rsp", 0)
    lines, _ = dump(lambda a, n: s.target.read_virtual(a, n), s.symbols, "dps", rsp,
                    max(0, min(count, 0x10000)))
    lines = ([SET_CONTEXT_NOTE] if s.scope is not None else []) + lines
    values = read_units(lambda a, n: s.target.read_virtual(a, n), rsp,
                        max(0, min(count, 0x10000)), 8)
    return Result(lines, {"rsp": rsp, "count": count, "set_context": s.scope is not None,
                          "values": values})
