"""`uf`: disassemble a whole function by following its control flow from memory.

The flow starts at the function holding the address (from its symbol's range; where no
symbol covers it, at the address itself), follows conditional and unconditional jumps
inside the function, and ends each path at a return, a jump out, an `int 3` / undefined
instruction or unreadable memory.  Blocks print in address order, each headed by its
`symbol+0xNN:` label and separated by a blank line; jumps that stay in the function are
marked `  Branch`.  `uf /c` lists only the calls the function makes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import iced_x86 as ix

from commands.disasm import decode, instruction_line, label_for, symbol_operand
from commands.errors import KdMissingExpressionError, KdSyntaxError
from commands.fmt import addr
from commands.registry import Result, command

MAX_FLOW_INSTRUCTIONS = 20_000  # a bound for code with no symbol range
_STOPS = (ix.FlowControl.RETURN, ix.FlowControl.INTERRUPT, ix.FlowControl.EXCEPTION,
          ix.FlowControl.INDIRECT_BRANCH)


@dataclass
class Flow:
    start: int
    low: int
    high: int | None  # end of the function's range; None: unknown
    instructions: dict[int, tuple[bytes, ix.Instruction | None]] = field(default_factory=dict)
    block_starts: set[int] = field(default_factory=set)
    incomplete: bool = False

    def inside(self, address: int) -> bool:
        return self.low <= address and (self.high is None or address < self.high)


def _branch_target(instr: ix.Instruction) -> int | None:
    kinds = (ix.OpKind.NEAR_BRANCH16, ix.OpKind.NEAR_BRANCH32, ix.OpKind.NEAR_BRANCH64)
    if instr.op_count and instr.op0_kind in kinds:
        return instr.near_branch_target
    return None


def follow(read, start: int, low: int, high: int | None) -> Flow:
    """Every instruction reachable from `start` without leaving [low, high)."""
    flow = Flow(start, low, high, block_starts={start})
    work = [start]
    while work and len(flow.instructions) < MAX_FLOW_INSTRUCTIONS:
        at = work.pop()
        while at not in flow.instructions and flow.inside(at):
            code, instr = decode(read, at)
            flow.instructions[at] = (code, instr)
            if instr is None or instr.code == ix.Code.INVALID:
                flow.incomplete = True
                break
            nxt = at + len(code)
            control = instr.flow_control
            if control in _STOPS:
                break
            if control in (ix.FlowControl.CONDITIONAL_BRANCH,
                           ix.FlowControl.UNCONDITIONAL_BRANCH):
                target = _branch_target(instr)
                if target is not None and flow.inside(target):
                    flow.block_starts.add(target)
                    work.append(target)
                if control == ix.FlowControl.UNCONDITIONAL_BRANCH:
                    break
                flow.block_starts.add(nxt)
            at = nxt
    return flow


def _is_internal_jump(flow: Flow, instr: ix.Instruction | None) -> bool:
    if instr is None or instr.flow_control not in (ix.FlowControl.CONDITIONAL_BRANCH,
                                                   ix.FlowControl.UNCONDITIONAL_BRANCH):
        return False
    target = _branch_target(instr)
    return target is not None and flow.inside(target)


def render_flow(flow: Flow, symbolizer) -> list[str]:
    lines: list[str] = []
    if flow.incomplete:
        lines.append("Flow analysis was incomplete, some code may be missing")
    expected = None
    for at in sorted(flow.instructions):
        code, instr = flow.instructions[at]
        if at in flow.block_starts or at != expected:
            if expected is not None:
                lines.append("")
            lines.append(label_for(symbolizer, at) or f"{addr(at)}:")
        line = instruction_line(symbolizer, at, code, instr)
        if _is_internal_jump(flow, instr):
            line += "  Branch"
        lines.append(line)
        expected = at + max(1, len(code))
    return lines


def render_calls(flow: Flow, symbolizer) -> list[str]:
    """`uf /c`: the function, then each call site and what it calls."""
    head = symbolizer.name_for(flow.start)
    lines = [f"{head} ({addr(flow.start)})" if head else addr(flow.start)]
    for at in sorted(flow.instructions):
        code, instr = flow.instructions[at]
        if instr is None or instr.flow_control not in (ix.FlowControl.CALL,
                                                       ix.FlowControl.INDIRECT_CALL):
            continue
        site = symbolizer.name_for(at)
        lines.append(f"  {site} ({addr(at)}):" if site else f"  {addr(at)}:")
        target = _branch_target(instr)
        if target is not None:
            lines.append(f"    call to {symbol_operand(symbolizer, target)}")
        else:
            text = instruction_line(symbolizer, at, code, instr).split(None, 2)[2]
            lines.append(f"    unresolvable call: {text}")
    return lines


def _parse(s, args: str) -> tuple[set[str], int]:
    opts: set[str] = set()
    rest = args.strip()
    while rest.startswith("/"):
        word, _, tail = rest.partition(" ")
        for c in word[1:] or " ":
            if c not in "coOim":
                raise KdSyntaxError(rest)
            opts.add(c)
        rest = tail.strip()
    if not rest:
        raise KdMissingExpressionError("")
    return opts, s.evaluate(rest)


@command("uf", syntax="uf [/c] [/o] address",
         help="Disassemble the whole function holding an address, following its branches "
              "(/c: only the calls it makes).")
def uf_cmd(s, args: str) -> Result:
    opts, address = _parse(s, args)
    found = s.symbols.function_at(address)
    if found is not None:
        module, func = found
        low, high = module.base + func.rva, module.base + func.rva + func.size
        start = low
    else:
        start = low = address
        module = s.symbols.module_at(address)
        high = module.end if module is not None else None
    flow = follow(lambda a, n: s.target.read_virtual(a, n), start, low, high)
    if all(instr is None for _code, instr in flow.instructions.values()):
        return Result(["No code found, aborting"], {"address": address, "error": "no code"})
    lines = render_calls(flow, s.symbols) if "c" in opts else render_flow(flow, s.symbols)
    data = {"start": start, "instructions": sorted(flow.instructions),
            "blocks": sorted(flow.block_starts & set(flow.instructions))}
    return Result(lines, data)
