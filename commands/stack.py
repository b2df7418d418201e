"""Stack traces: k and its display variants (b/v: arguments, n: numbers, c: call
sites only), unwound from the current context through stack memory."""

from __future__ import annotations

from commands import fmt
from commands.registry import Result, command
from commands.stackwalk import Frame, walk

HEADER = " # Child-SP          RetAddr               Call Site"
HEADER_ARGS = (" # Child-SP          RetAddr               : Args to Child"
               "                                                           : Call Site")


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


def frames_for_context(s, regs: dict[str, int], count: int = 256) -> list[Frame]:
    return walk(s.target, s.symbols, regs.get("rip", 0), regs.get("rsp", 0), count)


def frame_data(f: Frame, site: str) -> dict:
    return {"frame": f.number, "child_sp": f.child_sp, "ret_addr": f.ret_addr,
            "call_site": site, "args": list(f.args), "trap_frame": f.trap_frame}


def _k(variant: str):
    def handler(s, args: str) -> Result:
        flags = variant[1:].lower()
        text = args.strip()
        while text[:1] in ("L", "n", "b", "v", "c", "p", "f") and not text[:2].isdigit():
            flags += text[0].lower()
            text = text[1:].lstrip()
        count = s.evaluate(text) if text else 256
        frames = frames_for_context(s, s.registers(), count)
        lines = []
        if s.scope is not None:
            lines.append("  *** Stack trace for last set context - .thread/.cxr resets it")
        if "c" in flags:
            lines.append(" # Call Site")
            lines += [f"{f.number:02x} {call_site(s, f.ip).split('+')[0]}" for f in frames]
        else:
            with_args = "b" in flags or "v" in flags or "p" in flags
            lines.append(HEADER_ARGS if with_args else HEADER)
            lines += [frame_row(s, f, with_args, "v" in flags) for f in frames]
        return Result(lines, [frame_data(f, call_site(s, f.ip)) for f in frames])

    return handler


for _v in ("k", "kb", "kv", "kn", "kp", "kc", "kL"):
    command(_v, syntax=f"{_v} [count]",
            help={"k": "Show the stack of the current context.",
                  "kb": "Stack with the first four arguments of each frame.",
                  "kv": "Stack with arguments and trap-frame annotations.",
                  "kn": "Stack with frame numbers.",
                  "kp": "Stack with arguments.",
                  "kc": "Call sites only.",
                  "kL": "Stack without source lines."}[_v])(_k(_v))
