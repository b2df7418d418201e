"""Arithmetic flags: edge cases and property tests against a reference model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machine.cpu.harness import CODE, Harness, assemble

CF, PF, AF, ZF, SF, OF = 0x1, 0x4, 0x10, 0x40, 0x80, 0x800
ARITH = CF | PF | AF | ZF | SF | OF
M64 = (1 << 64) - 1


def flags_after(*lines: str, flags: int = 0x202, **regs: int) -> tuple[Harness, int]:
    h = Harness(assemble(*lines))
    h.cpu.rflags = flags
    for name, value in regs.items():
        h.cpu.set(name, value)
    h.run()
    return h, h.cpu.rflags & ARITH


def test_add_carry_and_overflow():
    _, f = flags_after("4801d8 add rax,rbx", rax=M64, rbx=1)
    assert f == CF | ZF | PF | AF
    _, f = flags_after("4801d8 add rax,rbx", rax=(1 << 63) - 1, rbx=1)
    assert f == OF | SF | PF | AF
    _, f = flags_after("00d8 add al,bl", rax=0x80, rbx=0x80)
    assert f == CF | OF | ZF | PF
    _, f = flags_after("6601d8 add ax,bx", rax=0x7FFF, rbx=0x0001)
    assert f == OF | SF | PF | AF


def test_sub_borrow_and_overflow():
    _, f = flags_after("4829d8 sub rax,rbx", rax=0, rbx=1)
    assert f == CF | SF | PF | AF
    _, f = flags_after("29d8 sub eax,ebx", rax=0x80000000, rbx=1)
    assert f == OF | AF | PF
    _, f = flags_after("4839d8 cmp rax,rbx", rax=5, rbx=5)
    assert f == ZF | PF


def test_inc_dec_preserve_cf():
    _, f = flags_after("f9 stc", "48ffc0 inc rax", rax=(1 << 63) - 1)
    assert f == CF | OF | SF | AF | PF
    _, f = flags_after("f8 clc", "48ffc0 inc rax", rax=M64)
    assert f == ZF | AF | PF  # no carry out of inc
    _, f = flags_after("f9 stc", "fec8 dec al", rax=0x80)
    assert f == CF | OF | AF
    # inc after a carry-producing add: CF still from the add
    _, f = flags_after("4801d8 add rax,rbx", "48ffc1 inc rcx", "48ffc1 inc rcx",
                       rax=M64, rbx=1, rcx=5)
    assert f & CF


def test_neg():
    _, f = flags_after("f9 stc", "48f7d8 neg rax", rax=0)
    assert f == ZF | PF  # neg 0 clears CF
    h, f = flags_after("48f7d8 neg rax", rax=1 << 63)
    assert f == CF | OF | SF | PF and h.cpu.regs[0] == 1 << 63
    _, f = flags_after("f6d8 neg al", rax=1)
    assert f == CF | SF | AF | PF


def test_logic_clears_cf_of():
    _, f = flags_after("f9 stc", "4821d8 and rax,rbx", rax=0xF0, rbx=0x0F)
    assert f == ZF | PF
    _, f = flags_after("4883c801 or rax,1", rax=1 << 63)
    assert f == SF


def test_shift_by_zero_leaves_flags():
    for line in ("48c1e000 shl rax,0", "48d3e0 shl rax,cl", "48d3f8 sar rax,cl",
                 "48d3c0 rol rax,cl", "48d3e8 shr rax,cl"):
        h, f = flags_after("4839d8 cmp rax,rbx", line, rax=1, rbx=2, rcx=0x40)
        assert f == CF | SF | PF | AF, line  # from the cmp
        assert h.cpu.regs[0] == 1
    h, _ = flags_after("d3e0 shl eax,cl", rax=0xFFFFFFFF00000001, rcx=0)
    assert h.cpu.regs[0] == 1  # a 32-bit destination is still written (zero-extended)


def test_shift_by_one_of_rule():
    _, f = flags_after("48d1e0 shl rax,1", rax=0x4000000000000000)
    assert f & (OF | CF) == OF            # msb(result)=1 xor CF=0
    _, f = flags_after("48d1e0 shl rax,1", rax=0xC000000000000000)
    assert f & (OF | CF) == CF            # msb 1 xor CF 1 = 0
    _, f = flags_after("48d1e8 shr rax,1", rax=0x8000000000000001)
    assert f & (OF | CF) == OF | CF       # OF = msb of the original
    _, f = flags_after("48d1f8 sar rax,1", rax=0x8000000000000001)
    assert f & (OF | CF | SF) == CF | SF  # OF = 0
    _, f = flags_after("d0c0 rol al,1", rax=0x80)
    assert f & (OF | CF) == OF | CF
    _, f = flags_after("d0c8 ror al,1", rax=0x01)
    assert f & (OF | CF) == OF | CF


def test_rotate_leaves_szp():
    _, f = flags_after("4839d8 cmp rax,rbx", "48c1c104 rol rcx,4", rax=1, rbx=1, rcx=1)
    assert f & (ZF | PF) == ZF | PF


def test_imul_mul_overflow_flags():
    _, f = flags_after("480fafc3 imul rax,rbx", rax=1 << 32, rbx=1 << 31)
    assert f & (CF | OF) == CF | OF
    _, f = flags_after("480fafc3 imul rax,rbx", rax=(-(1 << 31)) & M64, rbx=1 << 32)
    assert f & (CF | OF) == 0  # -2^63 fits
    _, f = flags_after("6bc3ff imul eax,ebx,0FFFFFFFFh", rax=0, rbx=0x80000000)
    assert f & (CF | OF) == CF | OF
    _, f = flags_after("48f7e3 mul rbx", rax=1 << 32, rbx=1 << 31)
    assert f & (CF | OF) == 0


def test_bt_sets_only_cf():
    _, f = flags_after("4839d8 cmp rax,rbx", "480fbae100 bt rcx,0", rax=5, rbx=5, rcx=1)
    assert f == CF | ZF | PF


def test_adc_sbb_use_carry():
    h, f = flags_after("f9 stc", "4811d8 adc rax,rbx", rax=M64, rbx=0)
    assert h.cpu.regs[0] == 0 and f & (CF | ZF) == CF | ZF
    h, f = flags_after("f9 stc", "4819d8 sbb rax,rbx", rax=0, rbx=M64)
    assert h.cpu.regs[0] == 0 and f & (CF | ZF) == CF | ZF
    h, f = flags_after("f9 stc", "10d8 adc al,bl", rax=0x7F, rbx=0)
    assert h.cpu.regs[0] == 0x80 and f & (OF | SF | AF) == OF | SF | AF


def test_rflags_roundtrip_with_pending_lazy_flags():
    h, _ = flags_after("4801d8 add rax,rbx", rax=M64, rbx=1)
    f = h.cpu.rflags
    h.cpu.rflags = f ^ CF
    assert h.cpu.rflags == f ^ CF


# -- property tests ----------------------------------------------------------------------

SIZES = {8: ("00d8", "28d8", "20d8", "30d8", "d2e0"),
         16: ("6601d8", "6629d8", "6621d8", "6631d8", "66d3e0"),
         32: ("01d8", "29d8", "21d8", "31d8", "d3e0"),
         64: ("4801d8", "4829d8", "4821d8", "4831d8", "48d3e0")}
OPS = ("add", "sub", "and", "xor", "shl")

_harnesses: dict[tuple[str, int], Harness] = {}


def execute(op: str, bits: int, a: int, b: int, start_flags: int) -> tuple[int, int]:
    key = (op, bits)
    h = _harnesses.get(key)
    if h is None:
        h = _harnesses[key] = Harness(bytes.fromhex(SIZES[bits][OPS.index(op)]))
    cpu = h.cpu
    cpu.rip = CODE
    cpu.rflags = 0x202 | start_flags
    cpu.regs[0] = a | 0x5A5A5A5A00000000 * (bits < 64)  # garbage above the operand
    cpu.regs[3] = b
    cpu.regs[1] = b
    cpu.step()
    return cpu.regs[0], cpu.rflags & ARITH


def signed(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) else v


def szp(res: int, bits: int) -> int:
    f = 0
    if res == 0:
        f |= ZF
    if res >> (bits - 1):
        f |= SF
    if bin(res & 0xFF).count("1") % 2 == 0:
        f |= PF
    return f


def reference(op: str, bits: int, a: int, b: int, start: int) -> tuple[int, int, int]:
    """(result, flags, mask of flags that are defined)."""
    mask = (1 << bits) - 1
    lo, hi = -(1 << (bits - 1)), 1 << (bits - 1)
    if op == "add":
        res = (a + b) & mask
        f = szp(res, bits)
        f |= CF * (a + b > mask)
        f |= OF * (not lo <= signed(a, bits) + signed(b, bits) < hi)
        f |= AF * ((a & 0xF) + (b & 0xF) > 0xF)
        return res, f, ARITH
    if op == "sub":
        res = (a - b) & mask
        f = szp(res, bits)
        f |= CF * (a < b)
        f |= OF * (not lo <= signed(a, bits) - signed(b, bits) < hi)
        f |= AF * ((a & 0xF) < (b & 0xF))
        return res, f, ARITH
    if op in ("and", "xor"):
        res = a & b if op == "and" else a ^ b
        return res, szp(res, bits), ARITH & ~AF  # AF undefined
    # shl by cl
    count = b & (0x3F if bits == 64 else 0x1F)
    if count == 0:
        return a, start, ARITH
    res = (a << count) & mask
    cf = (a >> (bits - count)) & 1 if count <= bits else 0
    f = szp(res, bits) | CF * cf
    defined = CF | ZF | SF | PF if count <= bits else ZF | SF | PF
    if count == 1:
        f |= OF * ((res >> (bits - 1)) ^ cf)
        defined |= OF
    return res, f, defined


def operands(bits: int):
    edge = st.sampled_from([0, 1, 2, 0x7F, 0x80, 0xFF, (1 << (bits - 1)) - 1, 1 << (bits - 1),
                            (1 << bits) - 1, (1 << bits) - 2, 0xF, 0x10])
    anyv = st.integers(0, (1 << bits) - 1)
    return st.one_of(edge.map(lambda v: v & ((1 << bits) - 1)), anyv)


@st.composite
def cases(draw):
    op = draw(st.sampled_from(OPS))
    bits = draw(st.sampled_from([8, 16, 32, 64]))
    a = draw(operands(bits))
    if op == "shl":
        b = draw(st.one_of(st.integers(0, 70), st.sampled_from([0, 1, 32, 63, 64, 65])))
    else:
        b = draw(operands(bits))
    start = draw(st.sampled_from([0, ARITH, CF, ZF | OF, AF | PF]))
    return op, bits, a, b, start


@settings(max_examples=1500, deadline=None)
@given(cases())
def test_flags_match_reference(case):
    op, bits, a, b, start = case
    got_val, got_flags = execute(op, bits, a, b, start)
    want_val, want_flags, defined = reference(op, bits, a, b, start)
    mask = (1 << bits) - 1
    assert got_val & mask == want_val
    if bits == 32:
        assert got_val == want_val  # zero-extended
    elif bits < 32:
        assert got_val >> bits == (0x5A5A5A5A00000000 | a) >> bits  # merged
    assert got_flags & defined == want_flags & defined, (hex(got_flags), hex(want_flags))


@settings(max_examples=400, deadline=None)
@given(st.integers(0, M64), st.integers(0, M64), st.sampled_from(list(range(16))))
def test_jcc_agrees_with_materialised_flags(a, b, cc):
    # setcc evaluated through the lazy fast paths vs. computed from rflags afterwards
    h = _harnesses.get(("cc", cc))
    if h is None:
        h = _harnesses[("cc", cc)] = Harness(assemble("4839d8 cmp rax,rbx",
                                                      f"0f{0x90 + cc:02x}c1"))
    h.cpu.rip = CODE
    h.cpu.regs[0], h.cpu.regs[3] = a, b
    h.cpu.step()
    h.cpu.step()
    f = h.cpu.rflags
    c, z, s, o, p = bool(f & CF), bool(f & ZF), bool(f & SF), bool(f & OF), bool(f & PF)
    want = [o, not o, c, not c, z, not z, c or z, not (c or z), s, not s, p, not p,
            s != o, s == o, z or s != o, not z and s == o][cc]
    assert h.cpu.regs[1] & 0xFF == int(want)
    assert c == (a < b) and z == (a == b)


@pytest.mark.parametrize("bits", [8, 16, 32, 64])
def test_reference_model_sanity(bits):
    # The reference itself: add then sub restores the value with the expected CF.
    res, f, _ = reference("add", bits, (1 << bits) - 1, 1, 0)
    assert res == 0 and f & CF and f & ZF
