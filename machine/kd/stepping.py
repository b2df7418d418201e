"""Where kd's `p` and `gu` stop, worked out the way a debugger does: from the instruction
bytes in memory (with its own int 3 bytes taken out) and from the functions' unwind data.

`p` over a call (or a rep string instruction) runs until the same thread is back at the
next instruction with rsp as it was before; `gu` runs until the thread reaches the return
address of the current function with rsp above the current frame.
"""

from __future__ import annotations

from iced_x86 import Decoder, Instruction, Mnemonic, OpKind, Register

from machine.mm.paging import PageFault

MAX_INSN = 15
PAGE = 0x1000
MASK64 = 0xFFFFFFFFFFFFFFFF

_STRING = {Mnemonic.MOVSB, Mnemonic.MOVSW, Mnemonic.MOVSD, Mnemonic.MOVSQ, Mnemonic.STOSB,
           Mnemonic.STOSW, Mnemonic.STOSD, Mnemonic.STOSQ, Mnemonic.LODSB, Mnemonic.LODSW,
           Mnemonic.LODSD, Mnemonic.LODSQ, Mnemonic.CMPSB, Mnemonic.CMPSW, Mnemonic.CMPSD,
           Mnemonic.CMPSQ, Mnemonic.SCASB, Mnemonic.SCASW, Mnemonic.SCASD, Mnemonic.SCASQ}
_EPILOGUE_MAX = 12  # instructions looked at when deciding whether rip is in an epilogue


def code_bytes(m, space, address: int, size: int = MAX_INSN) -> bytes:
    """Up to `size` bytes of code at address as the program sees them: the debugger's
    own int 3 bytes replaced by the bytes they cover; stops short at an unmapped page."""
    out = b""
    while len(out) < size:
        va = (address + len(out)) & MASK64
        n = min(size - len(out), PAGE - (va & (PAGE - 1)))
        try:
            out += space.read(va, n)
        except PageFault:
            break
    saved = m.breakpoints.saved
    if saved:
        patched = bytearray(out)
        for i in range(len(patched)):
            original = saved.get((address + i) & MASK64)
            if original is not None:
                patched[i] = original
        out = bytes(patched)
    return out


def decode_at(m, space, address: int) -> Instruction | None:
    data = code_bytes(m, space, address)
    if not data:
        return None
    ins = Decoder(64, data, ip=address).decode()
    return None if ins.is_invalid else ins


def in_native(proc) -> bool:
    """Whether the processor's thread is suspended inside a kernel routine at rip."""
    thread = proc.current
    if thread is None or not thread.native:
        return False
    top = thread.native[-1]
    return proc.cpu.rip == top.resume_rip and proc.cpu.regs[4] == top.resume_rsp


def step_over_target(m, proc) -> tuple[int, int] | None:
    """(rip, rsp) at which `p` stops when the instruction at rip is a call or a rep string
    instruction; None when `p` is a plain single step."""
    thread = proc.current
    if thread is None or thread.user_mode or in_native(proc) or proc.cpu.rip in m.natives:
        return None
    cpu = proc.cpu
    ins = decode_at(m, cpu.mem, cpu.rip)
    if ins is None:
        return None
    if ins.mnemonic == Mnemonic.CALL or (
            ins.mnemonic in _STRING and (ins.has_rep_prefix or ins.has_repe_prefix
                                         or ins.has_repne_prefix)):
        return ins.next_ip, cpu.regs[4]
    return None


def _epilogue(m, space, rip: int, rsp: int) -> tuple[int, int] | None:
    """(return address, rsp after return) when rip is in an epilogue (`add rsp, n` /
    `lea rsp, [rsp+n]` / `pop reg` ... `ret`), simulated forward as x64 unwinders do."""
    sp = rsp
    address = rip
    for _ in range(_EPILOGUE_MAX):
        ins = decode_at(m, space, address)
        if ins is None:
            return None
        mn = ins.mnemonic
        if mn == Mnemonic.RET:
            extra = ins.immediate(0) if ins.op_count else 0
            return space.read_u64(sp), sp + 8 + extra
        if mn == Mnemonic.ADD and ins.op0_kind == OpKind.REGISTER \
                and ins.op0_register == Register.RSP and ins.op1_kind != OpKind.REGISTER \
                and ins.op1_kind != OpKind.MEMORY:
            sp += ins.immediate(1) & MASK64
            sp &= MASK64
        elif mn == Mnemonic.LEA and ins.op0_register == Register.RSP \
                and ins.memory_base == Register.RSP and ins.memory_index == Register.NONE:
            sp = (sp + ins.memory_displacement) & MASK64
        elif mn == Mnemonic.POP and ins.op0_kind == OpKind.REGISTER:
            sp += 8
        else:
            return None
        address = ins.next_ip
    return None


def caller_of(m, space, rip: int, rsp: int) -> tuple[int, int]:
    """(return address, caller's rsp) of the function executing at rip with rsp: from an
    epilogue, else from the function's unwind data (prologue ops already executed,
    or a machine frame for trap handlers), else a leaf's [rsp]."""
    found = _epilogue(m, space, rip, rsp)
    if found is not None:
        return found
    sp = rsp
    img = m.module_of(rip)
    func = None
    if img is not None:
        func = next((f for f in img.functions
                     if img.base + f.rva <= rip < img.base + f.rva + f.size), None)
    if func is not None:
        offset = rip - (img.base + func.rva)
        for op_offset, op, arg in reversed(func.unwind):
            if op_offset > offset:
                continue  # that prologue instruction has not executed yet
            if op == "alloc":
                sp += int(arg)
            elif op == "push":
                sp += 8
            elif op == "machframe":
                base = sp + (8 if arg else 0)  # skip the error code
                return space.read_u64(base), space.read_u64(base + 0x18)
    return space.read_u64(sp), sp + 8


def return_target(m, proc) -> int:
    """The return address `gu` runs to from the processor's current rip."""
    cpu = proc.cpu
    return caller_of(m, cpu.mem, cpu.rip, cpu.regs[4])[0]
