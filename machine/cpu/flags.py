"""RFLAGS: bit definitions, lazily evaluated arithmetic flags and condition codes.

The CPU keeps ``_fl`` (an rflags value) and ``_lz`` (``None`` or a lazy record of the last
flag-setting arithmetic operation).  While ``_lz`` is not ``None`` the six arithmetic flags
(CF PF AF ZF SF OF) of ``_fl`` are stale and are derived from the record instead; every
other bit of ``_fl`` (IF, DF, ...) is always current.

A lazy record is a tuple ``(kind, res, a, b, sb)``: ``res`` is the result masked to the
operand size, ``a`` and ``b`` the operands and ``sb`` the sign bit of the operand size.
For INC/DEC the ``b`` slot holds where CF comes from: ``None`` (CF of ``_fl``) or an
earlier non-INC/DEC record.
"""

from __future__ import annotations

CF = 0x1
PF = 0x4
AF = 0x10
ZF = 0x40
SF = 0x80
TF = 0x100
IF = 0x200
DF = 0x400
OF = 0x800
ARITH = CF | PF | AF | ZF | SF | OF
ARITH_NOT = ~ARITH
# Bits popfq may change in ring 0 (CF PF AF ZF SF TF IF DF OF IOPL NT AC ID).
POPF_MASK = 0x247FD5
# pushfq stores rflags with RF and VM clear.
PUSHF_MASK = 0xFCFFFF
RFLAGS_FIXED = 0x2

# Lazy record kinds.
ADD, ADC, SUB, SBB, LOGIC, INC, DEC = range(7)

PARITY = bytes(PF if bin(i).count("1") % 2 == 0 else 0 for i in range(256))


def lazy_cf(cpu, lz) -> int:
    k = lz[0]
    if k == SUB:
        return int(lz[2] < lz[3])
    if k == ADD:
        return int(lz[1] < lz[2])
    if k == LOGIC:
        return 0
    if k >= INC:
        src = lz[3]
        return cpu._fl & CF if src is None else lazy_cf(cpu, src)
    if k == ADC:
        return int(lz[1] <= lz[2])
    return int(lz[2] <= lz[3])  # SBB


def lazy_bits(cpu, lz) -> int:
    """The six arithmetic flags described by a lazy record."""
    k, res, a, b, sb = lz
    f = PARITY[res & 0xFF]
    if res == 0:
        f |= ZF
    if res & sb:
        f |= SF
    if k == LOGIC:
        return f
    if k <= ADC:
        if res < a or (k == ADC and res == a):
            f |= CF
        if (a ^ res) & (b ^ res) & sb:
            f |= OF
        return f | ((a ^ b ^ res) & AF)
    if k <= SBB:
        if a < b or (k == SBB and a == b):
            f |= CF
        if (a ^ b) & (a ^ res) & sb:
            f |= OF
        return f | ((a ^ b ^ res) & AF)
    # INC / DEC
    f |= (cpu._fl & CF) if b is None else lazy_cf(cpu, b)
    if k == INC:
        if res == sb:
            f |= OF
        if res & 0xF == 0:
            f |= AF
    else:
        if res == sb - 1:
            f |= OF
        if res & 0xF == 0xF:
            f |= AF
    return f


def flags_now(cpu) -> int:
    """Current rflags, materialising any lazy record."""
    lz = cpu._lz
    if lz is None:
        return cpu._fl
    f = (cpu._fl & ARITH_NOT) | lazy_bits(cpu, lz)
    cpu._fl = f
    cpu._lz = None
    return f


def set_arith(cpu, mask: int, bits: int) -> None:
    """Set the flags in ``mask`` to ``bits``, leaving the other flags as they are."""
    cpu._fl = (flags_now(cpu) & ~mask) | bits


def set_cf(cpu, c: int) -> None:
    cpu._fl = (flags_now(cpu) & ~CF) | c


def szp(res: int, sb: int) -> int:
    """SF, ZF and PF of a result."""
    f = PARITY[res & 0xFF]
    if res == 0:
        f |= ZF
    if res & sb:
        f |= SF
    return f


# -- condition codes (x86 order: o no b ae e ne be a s ns p np l ge le g) ---------------

def _get(cpu) -> int:
    lz = cpu._lz
    return cpu._fl if lz is None else lazy_bits(cpu, lz)


def c_o(cpu) -> bool:
    return bool(_get(cpu) & OF)


def c_no(cpu) -> bool:
    return not _get(cpu) & OF


def c_b(cpu) -> bool:
    lz = cpu._lz
    if lz is None:
        return bool(cpu._fl & CF)
    return bool(lazy_cf(cpu, lz))


def c_ae(cpu) -> bool:
    return not c_b(cpu)


def c_e(cpu) -> bool:
    lz = cpu._lz
    if lz is None:
        return bool(cpu._fl & ZF)
    return lz[1] == 0


def c_ne(cpu) -> bool:
    lz = cpu._lz
    if lz is None:
        return not cpu._fl & ZF
    return lz[1] != 0


def c_be(cpu) -> bool:
    lz = cpu._lz
    if lz is None:
        return bool(cpu._fl & (CF | ZF))
    k = lz[0]
    if k == SUB:
        return lz[2] <= lz[3]
    if k == LOGIC:
        return lz[1] == 0
    return lz[1] == 0 or bool(lazy_cf(cpu, lz))


def c_a(cpu) -> bool:
    return not c_be(cpu)


def c_s(cpu) -> bool:
    lz = cpu._lz
    if lz is None:
        return bool(cpu._fl & SF)
    return bool(lz[1] & lz[4])


def c_ns(cpu) -> bool:
    return not c_s(cpu)


def c_p(cpu) -> bool:
    lz = cpu._lz
    if lz is None:
        return bool(cpu._fl & PF)
    return bool(PARITY[lz[1] & 0xFF])


def c_np(cpu) -> bool:
    return not c_p(cpu)


def c_l(cpu) -> bool:
    lz = cpu._lz
    if lz is None:
        f = cpu._fl
    else:
        k = lz[0]
        if k == SUB:
            sb = lz[4]
            return (lz[2] ^ sb) < (lz[3] ^ sb)
        if k == LOGIC:
            return bool(lz[1] & lz[4])
        f = lazy_bits(cpu, lz)
    return not (f & SF) != (not f & OF)


def c_ge(cpu) -> bool:
    return not c_l(cpu)


def c_le(cpu) -> bool:
    lz = cpu._lz
    if lz is None:
        f = cpu._fl
    else:
        k = lz[0]
        if k == SUB:
            sb = lz[4]
            return (lz[2] ^ sb) <= (lz[3] ^ sb)
        if k == LOGIC:
            return lz[1] == 0 or bool(lz[1] & lz[4])
        f = lazy_bits(cpu, lz)
    return bool(f & ZF) or (not (f & SF) != (not f & OF))


def c_g(cpu) -> bool:
    return not c_le(cpu)


CONDITIONS = (c_o, c_no, c_b, c_ae, c_e, c_ne, c_be, c_a,
              c_s, c_ns, c_p, c_np, c_l, c_ge, c_le, c_g)
CC_NAMES = ("o", "no", "b", "ae", "e", "ne", "be", "a",
            "s", "ns", "p", "np", "l", "ge", "le", "g")
