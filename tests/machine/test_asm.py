"""The Intel-syntax assembler in machine.asm."""

from __future__ import annotations

import iced_x86 as ix
import pytest

from machine.asm import AsmError, Assembly, assemble

BASE = 0xFFFFF805_12340000
SYMBOLS = {
    "nt!KeBugCheckEx": 0xFFFFF805_10001000,
    "nt!KeRaiseIrqlToDpcLevel": 0xFFFFF805_10002000,
    "nt!PsActiveProcessHead": 0xFFFFF805_10C00000,
}
FMT = ix.Formatter(ix.FormatterSyntax.MASM)


def asm(source: str, base: int = BASE) -> Assembly:
    return assemble(source, base, SYMBOLS.get)


def listing(a: Assembly) -> list[str]:
    return [FMT.format(i) for i in ix.Decoder(64, a.code, ip=a.base)]


def one(source: str) -> str:
    (text,) = listing(asm(source))
    return text


def masm_hex(value: int) -> str:
    text = f"{value:X}h"
    return "0" + text if text[0] in "ABCDEF" else text


def error_of(source: str) -> AsmError:
    with pytest.raises(AsmError) as info:
        asm(source)
    return info.value


# --- round trip through iced's decoder and MASM formatter -----------------------------------

ROUND_TRIP = [
    ("mov eax, dword ptr [rbx]", "mov eax,[rbx]"),
    ("MOV RAX, QWORD PTR [RSP+28h]", "mov rax,[rsp+28h]"),
    ("mov r8d, r9d", "mov r8d,r9d"),
    ("mov r8w, 5", "mov r8w,5"),
    ("mov r8b, 0x7f", "mov r8b,7Fh"),
    ("mov ah, 1", "mov ah,1"),
    ("mov byte ptr [rax+rcx*4+8], 0FFh", "mov byte ptr [rax+rcx*4+8],0FFh"),
    ("mov word ptr [rbp-8], -2", "mov word ptr [rbp-8],0FFFEh"),
    ("mov qword ptr [rsp+8*rdx-10h], 0n16", "mov qword ptr [rsp+rdx*8-10h],10h"),
    ("mov dword ptr [8+rbx], 16", "mov dword ptr [rbx+8],10h"),
    ("mov rax, qword ptr gs:[188h]", "mov rax,gs:[188h]"),
    ("mov rcx, gs:[20h]", "mov rcx,gs:[20h]"),
    ("mov rax, 0xfffff805`00001000", "mov rax,0FFFFF80500001000h"),
    ("mov rax, -1", "mov rax,0FFFFFFFFFFFFFFFFh"),
    ("mov ax, ds", "mov ax,ds"),
    ("mov rax, cr3", "mov rax,cr3"),
    ("mov cr8, rcx", "mov cr8,rcx"),
    ("mov cr0, rax", "mov cr0,rax"),
    ("mov rdx, cr2", "mov rdx,cr2"),
    ("mov cr4, rax", "mov cr4,rax"),
    ("movzx eax, byte ptr [rsi]", "movzx eax,byte ptr [rsi]"),
    ("movzx ecx, ax", "movzx ecx,ax"),
    ("movsx rax, word ptr [rdx]", "movsx rax,word ptr [rdx]"),
    ("movsxd rax, dword ptr [rdx+rcx]", "movsxd rax,dword ptr [rdx+rcx]"),
    ("lea rcx, [rsp+20h]", "lea rcx,[rsp+20h]"),
    ("lea rax, [rcx+rcx*2]", "lea rax,[rcx+rcx*2]"),
    ("xchg rax, rbx", "xchg rbx,rax"),
    ("xchg ecx, dword ptr [rdx]", "xchg ecx,[rdx]"),
    ("add rsp, 28h", "add rsp,28h"),
    ("adc eax, 1", "adc eax,1"),
    ("sub rsp, 0x100", "sub rsp,100h"),
    ("sbb rax, -1", "sbb rax,0FFFFFFFFFFFFFFFFh"),
    ("and rsp, -16", "and rsp,0FFFFFFFFFFFFFFF0h"),
    ("or dword ptr [rax], 80000000h", "or dword ptr [rax],80000000h"),
    ("xor eax, eax", "xor eax,eax"),
    ("cmp byte ptr [rcx], 0", "cmp byte ptr [rcx],0"),
    ("test al, 1", "test al,1"),
    ("test ecx, dword ptr [rbx]", "test [rbx],ecx"),
    ("inc qword ptr [rax]", "inc qword ptr [rax]"),
    ("dec r15", "dec r15"),
    ("neg rax", "neg rax"),
    ("not byte ptr [rax]", "not byte ptr [rax]"),
    ("imul eax, ecx, 10", "imul eax,ecx,0Ah"),
    ("imul rax, qword ptr [rcx]", "imul rax,[rcx]"),
    ("mul rcx", "mul rcx"),
    ("div qword ptr [rax]", "div qword ptr [rax]"),
    ("idiv ecx", "idiv ecx"),
    ("shl eax, 1", "shl eax,1"),
    ("sal ecx, 4", "shl ecx,4"),
    ("shr rdx, cl", "shr rdx,cl"),
    ("sar dword ptr [rax], 2", "sar dword ptr [rax],2"),
    ("rol al, 3", "rol al,3"),
    ("ror word ptr [rax], 1", "ror word ptr [rax],1"),
    ("bt eax, 5", "bt eax,5"),
    ("bts dword ptr [rax], 31", "bts dword ptr [rax],1Fh"),
    ("btr rax, rcx", "btr rax,rcx"),
    ("btc qword ptr [rax], rdx", "btc [rax],rdx"),
    ("push rbx", "push rbx"),
    ("push r12", "push r12"),
    ("push 10", "push 0Ah"),
    ("push 12345678h", "push 12345678h"),
    ("push qword ptr [rax+8]", "push qword ptr [rax+8]"),
    ("push [rax]", "push qword ptr [rax]"),
    ("pop rdi", "pop rdi"),
    ("call rax", "call rax"),
    ("call qword ptr [rax+70h]", "call qword ptr [rax+70h]"),
    ("jmp qword ptr [rcx]", "jmp qword ptr [rcx]"),
    ("ret", "ret"),
    ("ret 8", "ret 8"),
    ("sete al", "sete al"),
    ("setz cl", "sete cl"),
    ("setnz byte ptr [rax]", "setne byte ptr [rax]"),
    ("setb dl", "setb dl"),
    ("setnae dl", "setb dl"),
    ("setg bl", "setg bl"),
    ("cmove rax, rbx", "cmove rax,rbx"),
    ("cmovnz eax, dword ptr [rcx]", "cmovne eax,[rcx]"),
    ("cmovl r8, r9", "cmovl r8,r9"),
    ("nop", "nop"),
    ("pause", "pause"),
    ("int3", "int 3"),
    ("int 3", "int 3"),
    ("int 2Ch", "int 2Ch"),
    ("ud2", "ud2"),
    ("cli", "cli"),
    ("sti", "sti"),
    ("hlt", "hlt"),
    ("pushfq", "pushfq"),
    ("popfq", "popfq"),
    ("cbw", "cbw"),
    ("cwde", "cwde"),
    ("cdqe", "cdqe"),
    ("cwd", "cwd"),
    ("cdq", "cdq"),
    ("cqo", "cqo"),
    ("xadd qword ptr [rcx], rax", "xadd [rcx],rax"),
    ("lock xadd dword ptr [rcx], eax", "lock xadd [rcx],eax"),
    ("lock cmpxchg qword ptr [rcx], rdx", "lock cmpxchg [rcx],rdx"),
    ("lock inc dword ptr [rax]", "lock inc dword ptr [rax]"),
    ("lock bts qword ptr [rcx], 0", "lock bts qword ptr [rcx],0"),
    ("movsb", "movsb"),
    ("movsw", "movsw"),
    ("movsd", "movsd"),
    ("movsq", "movsq"),
    ("rep movsb", "rep movsb"),
    ("rep stosq", "rep stosq"),
    ("stosd", "stosd"),
    ("lodsb", "lodsb"),
    ("lodsq", "lodsq"),
    ("repe cmpsb", "repe cmpsb"),
    ("repz cmpsq", "repe cmpsq"),
    ("repne scasb", "repne scasb"),
    ("repnz scasw", "repne scasw"),
    ("scasd", "scasd"),
    ("rdmsr", "rdmsr"),
    ("wrmsr", "wrmsr"),
    ("swapgs", "swapgs"),
]


@pytest.mark.parametrize(("source", "expected"), ROUND_TRIP)
def test_round_trip(source, expected):
    assert one(source) == expected


@pytest.mark.parametrize(
    ("source", "encoding"),
    [
        ("mov eax, dword ptr [rbx]", "8b03"),
        ("sub rsp, 28h", "4883ec28"),
        ("add rsp, 28h", "4883c428"),
        ("mov cr8, rax", "440f22c0"),
        ("int 3", "cc"),
        ("int3", "cc"),
        ("mov rax, qword ptr gs:[188h]", "65488b042588010000"),
        ("push rbx", "53"),
        ("ret", "c3"),
        ("xor eax, eax", "31c0"),
        ("mov rax, 5", "48c7c005000000"),  # fits signed 32: MOV_RM64_IMM32
        ("mov rax, -5", "48c7c0fbffffff"),
        ("mov rax, 0FFFFFFFFh", "48b8ffffffff00000000"),  # does not: MOV_R64_IMM64
        ("mov eax, 1", "b801000000"),
        ("add eax, 0FFFFFFFDh", "83c0fd"),  # imm8, sign-extended
        ("and eax, 0FFFFFF00h", "2500ffffff"),
        ("mov ecx, dword ptr [rbp]", "8b4d00"),
        ("mov ecx, dword ptr [r13+0]", "418b4d00"),
        ("mov eax, dword ptr [rsp]", "8b0424"),
        ("mov eax, dword ptr [rcx*4]", "8b048d00000000"),
        ("mov eax, [rbx+8]", "8b4308"),
        ("mov eax, [rbx+1000h]", "8b8300100000"),
        ("mov eax, dword ptr [1000h]", "8b042500100000"),
        ("rep movsb", "f3a4"),
        ("lock add dword ptr [rax], 1", "f0830001"),
        ("shl eax, 1", "d1e0"),
        ("push 10", "6a0a"),
        ("nop", "90"),
        ("cli", "fa"),
        ("swapgs", "0f01f8"),
        ("mov rax, cr3", "0f20d8"),
    ],
)
def test_encoding(source, encoding):
    assert asm(source).code.hex() == encoding


def test_empty_source():
    a = asm("")
    assert a.code == b"" and a.labels == {} and a.base == BASE
    assert asm("\n ; only a comment\n\n").code == b""


def test_comments_blank_lines_and_case():
    a = asm(
        """
        ; a comment line

        PUSH RBX        ; save
        Mov Eax, 10h    ; hex
        """
    )
    assert listing(a) == ["push rbx", "mov eax,10h"]


@pytest.mark.parametrize(
    ("literal", "value"),
    [("16", 16), ("0n16", 16), ("0x10", 16), ("10h", 16), ("0F0h", 0xF0), ("0X1f", 31)],
)
def test_number_forms(literal, value):
    a = asm(f"dd {literal}")
    assert int.from_bytes(a.code, "little") == value


# --- labels ----------------------------------------------------------------------------------


def test_labels_and_forward_references():
    a = asm(
        """
Routine:
        test ecx, ecx
        jz Done
Again:  dec ecx
        jnz Again
Done:   ret
        """
    )
    assert list(a.labels) == ["Routine", "Again", "Done"]
    assert a.labels["Routine"] == BASE
    assert listing(a) == [
        "test ecx,ecx",
        f"je short {masm_hex(a.labels['Done'])}",
        "dec ecx",
        f"jne short {masm_hex(a.labels['Again'])}",
        "ret",
    ]
    assert a.labels["Done"] == BASE + len(a.code) - 1


def test_branches_pick_short_or_near():
    far = "\n".join(["nop"] * 200)
    a = asm(f"Top: jmp Bottom\n je Bottom\n{far}\nBottom: jne Top\n jmp Top\n")
    text = listing(a)
    assert text[0].startswith("jmp near ptr") and text[1].startswith("je near ptr")
    assert text[-2].startswith("jne near ptr") and text[-1].startswith("jmp near ptr")
    assert a.code[:1] == b"\xe9" and a.code[5:7] == b"\x0f\x84"
    near = asm("Top: jmp Bottom\n nop\nBottom: jmp Top")
    assert near.code.hex() == "eb0190ebfb"


def test_label_alone_at_the_end_and_several_per_line():
    a = asm("First: Second: nop\nLast:")
    assert a.labels == {"First": BASE, "Second": BASE, "Last": BASE + 1}


def test_label_characters():
    a = asm("?Name@@$1: nop\n_x: jmp ?Name@@$1")
    assert a.labels["?Name@@$1"] == BASE


def test_rip_relative_label():
    a = asm(
        """
        mov rax, qword ptr [Counter]
        lock inc qword ptr [Counter]
        lea rcx, [Counter+8]
        ret
Counter: dq 0, 0
        """
    )
    counter = a.labels["Counter"]
    decoded = list(ix.Decoder(64, a.code, ip=a.base))
    assert decoded[0].is_ip_rel_memory_operand and decoded[0].ip_rel_memory_address == counter
    assert decoded[1].ip_rel_memory_address == counter and decoded[1].has_lock_prefix
    assert decoded[2].ip_rel_memory_address == counter + 8
    assert listing(a)[0] == f"mov rax,[{masm_hex(counter)}]"


def test_rip_relative_symbol():
    a = asm("lea rcx, [nt!PsActiveProcessHead]")
    (instr,) = ix.Decoder(64, a.code, ip=a.base)
    assert instr.ip_rel_memory_address == SYMBOLS["nt!PsActiveProcessHead"]


def test_explicit_rip_offset():
    a = asm("mov eax, dword ptr [rip+10h]")
    (instr,) = ix.Decoder(64, a.code, ip=a.base)
    assert instr.ip_rel_memory_address == instr.next_ip + 0x10


def test_external_calls_land_on_resolved_address():
    a = asm("call nt!KeRaiseIrqlToDpcLevel\ncall nt!KeBugCheckEx\njmp nt!KeBugCheckEx+0x10")
    targets = [i.near_branch_target for i in ix.Decoder(64, a.code, ip=a.base)]
    assert targets == [
        SYMBOLS["nt!KeRaiseIrqlToDpcLevel"],
        SYMBOLS["nt!KeBugCheckEx"],
        SYMBOLS["nt!KeBugCheckEx"] + 0x10,
    ]


def test_absolute_branch_target():
    a = asm("jmp 0FFFFF80512340100h")
    (instr,) = ix.Decoder(64, a.code, ip=a.base)
    assert instr.near_branch_target == 0xFFFFF805_12340100


def test_resolver_sees_names_as_written():
    seen = []

    def resolve(name):
        seen.append(name)
        return 0x1000 if name == "Nt!Mixed_Case" else None

    assemble("call Nt!Mixed_Case\ncall Nt!Mixed_Case", 0x2000, resolve)
    assert seen == ["Nt!Mixed_Case"]


def test_data_directives():
    a = asm(
        """
Table:  db 1, 2, 0x41, -1, "ok"
        dw 1234h, -2
        dd 0DEADBEEFh
        dq Table, nt!KeBugCheckEx
        """
    )
    expected = (
        bytes([1, 2, 0x41, 0xFF])
        + b"ok"
        + b"\x34\x12\xfe\xff"
        + b"\xef\xbe\xad\xde"
        + BASE.to_bytes(8, "little")
        + SYMBOLS["nt!KeBugCheckEx"].to_bytes(8, "little")
    )
    assert a.code == expected


def test_align_pads_with_int3():
    a = asm("nop\nalign 16\nAligned: ret\nalign 8\nalign 8")
    assert a.code[:16] == b"\x90" + b"\xcc" * 15
    assert a.labels["Aligned"] == BASE + 16
    assert a.code[16:] == b"\xc3" + b"\xcc" * 7


def test_align_with_branches_settles():
    body = "\n".join(["nop"] * 120)
    a = asm(f"Top: jmp Out\n{body}\nalign 64\nOut: jmp Top\n")
    assert a.labels["Out"] % 64 == 0
    jump = next(iter(ix.Decoder(64, a.code, ip=a.base)))
    assert jump.near_branch_target == a.labels["Out"]


# --- unwind -----------------------------------------------------------------------------------


def test_unwind_of_prologue():
    a = asm(
        """
        nop
Routine:
        push rbx
        push rdi
        push r12
        sub rsp, 20h
        mov rbx, rcx
        sub rsp, 8
        ret
Leaf:   ret
        """
    )
    assert a.unwind_of("Routine") == [
        (1, "push", "rbx"),
        (2, "push", "rdi"),
        (4, "push", "r12"),
        (8, "alloc", 0x20),
    ]
    assert a.unwind_of("Leaf") == []


def test_unwind_of_large_allocation():
    a = asm("Big: sub rsp, 1000h\nret")
    assert a.unwind_of("Big") == [(7, "alloc", 0x1000)]


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "line", "column", "words"),
    [
        ("mov eax,", 1, 9, "syntax"),
        ("nop\nmov eax, ]", 2, 10, "syntax"),
        ("nop\n  mov eax 5", 2, 11, "syntax"),
        ("nop\n  mov eax, 5 6", 2, 14, "syntax"),
        ("mov eax, 10h\n  frob eax, 1", 2, 3, "unknown mnemonic"),
        ("  mov eax, bl", 1, 3, "invalid operands"),
        ("mov rax, cr9", 1, 1, "invalid operands"),
        ("push eax", 1, 1, "invalid operands"),
        ("\n  mov [rax], 1", 2, 7, "operand size"),
        ("inc qword ptr [rax]\ninc [rax]", 2, 5, "operand size"),
        ("add al, 300", 1, 9, "out of range"),
        ("mov dword ptr [rax], 100000000h", 1, 22, "out of range"),
        ("shl eax, 256", 1, 10, "out of range"),
        ("int 100h", 1, 5, "out of range"),
        ("db 1, 256", 1, 7, "out of range"),
        ("Start: nop\n  Start: ret", 2, 3, "duplicate label"),
        ("call nt!NoSuchRoutine", 1, 6, "unknown symbol"),
        ("jmp Nowhere", 1, 5, "unknown symbol"),
        ("mov rax, [rcx+Missing]", 1, 15, "unknown symbol"),
        ("mov eax, dword ptr [rcx*3]", 1, 21, "scale"),
        ("mov eax, [rax+rbx+rcx]", 1, 19, "too many registers"),
        ("mov eax, [eax]", 1, 11, "64-bit register"),
        ("mov eax, [rax-rbx]", 1, 14, "subtracted"),
        ("lock mov eax, ebx", 1, 1, "prefix"),
        ("nop\n rep add eax, 1", 2, 2, "prefix"),
        ("align 3", 1, 7, "power of two"),
        ("jmp 7FFF00000000h", 1, 5, "out of range"),
        ("mov ah, r8b", 1, 1, "cannot encode"),
        ("mov eax, 'x'", 1, 10, "string"),
        ("mov eax, -rax", 1, 11, "register"),
        ("rax: nop", 1, 1, "register"),
        ("nt!Foo: nop", 1, 1, "label"),
        ("mov eax, é", 1, 10, "syntax"),
    ],
)
def test_errors_name_line_and_column(source, line, column, words):
    err = error_of(source)
    assert (err.line, err.column) == (line, column), str(err)
    assert words in err.message
    assert str(err) == f"{line}:{column}: {err.message}"


def test_error_is_an_exception_with_fields():
    err = AsmError("boom", 3, 7)
    assert isinstance(err, Exception)
    assert (err.message, err.line, err.column, str(err)) == ("boom", 3, 7, "3:7: boom")


def test_rip_relative_too_far():
    with pytest.raises(AsmError) as info:
        assemble("nop\nlea rax, [nt!Far]", 0x1000, {"nt!Far": 0xFFFFF805_00000000}.get)
    assert (info.value.line, info.value.column) == (2, 10)
    assert "out of range" in info.value.message
