"""Disassembly of memory: u and ub."""

from __future__ import annotations

from commands.cmdline import parse_range
from commands.disasm import disassemble, disassemble_before
from commands.limits import MAX_OUTPUT_LINES, stopped_notice
from commands.registry import Result, command


def _read(s):
    return lambda a, n: s.target.read_virtual(a, n)


@command("u", syntax="u [address] [L count]",
         help="Disassemble instructions from an address (default: continue).")
def u_cmd(s, args: str) -> Result:
    if args.strip():
        start, count, _ = parse_range(args, s, None, 1, s.radix)
    else:
        start, count = s.next_dump.get("u", s.register("rip") or 0), None
    clipped = (count or 8) > MAX_OUTPUT_LINES // 2
    lines, nxt = disassemble(_read(s), s.symbols, start,
                             MAX_OUTPUT_LINES // 2 if clipped else count or 8)
    if clipped:
        lines.append(stopped_notice(len(lines)))
    s.next_dump["u"] = nxt
    return Result(lines, {"address": start, "next": nxt})


@command("ub", syntax="ub [address] [L count]",
         help="Disassemble the instructions before an address.")
def ub_cmd(s, args: str) -> Result:
    if args.strip():
        start, count, _ = parse_range(args, s, None, 1, s.radix)
    else:
        start, count = s.register("rip") or 0, None
    lines, _ = disassemble_before(_read(s), s.symbols, start,
                                  min(count or 8, MAX_OUTPUT_LINES // 2))
    return Result(lines, {"address": start})
