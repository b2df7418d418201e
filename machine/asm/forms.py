"""Instruction forms, taken from iced-x86's own opcode tables.

Every legacy-encoded, 64-bit-mode ``Code`` whose operands are ones this assembler can write
(general registers, control/debug/segment registers, memory, immediates, near branches) is
indexed by its lower-case mnemonic.  Nothing here spells an opcode byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import iced_x86 as ix

K = ix.OpCodeOperandKind
R = ix.Register

# operand-kind categories -------------------------------------------------------------------

#: register-only kinds -> register size in bytes
REG_KINDS: dict[int, int] = {
    K.R8_REG: 1,
    K.R8_OPCODE: 1,
    K.R16_REG: 2,
    K.R16_OPCODE: 2,
    K.R16_RM: 2,
    K.R32_REG: 4,
    K.R32_OPCODE: 4,
    K.R32_RM: 4,
    K.R64_REG: 8,
    K.R64_OPCODE: 8,
    K.R64_RM: 8,
}
#: register-or-memory kinds -> size in bytes
RM_KINDS: dict[int, int] = {K.R8_OR_MEM: 1, K.R16_OR_MEM: 2, K.R32_OR_MEM: 4, K.R64_OR_MEM: 8}
#: kinds that name one specific register
FIXED_KINDS: dict[int, int] = {
    K.AL: R.AL,
    K.AX: R.AX,
    K.EAX: R.EAX,
    K.RAX: R.RAX,
    K.CL: R.CL,
    K.DX: R.DX,
    K.FS: R.FS,
    K.GS: R.GS,
}
#: immediate kinds -> (encoded width in bits, width the value is sign-extended to, or 0)
IMM_KINDS: dict[int, tuple[int, int]] = {
    K.IMM8: (8, 0),
    K.IMM16: (16, 0),
    K.IMM32: (32, 0),
    K.IMM64: (64, 0),
    K.IMM8SEX16: (8, 16),
    K.IMM8SEX32: (8, 32),
    K.IMM8SEX64: (8, 64),
    K.IMM32SEX64: (32, 64),
    K.IMM8_CONST_1: (8, 0),
}
#: near branch kinds -> displacement size
BRANCH_KINDS: dict[int, int] = {K.BR64_1: 1, K.BR64_4: 4}
#: implicit memory operands of string instructions (movsb, stosq, ...)
STRING_KINDS = frozenset({K.ES_RDI, K.SEG_RSI, K.SEG_RDI})
OTHER_KINDS = frozenset({K.MEM, K.SEG_REG, K.CR_REG, K.DR_REG})

_SUPPORTED = (
    (set(REG_KINDS) | set(RM_KINDS) | set(FIXED_KINDS) | set(IMM_KINDS) | set(BRANCH_KINDS))
    | STRING_KINDS
    | OTHER_KINDS
)

_FAR_POINTERS = frozenset(
    {ix.MemorySize.SEG_PTR16, ix.MemorySize.SEG_PTR32, ix.MemorySize.SEG_PTR64}
)


@dataclass(frozen=True, eq=False)
class Form:
    code: int
    name: str  # iced's name for the Code, for messages
    mnemonic: str
    kinds: tuple[int, ...]
    mem_size: int  # bytes of the memory operand, 0 when none or unspecified (lea, invlpg)
    op_size: int  # 0, 16, 32 or 64
    string: bool  # movsb & co.: operands are implicit
    branch: int  # 0, or 1 / 4 for rel8 / rel32 near branches
    info: ix.OpCodeInfo


def _mnemonic_names() -> dict[int, str]:
    return {getattr(ix.Mnemonic, n): n.lower() for n in dir(ix.Mnemonic) if n.isupper()}


def _build() -> dict[str, list[Form]]:
    mnemonics = _mnemonic_names()
    table: dict[str, list[Form]] = {}
    codes = sorted((getattr(ix.Code, n), n) for n in dir(ix.Code) if n.isupper() and n != "INVALID")
    for code, name in codes:
        info = ix.OpCodeInfo(code)
        if (
            not info.is_instruction
            or info.encoding != ix.EncodingKind.LEGACY
            or not info.mode64
            or info.decoder_option != ix.DecoderOptions.NONE
            or info.memory_size in _FAR_POINTERS
        ):
            continue
        kinds = tuple(info.op_kinds())
        if any(k not in _SUPPORTED for k in kinds):
            continue
        string = any(k in STRING_KINDS for k in kinds)
        branch = next((BRANCH_KINDS[k] for k in kinds if k in BRANCH_KINDS), 0)
        mem_size = ix.MemorySizeExt.size(info.memory_size) if info.memory_size else 0
        mnemonic = mnemonics[info.mnemonic]
        form = Form(code, name, mnemonic, kinds, mem_size, info.operand_size, string, branch, info)
        table.setdefault(mnemonic, []).append(form)
    return table


FORMS: dict[str, list[Form]] = _build()

_CONDITION_ALIASES = {
    "z": "e",
    "nz": "ne",
    "c": "b",
    "nae": "b",
    "nb": "ae",
    "nc": "ae",
    "na": "be",
    "nbe": "a",
    "nge": "l",
    "nl": "ge",
    "ng": "le",
    "nle": "g",
    "pe": "p",
    "po": "np",
}

#: alternative spellings -> the mnemonic iced uses
ALIASES: dict[str, str] = {
    prefix + alias: prefix + canonical
    for prefix in ("j", "set", "cmov")
    for alias, canonical in _CONDITION_ALIASES.items()
}
ALIASES.update({"sal": "shl", "retn": "ret", "retq": "ret"})

DIRECTIVES = frozenset({"db", "dw", "dd", "dq", "align"})


def canonical_mnemonic(name: str) -> str:
    return ALIASES.get(name, name)
