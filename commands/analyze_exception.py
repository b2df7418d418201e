"""!analyze for bug checks that carry an exception's context record in their parameters
(0x7E: the exception record in Arg3 and the context record in Arg4; 0x3B: the context
record in Arg3).  kd analyses the exception's context, not the bug-check stack: it prints
the records as `.exr` and `.cxr` show them, walks the stack from the context, and blames
the faulting instruction; a context whose rip is 0 is a call through a NULL pointer."""

from __future__ import annotations

from dataclasses import dataclass, field

from commands.registers import register_block
from commands.target import MemoryAccessError

# code -> (parameter index of the exception record or None, of the context record)
RECORDS = {0x7E: (2, 3), 0x1000007E: (2, 3), 0x3B: (None, 2)}
STATUS_ACCESS_VIOLATION = 0xC0000005


@dataclass
class ExceptionContext:
    record: int | None  # the _EXCEPTION_RECORD, when the parameters name one
    context: int  # the _CONTEXT
    registers: dict[str, int]
    lines: list[str] = field(default_factory=list)  # EXCEPTION_RECORD / CONTEXT sections


def applies(code: int) -> bool:
    return code in RECORDS


def read(s, code: int, params: list[int]) -> ExceptionContext | None:
    """The exception's records as kd prints them after the BUGCHECK_Pn lines; None when
    the context record cannot be read (kd then falls back to the bug-check stack)."""
    # context_cmds imports analyze (the bug-check table): import it here, not at the top
    from commands.context_cmds import context_registers, exception_lines

    record_at, context_at = RECORDS[code]
    context = params[context_at]
    try:
        regs = context_registers(s, context)
    except MemoryAccessError:
        return None
    record = params[record_at] if record_at is not None else None
    out = ExceptionContext(record, context, regs)
    if record:
        out.lines.append(f"EXCEPTION_RECORD:  {record:016x} -- (.exr 0x{record:016x})")
        try:
            out.lines += exception_lines(s, record)[0]
        except MemoryAccessError:
            out.lines.append(f"Cannot read Exception record @ {record:016x}")
        out.lines.append("")
    out.lines.append(f"CONTEXT:  {context:016x} -- (.cxr 0x{context:016x})")
    out.lines += register_block(s, regs, segments=True)
    out.lines += ["Resetting default scope", ""]
    return out


def null_ip_lines(s, regs: dict[str, int]) -> list[str]:
    """FAILED_INSTRUCTION_ADDRESS for a context whose rip is 0: the address as an offset
    from no module, and the unreadable instruction there."""
    from commands.disasm import disassemble_one
    from commands.session import sub_registers

    code, _ = disassemble_one(lambda a, n: s.target.read_virtual(a, n), s.symbols, 0,
                              sub_registers(regs))
    return ["FAILED_INSTRUCTION_ADDRESS: ", "+0", *code[-1:], ""]


def null_ip_bucket(code: int, status: int) -> str:
    """kd's bucket for an exception at a NULL instruction pointer: code, status, NULL_IP."""
    return f"0x{code:X}_{status:x}_NULL_IP"
