"""Whatever the text, the assembler either assembles it or raises AsmError."""

from __future__ import annotations

import iced_x86 as ix
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machine.asm import AsmError, assemble

SYMBOLS = {"nt!KeBugCheckEx": 0xFFFFF805_10001000, "hal!HalFoo": 0x1000}

# fragments that look like assembly, so the fuzzing gets past the lexer often
WORDS = [
    "mov",
    "add",
    "sub",
    "lea",
    "push",
    "pop",
    "call",
    "jmp",
    "jne",
    "je",
    "ret",
    "int",
    "shl",
    "imul",
    "movzx",
    "xchg",
    "test",
    "lock",
    "rep",
    "movsb",
    "db",
    "dq",
    "align",
    "rax",
    "eax",
    "ax",
    "al",
    "ah",
    "r8",
    "r8d",
    "r8b",
    "rsp",
    "rbp",
    "rip",
    "cr8",
    "cr9",
    "gs",
    "ds",
    "byte",
    "word",
    "dword",
    "qword",
    "ptr",
    "[",
    "]",
    "+",
    "-",
    "*",
    ",",
    ":",
    ";",
    "\n",
    " ",
    "0",
    "1",
    "3",
    "8",
    "10h",
    "0FFh",
    "0x7fffffff",
    "-129",
    "256",
    "0xffffffffffffffff",
    "0x1`0000",
    "'s'",
    '"',
    "L1",
    "L1:",
    "nt!KeBugCheckEx",
    "nt!Missing",
    "?x@@",
    "$",
    "!",
    "é",
    "\t",
    "\r",
]

fragments = st.lists(st.sampled_from(WORDS), max_size=30).map(" ".join)


def check(source: str) -> None:
    try:
        a = assemble(source, 0xFFFFF805_12340000, SYMBOLS.get)
    except AsmError as err:
        assert err.line >= 1 and err.column >= 1
        assert str(err) == f"{err.line}:{err.column}: {err.message}"
        return
    # whatever assembled decodes back into the same number of bytes
    assert isinstance(a.code, bytes)
    assert all(a.base <= addr <= a.base + len(a.code) for addr in a.labels.values())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80))
def test_random_text_only_raises_asm_error(source):
    check(source)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fragments)
def test_assembly_like_text_only_raises_asm_error(source):
    check(source)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(fragments, max_size=6).map("\n".join))
def test_multi_line_assembly_like_text_only_raises_asm_error(source):
    check(source)


REGS64 = ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r12", "r13", "r15"]
REGS32 = ["eax", "ebx", "ecx", "r9d", "r14d"]


@st.composite
def memory(draw):
    size = draw(st.sampled_from(["byte", "word", "dword", "qword"]))
    base = draw(st.sampled_from(REGS64 + ["rsp"]))
    index = draw(st.sampled_from([None] + REGS64))
    scale = draw(st.sampled_from([1, 2, 4, 8]))
    disp = draw(st.integers(-(2**31), 2**31 - 1))
    text = f"{size} ptr [{base}"
    if index:
        text += f"+{index}*{scale}"
    if disp:
        text += f"{'+' if disp > 0 else '-'}0{abs(disp):X}h"
    return text + "]"


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["add", "sub", "and", "or", "xor", "cmp", "mov", "adc", "sbb", "test"]),
    st.sampled_from(REGS64 + REGS32),
    memory(),
    st.integers(-(2**31), 2**31 - 1),
)
def test_well_formed_instructions_decode_back(op, reg, mem, imm):
    """Generated valid lines assemble, and iced decodes exactly one instruction from each."""
    for line in (f"{op} {reg}, {mem}", f"{op} {mem}, {reg}", f"{op} {mem}, {imm}"):
        try:
            a = assemble(line, 0x140001000)
        except AsmError as err:
            # register/memory size mismatch or an immediate too wide for a byte/word operand
            assert "invalid operands" in err.message or "out of range" in err.message
            continue
        decoded = list(ix.Decoder(64, a.code, ip=a.base))
        assert len(decoded) == 1 and decoded[0].code != ix.Code.INVALID
        assert decoded[0].len == len(a.code)


@st.composite
def programs(draw):
    """Branches, RIP-relative references and alignment, every statement labelled S<n>."""
    n = draw(st.integers(1, 40))
    stmts = []
    for _ in range(n):
        target = f"S{draw(st.integers(0, n - 1))}"
        stmts.append(
            draw(
                st.sampled_from(
                    [
                        f"jmp {target}",
                        f"jne {target}",
                        f"call {target}",
                        f"loop {target}",
                        f"lea rax, [{target}]",
                        "nop",
                        "mov eax, dword ptr [rbx+10h]",
                        "push rbx",
                        f"align {2 ** draw(st.integers(0, 6))}",
                        "db " + ", ".join(["90h"] * draw(st.integers(1, 130))),
                    ]
                )
            )
        )
    return stmts


@settings(max_examples=300, deadline=None)
@given(programs(), st.sampled_from([0x1000, 0xFFFFF805_12340003, 0x7FF6_00000001]))
def test_branches_and_references_land_on_their_labels(stmts, base):
    source = "\n".join(f"S{i}: {s}" for i, s in enumerate(stmts))
    a = assemble(source, base)
    for i, stmt in enumerate(stmts):
        here = a.labels[f"S{i}"]
        if stmt.startswith("align"):
            assert a.labels.get(f"S{i + 1}", base + len(a.code)) % int(stmt.split()[1]) == 0
            continue
        if stmt.startswith(("nop", "mov", "push", "db")):
            continue
        instr = next(iter(ix.Decoder(64, a.code[here - base :], ip=here)))
        target = a.labels[stmt.split()[-1].strip("[]")]
        if stmt.startswith("lea"):
            assert instr.ip_rel_memory_address == target
            continue
        landing = instr.near_branch_target
        if stmt.startswith("loop") and landing != target:
            # out of rel8 range: iced rewrites it as "loop X; jmp short Y; X: jmp near target"
            hop = next(iter(ix.Decoder(64, a.code[landing - base :], ip=landing)))
            assert hop.mnemonic == ix.Mnemonic.JMP
            landing = hop.near_branch_target
        assert landing == target
