"""`u`, `ub` and the current-instruction line of `r` / `.trap` / `.cxr`, in kd's layout.

Instruction line: backticked address, space, opcode bytes (lower-case hex) left-justified
to 15, space, mnemonic left-justified to 7, space, operands (MASM syntax: `mov
rcx,qword ptr [rax+10h]`, `sub rsp,0F0h`).  A `symbol+0xoff:` label precedes the first
instruction and every instruction that starts a symbol.  Branch targets and RIP-relative
operands print `nt!Sym+0x10 (fffff802`40d32306)`; unreadable memory prints `??` bytes and
`???`.  The current instruction (`r`, a stop) also carries a memory operand's
`ds:<ea>=<value>` and a conditional branch's `[br=0|1]`.  Decoding and operand
formatting are iced-x86's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import iced_x86 as ix

from commands.fmt import addr, masm_hex
from commands.target import MemoryAccessError

Reader = Callable[[int, int], bytes]

MAX_INSTRUCTION = 15
MASK64 = 0xFFFFFFFFFFFFFFFF


class Symbolizer(Protocol):
    def name_for(self, address: int) -> str | None:
        """`nt!KeBugCheckEx+0x10`, `nt!KeBugCheckEx` at offset 0, `myfault+0x12d0` for a
        module without symbols; None outside any module."""
        ...


def _formatter() -> ix.Formatter:
    f = ix.Formatter(ix.FormatterSyntax.MASM)
    f.memory_size_options = ix.MemorySizeOptions.ALWAYS
    f.rip_relative_addresses = False  # absolute targets; replaced by symbols below
    f.space_after_operand_separator = False
    f.uppercase_hex = True
    f.add_leading_zero_to_hex_numbers = True
    f.small_hex_numbers_in_decimal = True
    f.hex_suffix = "h"
    f.hex_prefix = ""
    f.branch_leading_zeros = False
    return f


_FORMATTER = _formatter()

_BRANCH_KINDS = (ix.OpKind.NEAR_BRANCH16, ix.OpKind.NEAR_BRANCH32, ix.OpKind.NEAR_BRANCH64)
_STRING_KINDS = {
    ix.OpKind.MEMORY_ESRDI: "rdi",
    ix.OpKind.MEMORY_ESEDI: "edi",
    ix.OpKind.MEMORY_ESDI: "di",
    ix.OpKind.MEMORY_SEG_RSI: "rsi",
    ix.OpKind.MEMORY_SEG_ESI: "esi",
    ix.OpKind.MEMORY_SEG_SI: "si",
    ix.OpKind.MEMORY_SEG_RDI: "rdi",
    ix.OpKind.MEMORY_SEG_EDI: "edi",
    ix.OpKind.MEMORY_SEG_DI: "di",
}
_STRING_MNEMONICS = ("movs", "stos", "lods", "scas", "cmps", "ins", "outs")
_SIZE_WORDS = {1: "byte", 2: "word", 4: "dword", 8: "qword", 16: "xmmword", 32: "ymmword"}
_NO_EFFECTIVE = {
    ix.Mnemonic.LEA, ix.Mnemonic.NOP, ix.Mnemonic.PREFETCH, ix.Mnemonic.PREFETCHNTA,
    ix.Mnemonic.PREFETCHT0, ix.Mnemonic.PREFETCHT1, ix.Mnemonic.PREFETCHT2,
    ix.Mnemonic.PREFETCHW, ix.Mnemonic.PREFETCHWT1,
}


# -- reading -----------------------------------------------------------------------------

def _read_code(read: Reader, address: int, size: int) -> bytes:
    """As many bytes as can be read from `address` (possibly none)."""
    try:
        return bytes(read(address, size))[:size]
    except MemoryAccessError as e:
        readable = e.address - address
        if 0 < readable < size:
            try:
                return bytes(read(address, readable))[:readable]
            except MemoryAccessError:
                pass
    # Fall back to byte-by-byte for readers that do not name the failing address.
    out = bytearray()
    for i in range(size):
        try:
            out += bytes(read(address + i, 1))[:1]
        except MemoryAccessError:
            break
    return bytes(out)


# -- symbols -----------------------------------------------------------------------------

def symbol_operand(symbolizer: Symbolizer | None, target: int) -> str:
    """`nt!IofCallDriver (fffff805`4d453075)`, or the bare backticked address."""
    name = symbolizer.name_for(target) if symbolizer is not None else None
    if name:
        return f"{name} ({addr(target)})"
    return addr(target)


def label_for(symbolizer: Symbolizer | None, address: int) -> str | None:
    name = symbolizer.name_for(address) if symbolizer is not None else None
    return f"{name}:" if name else None


def _starts_symbol(symbolizer: Symbolizer | None, address: int) -> bool:
    name = symbolizer.name_for(address) if symbolizer is not None else None
    return bool(name) and "+" not in name


# -- formatting --------------------------------------------------------------------------

def _line(address: int, code: bytes, mnemonic: str, operands: str) -> str:
    text = f"{addr(address)} {code.hex():<15} {mnemonic:<7} {operands}"
    return text.rstrip()


def _string_operands(instr: ix.Instruction) -> str:
    size = ix.MemorySizeInfo(instr.memory_size).size
    word = _SIZE_WORDS.get(size, "byte")
    parts = []
    for i in range(instr.op_count):
        reg = _STRING_KINDS.get(instr.op_kind(i))
        if reg is not None:
            parts.append(f"{word} ptr [{reg}]")
    return ",".join(parts)


def _is_string_instruction(instr: ix.Instruction) -> bool:
    return any(instr.op_kind(i) in _STRING_KINDS for i in range(instr.op_count))


def format_instruction(instr: ix.Instruction, symbolizer: Symbolizer | None) -> tuple[str, str]:
    """(mnemonic, operands) as kd prints them."""
    if instr.code == ix.Code.INVALID:
        return "???", ""
    mnemonic = _FORMATTER.format_mnemonic(instr, ix.FormatMnemonicOptions.NONE)
    if _is_string_instruction(instr):
        words = mnemonic.split(" ")
        last = words[-1]
        if last[:-1] in _STRING_MNEMONICS and last[-1] in "bwdq":
            words[-1] = last[:-1]
        return " ".join(words), _string_operands(instr)
    kinds = [instr.op_kind(i) for i in range(instr.op_count)]
    if any(kind in _BRANCH_KINDS for kind in kinds):
        return mnemonic, symbol_operand(symbolizer, instr.near_branch_target)
    operands = _FORMATTER.format_all_operands(instr)
    if instr.is_ip_rel_memory_operand:
        target = instr.ip_rel_memory_address
        operands = operands.replace(f"[{masm_hex(target)}]",
                                    f"[{symbol_operand(symbolizer, target)}]")
    return mnemonic, operands


def _decode(read: Reader, address: int) -> tuple[bytes, ix.Instruction | None]:
    """The instruction's bytes (empty if unreadable) and the decoded instruction."""
    code = _read_code(read, address, MAX_INSTRUCTION)
    if not code:
        return b"", None
    instr = ix.Decoder(64, code, ip=address).decode()
    length = instr.len if instr.code != ix.Code.INVALID and instr.len else 1
    if instr.code == ix.Code.INVALID:
        instr = ix.Instruction()
    return code[:length], instr


def _render(read: Reader, symbolizer: Symbolizer | None, address: int,
            effective: Mapping[str, int] | None = None) -> tuple[str, int]:
    code, instr = _decode(read, address)
    if instr is None:
        return f"{addr(address)} {'??':<15} ???", (address + 1) & MASK64
    mnemonic, operands = format_instruction(instr, symbolizer)
    line = _line(address, code, mnemonic, operands)
    if effective is not None and instr.code != ix.Code.INVALID:
        note = (effective_annotation(instr, read, symbolizer, effective)
                or branch_annotation(instr, effective))
        if note:
            line = f"{line} {note}"
    return line, (address + len(code)) & MASK64


# -- public API --------------------------------------------------------------------------

def disassemble(read: Reader, symbolizer: Symbolizer | None, address: int,
                count: int = 8) -> tuple[list[str], int]:
    """kd's `u address L count`: lines, and the address after the last instruction."""
    lines: list[str] = []
    current = address & MASK64
    for i in range(count):
        label = None
        if i == 0:
            label = label_for(symbolizer, current)
        elif _starts_symbol(symbolizer, current):
            label = label_for(symbolizer, current)
        if label:
            lines.append(label)
        line, current = _render(read, symbolizer, current)
        lines.append(line)
    return lines, current


def disassemble_one(read: Reader, symbolizer: Symbolizer | None, address: int,
                    effective: Mapping[str, int] | None = None) -> tuple[list[str], int]:
    """The label and current-instruction line of `r` / `.trap` / `.cxr`.  With the
    register values in `effective`, a memory operand's segment, effective address and
    value are appended (` ds:00000000`00000000=????????`)."""
    lines: list[str] = []
    label = label_for(symbolizer, address)
    if label:
        lines.append(label)
    line, nxt = _render(read, symbolizer, address & MASK64, effective)
    lines.append(line)
    return lines, nxt


def disassemble_before(read: Reader, symbolizer: Symbolizer | None, address: int,
                       count: int = 8) -> tuple[list[str], int]:
    """kd's `ub address L count`: the `count` instructions that end just before `address`.

    Decoding is tried from every start within count*15 bytes back (the symbol's own
    start first, when known); the first start whose instruction stream lands exactly on
    `address` with at least `count` instructions wins (else the longest that lands)."""
    address &= MASK64
    low = max(0, address - count * MAX_INSTRUCTION)
    window = _window_reader(read, low, address + MAX_INSTRUCTION - low)
    starts: list[int] = []
    name = symbolizer.name_for(address) if symbolizer is not None else None
    if name and "+0x" in name:
        try:
            func = address - int(name.rsplit("+0x", 1)[1], 16)
        except ValueError:
            func = -1
        if func >= low:
            starts.append(func)
    starts += [s for s in range(low, address) if s not in starts]
    best: list[int] = []
    for start in starts:
        chain = _chain(window, start, address)
        if chain is None:
            continue
        if len(chain) >= count:
            best = chain
            break
        if len(chain) > len(best):
            best = chain
    if not best:
        return [], address
    chosen = best[-count:]
    return disassemble(read, symbolizer, chosen[0], len(chosen))


def _window_reader(read: Reader, start: int, size: int) -> Reader:
    """A reader over one prefetched range (read page by page), for the many overlapping
    decodes `ub` tries; addresses outside it go to `read`."""
    cells: dict[int, int | None] = {}
    pos = start
    end = start + size
    while pos < end:
        stop = min(end, (pos // 0x1000 + 1) * 0x1000)
        data = _read_code(read, pos, stop - pos)
        for i in range(stop - pos):
            cells[pos + i] = data[i] if i < len(data) else None
        pos = stop

    def window(address: int, length: int) -> bytes:
        out = bytearray()
        for a in range(address, address + length):
            if a not in cells:
                return bytes(out) + read(a, address + length - a)
            b = cells[a]
            if b is None:
                raise MemoryAccessError(a)
            out.append(b)
        return bytes(out)

    return window


def _chain(read: Reader, start: int, end: int) -> list[int] | None:
    """Instruction addresses from `start` if decoding lands exactly on `end`."""
    out = []
    current = start
    while current < end:
        out.append(current)
        code, instr = _decode(read, current)
        current += len(code) if code else 1
    return out if current == end else None


# -- effective address -------------------------------------------------------------------

def _register_value(reg: int, regs: Mapping[str, int]) -> int | None:
    if reg == ix.Register.NONE:
        return 0
    info = ix.RegisterInfo(reg)
    full = _FORMATTER.format_register(info.full_register)
    if full not in regs:
        return None
    value = regs[full]
    name = _FORMATTER.format_register(reg)
    if name in ("ah", "bh", "ch", "dh"):
        return (value >> 8) & 0xFF
    return value & ((1 << (info.size * 8)) - 1)


def effective_annotation(instr: ix.Instruction, read: Reader, symbolizer: Symbolizer | None,
                         regs: Mapping[str, int]) -> str | None:
    """` ds:` + effective address + `=` + value text, for an explicit memory operand."""
    if instr.mnemonic in _NO_EFFECTIVE:
        return None
    if not any(instr.op_kind(i) == ix.OpKind.MEMORY for i in range(instr.op_count)):
        return None
    if instr.is_ip_rel_memory_operand:
        ea = instr.ip_rel_memory_address
    else:
        base = _register_value(instr.memory_base, regs)
        index = _register_value(instr.memory_index, regs)
        if base is None or index is None:
            return None
        ea = base + index * instr.memory_index_scale + instr.memory_displacement
    ea &= MASK64
    segment = _FORMATTER.format_register(instr.memory_segment)
    read_at = ea
    if segment in ("fs", "gs"):
        read_at = (ea + regs.get(f"{segment}_base", 0)) & MASK64
    size = ix.MemorySizeInfo(instr.memory_size).size or 1
    selector = regs.get(segment, 0)
    prefix = f"{segment}:{selector:04x}:" if selector else f"{segment}:"
    try:
        data = bytes(read(read_at, size))[:size]
        if len(data) < size:
            raise MemoryAccessError(read_at)
    except MemoryAccessError:
        value = "?" * (size * 2)
    else:
        number = int.from_bytes(data, "little")
        name = symbolizer.name_for(number) if (symbolizer is not None and size == 8) else None
        value = f"{{{name} ({addr(number)})}}" if name else f"{number:0{size * 2}x}"
    return f"{prefix}{addr(ea)}={value}"


# -- conditional branches ---------------------------------------------------------------------

# EFLAGS bits the condition codes test.
_CF, _PF, _ZF, _SF, _OF = 1 << 0, 1 << 2, 1 << 6, 1 << 7, 1 << 11


def _condition_holds(code: int, efl: int) -> bool:
    cf, pf, zf = bool(efl & _CF), bool(efl & _PF), bool(efl & _ZF)
    sf, of = bool(efl & _SF), bool(efl & _OF)
    cc = ix.ConditionCode
    holds = {
        cc.O: of, cc.NO: not of, cc.B: cf, cc.AE: not cf, cc.E: zf, cc.NE: not zf,
        cc.BE: cf or zf, cc.A: not (cf or zf), cc.S: sf, cc.NS: not sf, cc.P: pf,
        cc.NP: not pf, cc.L: sf != of, cc.GE: sf == of, cc.LE: zf or sf != of,
        cc.G: not zf and sf == of,
    }
    return holds[code]


# The counter register a jrcxz-family or loop-family instruction reads, by its encoding
# (a 0x67 prefix selects ecx in 64-bit code).
_ECX_CODES = {ix.Code.JECXZ_REL8_64, ix.Code.LOOP_REL8_64_ECX, ix.Code.LOOPE_REL8_64_ECX,
              ix.Code.LOOPNE_REL8_64_ECX}


def _counter(instr: ix.Instruction, regs: Mapping[str, int]) -> int:
    mask = 0xFFFFFFFF if instr.code in _ECX_CODES else MASK64
    return regs.get("rcx", 0) & mask


def branch_annotation(instr: ix.Instruction, regs: Mapping[str, int]) -> str | None:
    """kd's `[br=1]` (taken) or `[br=0]` after a conditional branch, read from the flags
    (and rcx for jrcxz and the loop instructions)."""
    if instr.flow_control != ix.FlowControl.CONDITIONAL_BRANCH:
        return None
    efl = regs.get("efl", 0)
    m = instr.mnemonic
    if m in (ix.Mnemonic.JRCXZ, ix.Mnemonic.JECXZ):
        taken = _counter(instr, regs) == 0
    elif m in (ix.Mnemonic.LOOP, ix.Mnemonic.LOOPE, ix.Mnemonic.LOOPNE):
        # The loop decrements the counter first and branches while it is not zero.
        remaining = _counter(instr, regs) - 1 != 0
        zf = bool(efl & _ZF)
        taken = remaining and {ix.Mnemonic.LOOPE: zf, ix.Mnemonic.LOOPNE: not zf}.get(m, True)
    elif instr.condition_code != ix.ConditionCode.NONE:
        taken = _condition_holds(instr.condition_code, efl)
    else:
        return None
    return f"[br={int(taken)}]"


# -- flow analysis support (uf) ------------------------------------------------------------

def decode(read: Reader, address: int) -> tuple[bytes, ix.Instruction | None]:
    """The instruction at `address`: its bytes (empty if unreadable) and the decoded
    instruction (`code == ix.Code.INVALID` for undecodable bytes; None if unreadable)."""
    return _decode(read, address & MASK64)


def instruction_line(symbolizer: Symbolizer | None, address: int, code: bytes,
                     instr: ix.Instruction | None) -> str:
    """One instruction line in `u`'s layout, for an instruction already decoded."""
    if instr is None:
        return f"{addr(address)} {'??':<15} ???"
    mnemonic, operands = format_instruction(instr, symbolizer)
    return _line(address, code, mnemonic, operands)
