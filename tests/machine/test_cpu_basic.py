"""Instruction families of the x64 interpreter: results in registers and memory."""

from __future__ import annotations

import pytest

from machine.cpu import REG64, Cpu, CpuException, DecodeCache, Halt
from machine.cpu.harness import CODE, DATA, STACK_TOP, Harness, assemble

M64 = (1 << 64) - 1
CF, PF, AF, ZF, SF, IF, DF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x200, 0x400, 0x800


def run(*lines: str, **regs: int) -> Harness:
    h = Harness(assemble(*lines))
    for name, value in regs.items():
        h.cpu.set(name, value)
    h.run()
    return h


def r(h: Harness, name: str) -> int:
    return h.cpu.get(name)


# -- interface ---------------------------------------------------------------------------

def test_reg64_order():
    assert REG64 == ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                     "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


def test_defaults_and_get_set_names():
    h = Harness()
    cpu = h.cpu
    assert cpu.rflags == 0x202
    assert cpu.number == 0
    cpu.set("rax", 0x1122334455667788)
    assert cpu.get("eax") == 0x55667788
    assert cpu.get("ax") == 0x7788
    assert cpu.get("al") == 0x88
    assert cpu.get("ah") == 0x77
    cpu.set("ah", 0xAB)
    assert cpu.get("rax") == 0x112233445566AB88
    cpu.set("eax", 1)
    assert cpu.get("rax") == 1
    cpu.set("r9", M64)
    cpu.set("r9w", 0)
    assert cpu.get("r9") == 0xFFFFFFFFFFFF0000
    assert cpu.get("r9d") == 0xFFFF0000
    assert cpu.get("r9b") == 0
    cpu.set("rip", CODE + 5)
    assert cpu.get("rip") == CODE + 5
    cpu.set("efl", 0x246)
    assert cpu.get("rflags") == 0x246
    assert cpu.get("rsp") == STACK_TOP


def test_push_pop_helpers_use_memory():
    h = Harness()
    h.cpu.push(0xDEADBEEF)
    assert h.cpu.regs[4] == STACK_TOP - 8
    assert h.mem.read_u64(STACK_TOP - 8) == 0xDEADBEEF
    assert h.cpu.pop() == 0xDEADBEEF
    assert h.cpu.regs[4] == STACK_TOP


def test_instructions_retired_counts_steps():
    h = run("90 nop", "90 nop", "4801d8 add rax,rbx")
    assert h.cpu.instructions_retired == 3


# -- mov and friends -------------------------------------------------------------------

def test_mov_immediates_and_partial_registers():
    h = run("48b88877665544332211 mov rax,1122334455667788h",
            "48bbffffffffffffffff mov rbx,0FFFFFFFFFFFFFFFFh",
            "bb01000000 mov ebx,1",                         # 32-bit write zero-extends
            "48b9ffffffffffffffff mov rcx,0FFFFFFFFFFFFFFFFh",
            "66b93412 mov cx,1234h",                        # 16-bit write merges
            "48baffffffffffffffff mov rdx,0FFFFFFFFFFFFFFFFh",
            "b256 mov dl,56h",
            "b678 mov dh,78h",
            "48c7c6feffffff mov rsi,0FFFFFFFFFFFFFFFEh")     # imm32 sign-extended
    assert r(h, "rax") == 0x1122334455667788
    assert r(h, "rbx") == 1
    assert r(h, "rcx") == 0xFFFFFFFFFFFF1234
    assert r(h, "rdx") == 0xFFFFFFFFFFFF7856
    assert r(h, "rsi") == 0xFFFFFFFFFFFFFFFE


def test_mov_register_forms_and_high_bytes():
    h = run("4889d8 mov rax,rbx",
            "89d9 mov ecx,ebx",
            "88dc mov ah,bl",
            "4088df mov dil,bl",
            "88fe mov dh,bh",
            rbx=0xAAAAAAAABBBBCCDD, rcx=M64, rdi=M64, rdx=0)
    assert r(h, "rax") == 0xAAAAAAAABBBBDDDD
    assert r(h, "rcx") == 0xBBBBCCDD
    assert r(h, "rdi") == 0xFFFFFFFFFFFFFFDD
    assert r(h, "rdx") == 0xCC00


def test_mov_memory_forms_sib_disp():
    h = run("48895c8b10 mov [rbx+rcx*4+10h],rbx",
            "488b448b10 mov rax,[rbx+rcx*4+10h]",
            "8b548b10 mov edx,[rbx+rcx*4+10h]",
            "66c7034142 mov word ptr [rbx],4241h",
            "c6430743 mov byte ptr [rbx+7],43h",
            "48c74308f6ffffff mov qword ptr [rbx+8],0FFFFFFFFFFFFFFF6h",
            "8a7307 mov dh,[rbx+7]",
            rbx=DATA, rcx=3, rdx=M64)
    assert h.mem.read_u64(DATA + 0x1C) == DATA
    assert r(h, "rax") == DATA
    assert r(h, "rdx") == (DATA & 0xFFFF00FF) | 0x4300
    assert h.mem.read(DATA, 2) == b"AB"
    assert h.mem.read(DATA + 7, 1) == b"C"
    assert h.mem.read_u64(DATA + 8) == (-10) & M64


def test_mov_moffs_and_rip_relative():
    moffs = DATA.to_bytes(8, "little").hex()
    # rip-relative: the data page is at DATA; the instruction after 'mov rax,[rip+x]' is
    # at CODE+7, so disp = DATA + 0x40 - (CODE + 7).
    disp = (DATA + 0x40 - (CODE + 10 + 7)) & 0xFFFFFFFF
    disp2 = (DATA + 0x48 - (CODE + 17 + 7)) & 0xFFFFFFFF
    h = Harness(assemble(f"48a1{moffs} mov rax,[0FFFFF80000300000h]",
                         f"488b05{disp.to_bytes(4, 'little').hex()} mov rax,[0FFFFF80000300040h]",
                         f"488905{disp2.to_bytes(4, 'little').hex()} "
                         "mov [0FFFFF80000300048h],rax"))
    h.mem.write_u64(DATA, 0x1111)
    h.mem.write_u64(DATA + 0x40, 0x2222)
    h.cpu.step()
    assert r(h, "rax") == 0x1111
    h.run()
    assert r(h, "rax") == 0x2222
    assert h.mem.read_u64(DATA + 0x48) == 0x2222


def test_movzx_movsx_movsxd():
    h = run("480fb6c3 movzx rax,bl",
            "0fb7cb movzx ecx,bx",
            "480fbed3 movsx rdx,bl",
            "480fbff3 movsx rsi,bx",
            "4863fb movsxd rdi,ebx",
            "660fbee3 movsx sp,bl",
            rbx=0x80008081, rsp=0x1111111111111111)
    assert r(h, "rax") == 0x81
    assert r(h, "rcx") == 0x8081
    assert r(h, "rdx") == 0xFFFFFFFFFFFFFF81
    assert r(h, "rsi") == 0xFFFFFFFFFFFF8081
    assert r(h, "rdi") == 0xFFFFFFFF80008081
    assert r(h, "rsp") == 0x111111111111FF81


def test_lea():
    h = run("488d448b10 lea rax,[rbx+rcx*4+10h]",
            "8d548bf0 lea edx,[rbx+rcx*4-10h]",
            "488d35f9ffffff lea rsi,[0FFFFF80000100009h]",
            rbx=0xFFFFFFFF00000000, rcx=2)
    assert r(h, "rax") == 0xFFFFFFFF00000018
    assert r(h, "rdx") == 0xFFFFFFF8
    assert r(h, "rsi") == CODE + 9


def test_xchg_registers():
    h = run("4887d8 xchg rbx,rax", "87d9 xchg ebx,ecx", "86e2 xchg ah,dl",
            rax=1, rbx=M64, rcx=0xFFFFFFFF00000002, rdx=0x1234)
    assert r(h, "rax") == M64 & ~0xFF00 | 0x3400
    assert r(h, "rbx") == 2  # 32-bit xchg zero-extends both registers
    assert r(h, "rcx") == 1
    assert r(h, "rdx") == 0x12FF


def test_xchg_memory():
    h = Harness(assemble("874b08 xchg ecx,[rbx+8]", "87c0 xchg eax,eax"))
    h.mem.write_u64(DATA + 8, 0x1234567899999999)
    h.cpu.set("rbx", DATA)
    h.cpu.set("rcx", 0xFFFFFFFF00000005)
    h.cpu.set("rax", 0xFFFFFFFF00000007)
    h.run()
    assert r(h, "rcx") == 0x99999999
    assert h.mem.read_u64(DATA + 8) == 0x1234567800000005
    assert r(h, "rax") == 7  # xchg eax,eax (87 c0) zero-extends


def test_alu_register_memory_immediate():
    h = Harness(assemble("480103 add [rbx],rax",
                         "48034308 add rax,[rbx+8]",
                         "4883c0ff add rax,0FFFFFFFFFFFFFFFFh",
                         "4829c8 sub rax,rcx",
                         "4821d1 and rcx,rdx",
                         "4809d6 or rsi,rdx",
                         "4831ff xor rdi,rdi",
                         "80330f xor byte ptr [rbx],0Fh"))
    h.mem.write_u64(DATA, 100)
    h.mem.write_u64(DATA + 8, 1000)
    for k, v in dict(rax=5, rbx=DATA, rcx=0xF0F0, rdx=0xFF00, rsi=1, rdi=77).items():
        h.cpu.set(k, v)
    h.run()
    assert h.mem.read_u64(DATA) == 105 ^ 0x0F
    assert r(h, "rax") == 5 + 1000 - 1 - 0xF0F0 & M64
    assert r(h, "rcx") == 0xF000
    assert r(h, "rsi") == 0xFF01
    assert r(h, "rdi") == 0


def test_adc_sbb_chain_128_bit():
    # 128-bit add: rdx:rax += rcx:rbx, then 128-bit subtract it again.
    h = run("4801d8 add rax,rbx", "4811ca adc rdx,rcx",
            "4829d8 sub rax,rbx", "4819ca sbb rdx,rcx",
            "4801d8 add rax,rbx", "4811ca adc rdx,rcx",
            rax=M64, rdx=1, rbx=2, rcx=3)
    assert r(h, "rax") == 1
    assert r(h, "rdx") == 5


def test_inc_dec_neg_not():
    h = run("fe4308 inc byte ptr [rbx+8]", "48ffc0 inc rax", "ffc9 dec ecx", "48f7da neg rdx",
            "f6d3 not bl",
            rax=M64, rcx=0, rdx=5, rbx=DATA)
    assert r(h, "rax") == 0
    assert r(h, "rcx") == 0xFFFFFFFF
    assert r(h, "rdx") == (-5) & M64
    assert r(h, "bl") == (~DATA) & 0xFF
    assert h.mem.read(DATA + 8, 1) == b"\x01"


# -- multiply / divide -------------------------------------------------------------------

def test_imul_forms():
    h = run("48f7eb imul rbx",
            "480fafcb imul rcx,rbx",
            "486bf3fd imul rsi,rbx,0FFFFFFFFFFFFFFFDh",
            "69fb00000100 imul edi,ebx,10000h",
            rax=(-3) & M64, rbx=7, rcx=6)
    assert r(h, "rax") == (-21) & M64
    assert r(h, "rdx") == M64
    assert r(h, "rcx") == 42
    assert r(h, "rsi") == (-21) & M64
    assert r(h, "rdi") == 0x70000


def test_mul_and_byte_forms():
    h = run("48f7e3 mul rbx", rax=1 << 63, rbx=4)
    assert r(h, "rax") == 0 and r(h, "rdx") == 2
    assert h.cpu.rflags & (CF | OF) == CF | OF
    h = run("f6e3 mul bl", rax=0xFFFF_FFFF_FFFF_0010, rbx=0x20)
    assert r(h, "rax") == 0xFFFF_FFFF_FFFF_0200
    h = run("f6eb imul bl", rax=0xFF, rbx=0x80)  # -1 * -128 = 128 (does not fit in al)
    assert r(h, "ax") == 0x0080
    assert h.cpu.rflags & (CF | OF) == CF | OF


def test_div_idiv():
    h = run("48f7f3 div rbx", rax=7, rdx=1, rbx=2)
    assert r(h, "rax") == ((1 << 64) + 7) // 2
    assert r(h, "rdx") == 1
    h = run("48f7fb idiv rbx", rax=(-7) & M64, rdx=M64, rbx=2)
    assert r(h, "rax") == (-3) & M64
    assert r(h, "rdx") == (-1) & M64
    h = run("f7f3 div ebx", rax=0xFFFFFFFF00000064, rdx=0xAAAAAAAA00000000, rbx=7)
    assert r(h, "rax") == 14 and r(h, "rdx") == 2
    h = run("f6f3 div bl", rax=0x1234_0103, rbx=0x10)  # ax=0x0103 / 0x10
    assert r(h, "rax") == 0x1234_0310
    h = run("f6fb idiv bl", rax=0xFFF9, rbx=2)  # -7 / 2
    assert r(h, "al") == 0xFD and r(h, "ah") == 0xFF


# -- shifts and bit tests ----------------------------------------------------------------

def test_shifts_and_rotates_values():
    h = run("48c1e004 shl rax,4", "48c1eb04 shr rbx,4", "48c1f904 sar rcx,4",
            "48c1c208 rol rdx,8", "c1ce08 ror esi,8", "66d1e7 shl di,1",
            rax=0x0F00000000000001, rbx=0x80, rcx=0x8000000000000000,
            rdx=0x1100000000000022, rsi=0x12345678, rdi=0xFFFF_FFFF_FFFF_C001)
    assert r(h, "rax") == 0xF000000000000010
    assert r(h, "rbx") == 0x8
    assert r(h, "rcx") == 0xF800000000000000
    assert r(h, "rdx") == 0x0000000000002211
    assert r(h, "rsi") == 0x78123456
    assert r(h, "rdi") == 0xFFFF_FFFF_FFFF_8002


def test_shift_count_masking():
    # 64-bit shifts mask the count to 6 bits, others to 5.
    h = run("48d3e0 shl rax,cl", "d3e3 shl ebx,cl", rax=1, rbx=1, rcx=65)
    assert r(h, "rax") == 2
    assert r(h, "rbx") == 2
    h = run("d2e0 shl al,cl", rax=0xFF, rcx=9)
    assert r(h, "al") == 0


def test_rcl_rcr():
    h = run("f9 stc", "48d1d0 rcl rax,1", "f8 clc", "48d1db rcr rbx,1", rax=0x8000000000000000,
            rbx=3)
    assert r(h, "rax") == 1
    assert r(h, "rbx") == 1
    assert h.cpu.rflags & CF


def test_bt_family():
    h = run("480fa3d8 bt rax,rbx", "480fabd1 bts rcx,rdx", "480fbaf203 btr rdx,3",
            "480fbafe3f btc rsi,3Fh", rax=0x10, rbx=4, rcx=0, rdx=0x48, rsi=0)
    assert r(h, "rcx") == 0x100  # bit 0x48 & 63 = 8
    assert r(h, "rdx") == 0x40
    assert r(h, "rsi") == 1 << 63
    assert not h.cpu.rflags & CF  # last: btc of a clear bit
    h = run("480fa3d8 bt rax,rbx", rax=0x10, rbx=4)
    assert h.cpu.rflags & CF


def test_bt_memory_bit_string_offsets():
    h = Harness(assemble("480fab03 bts [rbx],rax", "480fb30b btr [rbx],rcx",
                         "f0480fba2b02 lock bts qword ptr [rbx],2"))
    h.mem.write_u64(DATA + 8, 0)
    h.mem.write_u64(DATA, 0xFF)
    h.cpu.set("rbx", DATA + 8)
    h.cpu.set("rax", 64 + 5)       # bit 5 of the next qword
    h.cpu.set("rcx", (-64 + 1) & M64)  # bit 1 of the previous qword
    h.run()
    assert h.mem.read_u64(DATA + 16) == 1 << 5
    assert h.mem.read_u64(DATA) == 0xFD
    assert h.mem.read_u64(DATA + 8) == 4


# -- stack, calls and branches -----------------------------------------------------------

def test_push_pop_forms():
    h = Harness(assemble("53 push rbx", "6aff push 0FFFFFFFFFFFFFFFFh",
                         "6878563412 push 12345678h", "ff7308 push qword ptr [rbx+8]",
                         "4150 push r8", "58 pop rax", "8f03 pop qword ptr [rbx]",
                         "5f pop rdi", "8f0424 pop qword ptr [rsp]", "6650 push ax",
                         "665e pop si"))
    h.mem.write_u64(DATA + 8, 0xABCDEF)
    h.cpu.set("rbx", DATA)
    h.cpu.set("r8", 0x88)
    h.cpu.set("rax", 0x7777)
    h.cpu.set("rsi", 0xFFFFFFFF_FFFF0000)
    h.run()
    assert r(h, "rax") == 0x88
    assert h.mem.read_u64(DATA) == 0xABCDEF
    assert r(h, "rdi") == 0x12345678
    # pop [rsp] computes the address with the incremented rsp
    assert r(h, "rsp") == STACK_TOP - 8
    assert h.mem.read_u64(STACK_TOP - 8) == (-1) & M64
    assert r(h, "rsi") == 0xFFFFFFFF_FFFF0088


def test_call_ret_push_real_return_address():
    # 0: call +5 (to 10) ; 5: jmp +8 (to 15) ; 7..9: nops ; 10: ret 0 ; ...
    code = assemble("e806000000 call 0FFFFF8000010000Bh",      # 0
                    "eb08 jmp short 0FFFFF8000010000Fh",        # 5
                    "909090 nop; nop; nop",                     # 7
                    "90 nop",                                   # 10
                    "c3 ret",                                   # 11
                    "90 nop", "90 nop", "90 nop",               # 12..14
                    "90 nop")                                   # 15
    h = Harness(code)
    h.cpu.step()
    assert h.cpu.rip == CODE + 11
    assert h.cpu.regs[4] == STACK_TOP - 8
    assert h.mem.read_u64(STACK_TOP - 8) == CODE + 5
    h.cpu.step()
    assert h.cpu.rip == CODE + 5
    assert h.cpu.regs[4] == STACK_TOP
    h.cpu.step()
    assert h.cpu.rip == CODE + 15


def test_indirect_call_jmp_and_ret_imm():
    target = CODE + 0x100
    h = Harness()
    h.mem.write(target, assemble("c21000 ret 10h"))
    h.load(assemble("ffd0 call rax", "ff13 call qword ptr [rbx]", "ff6308 jmp qword ptr [rbx+8]"))
    h.mem.write_u64(DATA, target)
    h.mem.write_u64(DATA + 8, CODE + 0x200)
    h.cpu.set("rax", target)
    h.cpu.set("rbx", DATA)
    top = STACK_TOP - 0x100
    h.cpu.set("rsp", top)
    h.cpu.step()
    assert h.cpu.rip == target
    assert h.mem.read_u64(top - 8) == CODE + 2
    h.cpu.step()
    assert h.cpu.rip == CODE + 2
    assert h.cpu.regs[4] == top + 0x10
    h.cpu.step()
    h.cpu.step()
    h.cpu.step()
    assert h.cpu.rip == CODE + 0x200


def test_jmp_register_and_rel32():
    h = Harness(assemble("e9fb000000 jmp near ptr 0FFFFF80000100100h"))
    h.cpu.step()
    assert h.cpu.rip == CODE + 0x100
    h = Harness(assemble("ffe1 jmp rcx"))
    h.cpu.set("rcx", CODE + 0x40)
    h.cpu.step()
    assert h.cpu.rip == CODE + 0x40


JCC = ["o", "no", "b", "ae", "e", "ne", "be", "a", "s", "ns", "p", "np", "l", "ge", "le", "g"]


def _expected(cc: str, a: int, b: int, bits: int) -> bool:
    mask = (1 << bits) - 1
    sa = a - (1 << bits) if a >> (bits - 1) else a
    sb = b - (1 << bits) if b >> (bits - 1) else b
    res = (a - b) & mask
    of = not (-(1 << (bits - 1)) <= sa - sb < (1 << (bits - 1)))
    pf = bin(res & 0xFF).count("1") % 2 == 0
    return {"o": of, "no": not of, "b": a < b, "ae": a >= b, "e": a == b, "ne": a != b,
            "be": a <= b, "a": a > b, "s": bool(res >> (bits - 1)),
            "ns": not res >> (bits - 1), "p": pf, "np": not pf, "l": sa < sb, "ge": sa >= sb,
            "le": sa <= sb, "g": sa > sb}[cc]


@pytest.mark.parametrize("a,b", [(1, 2), (2, 1), (5, 5), (M64, 1), (1, M64), (1 << 63, 1),
                                 (1, 1 << 63), ((1 << 63) - 1, M64), (0, 0), (3, 0x80)])
def test_jcc_after_cmp_signed_and_unsigned(a, b):
    for i, cc in enumerate(JCC):
        # cmp rax,rbx ; jcc +1 ; inc rcx  -> rcx = 0 if taken
        h = run("4839d8 cmp rax,rbx", f"{0x70 + i:02x}03", "48ffc1", rax=a, rbx=b, rcx=0)
        assert r(h, "rcx") == (0 if _expected(cc, a, b, 64) else 1), cc
        # the near form, and setcc
        h = run("4839d8 cmp rax,rbx", f"0f{0x90 + i:02x}c2", f"0f{0x80 + i:02x}03000000",
                "48ffc1", rax=a, rbx=b, rcx=0, rdx=0xFF00)
        assert r(h, "rcx") == (0 if _expected(cc, a, b, 64) else 1), cc
        assert r(h, "rdx") == 0xFF00 | int(_expected(cc, a, b, 64)), cc


@pytest.mark.parametrize("a,b", [(0x7F, 0x80), (0x80, 0x7F), (0xFF, 1), (0, 0)])
def test_conditions_after_byte_cmp(a, b):
    for i, cc in enumerate(JCC):
        h = run("38d8 cmp al,bl", f"0f{0x90 + i:02x}c1", rax=a, rbx=b)
        assert r(h, "cl") == int(_expected(cc, a, b, 8)), cc


def test_conditions_after_logic_and_inc():
    # test sets SF/ZF/PF and clears CF/OF; conditions must agree with the flags.
    for v in (0, 1, 0x80, 0x8000000000000000, 0x3):
        for i, cc in enumerate(JCC):
            h = run("4885c0 test rax,rax", f"0f{0x90 + i:02x}c1", rax=v)
            f = h.cpu.rflags
            exp = _cond_from_flags(cc, f)
            assert r(h, "cl") == int(exp), (v, cc)
            assert not f & (CF | OF)
    for v in (0x7FFFFFFFFFFFFFFF, M64, 0):
        for i, cc in enumerate(JCC):
            h = run("f9 stc", "48ffc0 inc rax", f"0f{0x90 + i:02x}c1", rax=v)
            assert r(h, "cl") == int(_cond_from_flags(cc, h.cpu.rflags)), (v, cc)


def _cond_from_flags(cc: str, f: int) -> bool:
    c, z, s, o, p = bool(f & CF), bool(f & ZF), bool(f & SF), bool(f & OF), bool(f & PF)
    return {"o": o, "no": not o, "b": c, "ae": not c, "e": z, "ne": not z, "be": c or z,
            "a": not (c or z), "s": s, "ns": not s, "p": p, "np": not p, "l": s != o,
            "ge": s == o, "le": z or s != o, "g": not z and s == o}[cc]


def test_cmov():
    h = run("4839d8 cmp rax,rbx", "480f44cb cmove rcx,rbx", "0f45d3 cmovne edx,ebx",
            "0f44f3 cmove esi,ebx", rax=1, rbx=2, rcx=M64, rdx=M64, rsi=M64)
    assert r(h, "rcx") == M64          # not moved
    assert r(h, "rdx") == 2            # moved
    assert r(h, "rsi") == 0xFFFFFFFF   # not moved, but a 32-bit cmov still zero-extends


def test_loop_and_jrcxz():
    # mov ecx,5 ; top: inc rax ; loop top
    h = run("b905000000 mov ecx,5", "48ffc0 inc rax", "e2fb loop 0FFFFF80000100005h")
    assert r(h, "rax") == 5 and r(h, "rcx") == 0
    h = run("e302 jrcxz 0FFFFF80000100004h", "ffc0 inc eax", rcx=0)
    assert r(h, "rax") == 0


def test_counted_loop_sums():
    # mov ecx,100 ; xor eax,eax ; top: add rax,rcx ; dec rcx ; jnz top
    h = run("b964000000 mov ecx,64h", "31c0 xor eax,eax", "4801c8 add rax,rcx",
            "48ffc9 dec rcx", "75f8 jne short 0FFFFF80000100007h")
    assert r(h, "rax") == 5050


# -- string instructions ----------------------------------------------------------------

def test_rep_movs_and_stos():
    h = Harness(assemble("f3a4 rep movsb", "f348ab rep stosq"))
    src = bytes(range(200))
    h.mem.write(DATA, src)
    h.cpu.set("rsi", DATA)
    h.cpu.set("rdi", DATA + 0x1000 - 100)  # crosses into the next page
    h.cpu.set("rcx", 200)
    h.cpu.step()
    assert h.mem.read(DATA + 0x1000 - 100, 200) == src
    assert r(h, "rsi") == DATA + 200 and r(h, "rdi") == DATA + 0x1000 + 100
    assert r(h, "rcx") == 0
    h.cpu.set("rdi", DATA)
    h.cpu.set("rcx", 3)
    h.cpu.set("rax", 0x0102030405060708)
    h.cpu.step()
    assert h.mem.read(DATA, 24) == bytes.fromhex("0807060504030201") * 3
    assert r(h, "rdi") == DATA + 24 and r(h, "rcx") == 0


def test_rep_movs_zero_count_and_overlap():
    h = Harness(assemble("f3a4 rep movsb", "f3a4 rep movsb"))
    h.mem.write(DATA, b"ab" + bytes(8))
    h.cpu.set("rcx", 0)
    h.cpu.set("rsi", DATA)
    h.cpu.set("rdi", DATA + 1)
    h.cpu.step()
    assert r(h, "rsi") == DATA and r(h, "rdi") == DATA + 1
    # overlapping forward copy replicates the first byte, element by element
    h.cpu.set("rcx", 6)
    h.cpu.step()
    assert h.mem.read(DATA, 8) == b"aaaaaaa\x00"


def test_movs_std_backwards_and_single():
    h = Harness(assemble("fd std", "f348a5 rep movsq", "fc cld", "48a5 movsq"))
    h.mem.write(DATA, (1).to_bytes(8, "little") + (2).to_bytes(8, "little")
                + (3).to_bytes(8, "little"))
    h.cpu.set("rsi", DATA + 16)
    h.cpu.set("rdi", DATA + 0x110)
    h.cpu.set("rcx", 2)
    h.cpu.step()
    h.cpu.step()
    assert h.mem.read_u64(DATA + 0x110) == 3 and h.mem.read_u64(DATA + 0x108) == 2
    assert h.mem.read_u64(DATA + 0x100) == 0
    assert r(h, "rsi") == DATA and r(h, "rdi") == DATA + 0x100
    h.run()
    assert h.mem.read_u64(DATA + 0x100) == 1
    assert r(h, "rsi") == DATA + 8 and r(h, "rdi") == DATA + 0x108
    assert not h.cpu.rflags & DF


def test_lods_cmps_scas():
    h = Harness(assemble("ac lodsb", "f3a6 repe cmpsb", "f2ae repne scasb"))
    h.mem.write(DATA, b"hello world\x00")
    h.mem.write(DATA + 0x100, b"ello wXrld")
    h.cpu.set("rax", 0xFFFF)
    h.cpu.set("rsi", DATA)
    h.cpu.step()
    assert r(h, "rax") == 0xFF68 and r(h, "rsi") == DATA + 1
    h.cpu.set("rdi", DATA + 0x100)
    h.cpu.set("rcx", 10)
    h.cpu.step()   # stops after the mismatch at index 6 ('o' vs 'X')
    assert r(h, "rcx") == 3
    assert r(h, "rsi") == DATA + 8 and r(h, "rdi") == DATA + 0x107
    assert not h.cpu.rflags & ZF
    # repne scasb for the terminating zero
    h.cpu.set("rdi", DATA)
    h.cpu.set("rcx", M64)
    h.cpu.set("al", 0)
    h.cpu.step()
    assert r(h, "rdi") == DATA + 12
    assert (~r(h, "rcx") & M64) - 1 == 11  # the strlen idiom
    assert h.cpu.rflags & ZF


def test_rep_stos_huge_count_is_resumable():
    h = Harness(assemble("f3aa rep stosb"))
    h.cpu.set("rdi", DATA)
    h.cpu.set("rcx", 0x1000 + 0x800)
    h.cpu.set("al", 0x5A)
    h.cpu.step()
    assert h.mem.read(DATA, 0x1800) == b"\x5a" * 0x1800
    assert h.cpu.rip == CODE + 2


# -- atomics ------------------------------------------------------------------------------

def test_lock_cmpxchg_success_and_failure():
    h = Harness(assemble("f0480fb10b lock cmpxchg [rbx],rcx", "f0480fb10b lock cmpxchg [rbx],rcx"))
    h.mem.write_u64(DATA, 10)
    h.cpu.set("rbx", DATA)
    h.cpu.set("rax", 10)
    h.cpu.set("rcx", 20)
    h.cpu.step()
    assert h.mem.read_u64(DATA) == 20
    assert h.cpu.rflags & ZF
    assert r(h, "rax") == 10
    h.cpu.step()  # rax=10 != 20: fails, loads rax
    assert h.mem.read_u64(DATA) == 20
    assert not h.cpu.rflags & ZF
    assert r(h, "rax") == 20


def test_cmpxchg_register_32bit():
    h = run("0fb1d1 cmpxchg ecx,edx", rax=0xFFFFFFFF00000003, rcx=0xFFFFFFFF00000004, rdx=9)
    assert r(h, "rax") == 4  # failure: eax loaded, zero-extended
    assert r(h, "rcx") == 0xFFFFFFFF00000004


def test_xadd():
    h = Harness(assemble("f0480fc103 lock xadd [rbx],rax", "480fc1d1 xadd rcx,rdx"))
    h.mem.write_u64(DATA, 5)
    h.cpu.set("rbx", DATA)
    h.cpu.set("rax", 3)
    h.cpu.set("rcx", 1)
    h.cpu.set("rdx", 2)
    h.run()
    assert h.mem.read_u64(DATA) == 8 and r(h, "rax") == 5
    assert r(h, "rcx") == 3 and r(h, "rdx") == 1


def test_lock_prefix_accepted_on_rmw():
    h = Harness(assemble("f0480103 lock add [rbx],rax", "f0ff03 lock inc dword ptr [rbx]",
                         "f0480fb303 lock btr [rbx],rax", "f0488703 lock xchg rax,[rbx]"))
    h.mem.write_u64(DATA, 0xF0)
    h.cpu.set("rbx", DATA)
    h.cpu.set("rax", 4)
    h.run()
    assert r(h, "rax") == 0xE5  # 0xF0 + 4 + 1 = 0xF5, btr bit 4 -> 0xE5
    assert h.mem.read_u64(DATA) == 4


# -- conversions, flags register, system instructions ------------------------------------

def test_sign_extension_conversions():
    assert r(run("6698 cbw", rax=0xFFFF_0080), "rax") == 0xFFFF_FF80
    assert r(run("98 cwde", rax=0xFFFF_FFFF_0000_8000), "rax") == 0xFFFF_8000
    assert r(run("4898 cdqe", rax=0x8000_0000), "rax") == 0xFFFF_FFFF_8000_0000
    h = run("6699 cwd", rax=0x8000, rdx=0x1111_1111_1111_1111)
    assert r(h, "rdx") == 0x1111_1111_1111_FFFF
    assert r(run("99 cdq", rax=0x8000_0000, rdx=M64), "rdx") == 0xFFFF_FFFF
    assert r(run("4899 cqo", rax=1 << 63), "rdx") == M64
    assert r(run("4899 cqo", rax=1, rdx=5), "rdx") == 0


def test_pushfq_popfq_cli_sti():
    h = run("fa cli", "9c pushfq", "fb sti", "4883c001 add rax,1", "9d popfq", rax=M64)
    assert not h.cpu.rflags & IF  # popfq restored IF=0
    assert h.cpu.rflags & ZF == 0
    assert h.mem.read_u64(STACK_TOP - 8) & IF == 0
    h = run("6a00 push 0", "9d popfq")
    assert h.cpu.rflags == 0x2
    h = run("68d50f0000 push 0FD5h", "9d popfq")
    assert h.cpu.rflags == 0xFD7


def test_clc_stc_cmc_cld_std_lahf_sahf():
    h = run("f9 stc", "f5 cmc")
    assert not h.cpu.rflags & CF
    h = run("f9 stc", "9f lahf", rax=0)
    assert r(h, "ah") == 0x03 | (h.cpu.rflags & 0xD4)
    h = run("b4d5 mov ah,0D5h", "9e sahf")
    assert h.cpu.rflags & 0xD5 == 0xD5


def test_control_registers_and_cr8_hooks():
    h = Harness(assemble("0f20d8 mov rax,cr3", "440f20c1 mov rcx,cr8", "440f22c2 mov cr8,rdx",
                         "90 nop"))
    writes: list[tuple[int, int]] = []
    h.cpu.cr8_read = lambda: 2
    h.cpu.cr8_write = lambda v: writes.append((v, h.cpu.rip))
    h.cpu.set("rdx", 0xF)
    h.run()
    assert r(h, "rax") == h.mem.cr3
    assert r(h, "rcx") == 2
    assert writes == [(0xF, CODE + 11)]  # rip already advanced when the hook runs


def test_cr8_write_reserved_bits_gp():
    h = Harness(assemble("440f22c2 mov cr8,rdx"))
    h.cpu.set("rdx", 16)
    with pytest.raises(CpuException) as ei:
        h.cpu.step()
    assert ei.value.vector == 13 and h.cpu.rip == CODE


def test_mov_cr3_calls_hook_and_cr0():
    h = Harness(assemble("0f22d8 mov cr3,rax", "0f22c1 mov cr0,rcx", "0f20c2 mov rdx,cr0"))
    seen = []
    h.cpu.cr3_write = seen.append
    h.cpu.set("rax", h.mem.cr3)
    h.cpu.set("rcx", 0x80000011)
    h.run()
    assert seen == [h.mem.cr3] and h.cpu.cr3 == h.mem.cr3
    assert r(h, "rdx") == 0x80000011


def test_rdmsr_wrmsr_hooks_and_gp():
    h = Harness(assemble("0f32 rdmsr", "0f30 wrmsr"))
    h.cpu.set("ecx", 0x1B)
    with pytest.raises(CpuException) as ei:
        h.cpu.step()
    assert ei.value.vector == 13 and ei.value.error_code == 0 and h.cpu.rip == CODE
    store = {0x1B: 0x1122334455667788}
    h.cpu.msr_read = lambda msr: store[msr]
    h.cpu.msr_write = lambda msr, v: store.__setitem__(msr, v)
    h.cpu.step()
    assert r(h, "rax") == 0x55667788 and r(h, "rdx") == 0x11223344
    h.cpu.set("rax", 0xFFFFFFFF_00000001)
    h.cpu.set("rdx", 2)
    h.cpu.step()
    assert store[0x1B] == 0x2_00000001


def test_gs_base_msrs_swapgs_and_gs_prefix():
    h = Harness(assemble("0f30 wrmsr", "0f01f8 swapgs", "65488b042520000000 mov rax,gs:[20h]",
                         "65488b4b08 mov rcx,gs:[rbx+8]"))
    h.cpu.gs_base = 0x1000
    h.cpu.set("ecx", 0xC0000102)  # IA32_KERNEL_GS_BASE
    h.cpu.set("eax", DATA & 0xFFFFFFFF)
    h.cpu.set("edx", DATA >> 32)
    h.mem.write_u64(DATA + 0x20, 0xAAAA)
    h.mem.write_u64(DATA + 0x18, 0xBBBB)
    h.cpu.set("rbx", 0x10)
    h.run()
    assert h.cpu.gs_base == DATA and h.cpu.kernel_gs_base == 0x1000
    assert r(h, "rax") == 0xAAAA
    assert r(h, "rcx") == 0xBBBB


def test_fs_prefix():
    h = Harness(assemble("64488b042510000000 mov rax,fs:[10h]"))
    h.cpu.fs_base = DATA
    h.mem.write_u64(DATA + 0x10, 77)
    h.run()
    assert r(h, "rax") == 77


def test_hlt_raises_halt_after_instruction():
    h = Harness(assemble("f4 hlt"))
    with pytest.raises(Halt) as ei:
        h.cpu.step()
    assert ei.value.vector == -1
    assert isinstance(ei.value, CpuException)
    assert ei.value.rip == CODE + 1 and h.cpu.rip == CODE + 1


def test_int3_and_int_n_report_next_rip():
    h = Harness(assemble("cc int 3", "cd2c int 2Ch"))
    with pytest.raises(CpuException) as ei:
        h.cpu.step()
    assert ei.value.vector == 3 and ei.value.rip == CODE + 1 and h.cpu.rip == CODE + 1
    with pytest.raises(CpuException) as ei:
        h.cpu.step()
    assert ei.value.vector == 0x2C and ei.value.rip == CODE + 3


def test_nops_pause_leave_bswap():
    h = run("90 nop", "0f1f440000 nop dword ptr [rax+rax]", "f390 pause",
            "660f1f840000000000 nop word ptr [rax+rax]",
            "480fc8 bswap rax", "0fcb bswap ebx", rax=0x0102030405060708,
            rbx=0xFFFFFFFF_11223344)
    assert r(h, "rax") == 0x0807060504030201
    assert r(h, "rbx") == 0x44332211
    h = Harness(assemble("c9 leave"))
    h.mem.write_u64(DATA, 0x5555)
    h.cpu.set("rbp", DATA)
    h.run()
    assert r(h, "rbp") == 0x5555 and r(h, "rsp") == DATA + 8


def test_two_cpus_share_code_but_not_state():
    h = Harness(assemble("48ffc0 inc rax", "48ffc0 inc rax"))
    other = Cpu(1, h.cache)
    other.mem = h.mem
    other.rip = CODE
    h.cpu.step()
    h.cpu.step()
    other.step()
    assert h.cpu.regs[0] == 2 and other.regs[0] == 1
    assert other.number == 1


def test_cpu_without_harness():
    from machine.mm.paging import AddressSpace
    from machine.mm.physical import PhysicalMemory

    phys = PhysicalMemory()
    space = AddressSpace(phys)
    space.map_new(0x10000, 0x1000, executable=True)
    space.write(0x10000, assemble("b82a000000 mov eax,2Ah"))
    cpu = Cpu(0, DecodeCache(phys))
    cpu.mem = space
    cpu.rip = 0x10000
    cpu.step()
    assert cpu.regs[0] == 42 and cpu.rip == 0x10005
    assert cpu.cr3 == space.cr3


@pytest.mark.parametrize("size,stos,lods,movs,scas", [
    (1, "aa stosb", "ac lodsb", "a4 movsb", "ae scasb"),
    (2, "66ab stosw", "66ad lodsw", "66a5 movsw", "66af scasw"),
    (4, "ab stosd", "ad lodsd", "a5 movsd", "af scasd"),
    (8, "48ab stosq", "48ad lodsq", "48a5 movsq", "48af scasq"),
])
def test_string_element_sizes(size, stos, lods, movs, scas):
    h = Harness(assemble(stos, lods, movs, scas))
    value = 0x8877665544332211 & ((1 << (8 * size)) - 1)
    h.cpu.set("rax", 0xAAAAAAAA_00000000 | value if size < 8 else value)
    h.cpu.set("rdi", DATA)
    h.cpu.step()  # stos
    assert h.mem.read_int(DATA, size) == value and r(h, "rdi") == DATA + size
    assert h.mem.read(DATA + size, 1) == b"\x00"
    h.cpu.set("rax", M64)
    h.cpu.set("rsi", DATA)
    h.cpu.step()  # lods: 32-bit zero-extends, 8/16-bit merge
    want = {1: M64 & ~0xFF | value, 2: M64 & ~0xFFFF | value, 4: value, 8: value}[size]
    assert r(h, "rax") == want and r(h, "rsi") == DATA + size
    h.cpu.set("rsi", DATA)
    h.cpu.set("rdi", DATA + 0x40)
    h.cpu.step()  # movs
    assert h.mem.read_int(DATA + 0x40, size) == value
    h.cpu.set("rdi", DATA + 0x40)
    h.cpu.step()  # scas: compares the accumulator with [rdi]
    assert h.cpu.rflags & ZF
    assert r(h, "rdi") == DATA + 0x40 + size


def test_pushfq_materialises_pending_flags():
    h = run("4801d8 add rax,rbx", "9c pushfq", rax=M64, rbx=1)
    assert h.mem.read_u64(STACK_TOP - 8) == 0x202 | CF | ZF | PF | AF


def test_rep_movs_within_one_frame_and_across_frames_counts_one_instruction():
    h = Harness(assemble("f348a5 rep movsq"))
    h.mem.write(DATA, bytes(range(256)) * 16)
    h.cpu.set("rsi", DATA)
    h.cpu.set("rdi", DATA + 0x1000)
    h.cpu.set("rcx", 0x200)
    h.cpu.step()
    assert h.mem.read(DATA + 0x1000, 0x1000) == bytes(range(256)) * 16
    assert h.cpu.instructions_retired == 1 and h.cpu.rip == h.end


def test_iretq_pops_interrupt_frame():
    h = Harness(assemble("48cf iretq"))
    frame = [CODE + 0x80, 0x10, 0x0246 | CF, STACK_TOP - 0x400, 0x18]
    sp = STACK_TOP - 0x100
    for i, v in enumerate(frame):
        h.mem.write_u64(sp + 8 * i, v)
    h.cpu.set("rsp", sp)
    h.cpu.rflags = 0x2
    h.cpu.step()
    assert h.cpu.rip == CODE + 0x80
    assert h.cpu.rflags == 0x247 and r(h, "rsp") == STACK_TOP - 0x400


def test_lock_cmpxchg16b():
    h = Harness(assemble("f0480fc70f lock cmpxchg16b [rdi]", "f0480fc70f lock cmpxchg16b [rdi]"))
    h.mem.write(DATA, (1).to_bytes(8, "little") + (2).to_bytes(8, "little"))
    for k, v in dict(rdi=DATA, rax=1, rdx=2, rbx=3, rcx=4).items():
        h.cpu.set(k, v)
    h.cpu.step()
    assert h.mem.read(DATA, 16) == (3).to_bytes(8, "little") + (4).to_bytes(8, "little")
    assert h.cpu.rflags & ZF
    h.cpu.step()  # now rdx:rax (2:1) differs: loads 4:3
    assert not h.cpu.rflags & ZF
    assert (r(h, "rax"), r(h, "rdx")) == (3, 4)
    h = Harness(assemble("f0480fc70f lock cmpxchg16b [rdi]"))
    h.cpu.set("rdi", DATA + 8)
    with pytest.raises(CpuException) as ei:
        h.cpu.step()
    assert ei.value.vector == 13
