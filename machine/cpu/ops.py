"""Semantics of the less frequent instructions, called from compiled code.

Every helper computes its flags eagerly (materialising the lazy record first so that the
flags it leaves alone keep their values).  ``sb`` is the sign bit of the operand size.
"""

from __future__ import annotations

from machine.cpu.errors import CpuException
from machine.cpu.flags import (
    ARITH_NOT,
    CF,
    OF,
    ZF,
    flags_now,
    lazy_cf,
    szp,
)

_CF_OF_NOT = ~(CF | OF)


def cf_now(cpu) -> int:
    lz = cpu._lz
    return cpu._fl & CF if lz is None else lazy_cf(cpu, lz)


# -- shifts (n is the masked, non-zero count) ----------------------------------------

def shl(cpu, a: int, n: int, sb: int) -> int:
    mask = (sb << 1) - 1
    full = a << n
    res = full & mask
    cf = (full >> sb.bit_length()) & 1
    f = szp(res, sb) | cf
    if bool(res & sb) != bool(cf):
        f |= OF
    cpu._fl = (flags_now(cpu) & ARITH_NOT) | f
    return res


def shr(cpu, a: int, n: int, sb: int) -> int:
    res = a >> n
    f = szp(res, sb) | ((a >> (n - 1)) & 1)
    if a & sb:
        f |= OF
    cpu._fl = (flags_now(cpu) & ARITH_NOT) | f
    return res


def sar(cpu, a: int, n: int, sb: int) -> int:
    s = a - (sb << 1) if a & sb else a
    res = (s >> n) & ((sb << 1) - 1)
    f = szp(res, sb) | ((s >> (n - 1)) & 1)
    cpu._fl = (flags_now(cpu) & ARITH_NOT) | f
    return res


def _rotated(cpu, res: int, cf: int, of: bool) -> int:
    """Rotates change CF and OF only."""
    cpu._fl = (flags_now(cpu) & _CF_OF_NOT) | cf | (OF if of else 0)
    return res


def rol(cpu, a: int, n: int, sb: int) -> int:
    bits = sb.bit_length()
    r = n % bits
    res = ((a << r) | (a >> (bits - r))) & ((sb << 1) - 1) if r else a
    return _rotated(cpu, res, res & 1, bool(res & sb) != bool(res & 1))


def ror(cpu, a: int, n: int, sb: int) -> int:
    bits = sb.bit_length()
    r = n % bits
    res = ((a >> r) | (a << (bits - r))) & ((sb << 1) - 1) if r else a
    return _rotated(cpu, res, 1 if res & sb else 0, bool(res & sb) != bool(res & (sb >> 1)))


def rcl(cpu, a: int, n: int, sb: int) -> int:
    # A masked count that is a multiple of the width (bits + 1) leaves CF:a unchanged;
    # OF is still defined from it.
    bits = sb.bit_length()
    w = bits + 1
    r = n % w
    v = (cf_now(cpu) << bits) | a
    v = ((v << r) | (v >> (w - r))) & ((1 << w) - 1)
    res = v & ((sb << 1) - 1)
    cf = v >> bits
    return _rotated(cpu, res, cf, bool(res & sb) != bool(cf))


def rcr(cpu, a: int, n: int, sb: int) -> int:
    bits = sb.bit_length()
    w = bits + 1
    r = n % w
    v = (cf_now(cpu) << bits) | a
    v = ((v >> r) | (v << (w - r))) & ((1 << w) - 1)
    res = v & ((sb << 1) - 1)
    return _rotated(cpu, res, v >> bits, bool(res & sb) != bool(res & (sb >> 1)))


SHIFTS = {"shl": shl, "sal": shl, "shr": shr, "sar": sar, "rol": rol, "ror": ror,
          "rcl": rcl, "rcr": rcr}


# -- multiply / divide -----------------------------------------------------------------

def _signed(v: int, sb: int) -> int:
    return v - (sb << 1) if v & sb else v


def mul(cpu, a: int, b: int, sb: int) -> tuple[int, int]:
    """Unsigned widening multiply: (low half, high half)."""
    p = a * b
    mask = (sb << 1) - 1
    lo = p & mask
    hi = p >> sb.bit_length()
    f = szp(lo, sb)
    if hi:
        f |= CF | OF
    cpu._fl = (flags_now(cpu) & ARITH_NOT) | f
    return lo, hi


def imul_wide(cpu, a: int, b: int, sb: int) -> tuple[int, int]:
    """Signed widening multiply: (low half, high half), both unsigned."""
    p = _signed(a, sb) * _signed(b, sb)
    mask = (sb << 1) - 1
    lo = p & mask
    hi = (p >> sb.bit_length()) & mask
    f = szp(lo, sb)
    if p != _signed(lo, sb):
        f |= CF | OF
    cpu._fl = (flags_now(cpu) & ARITH_NOT) | f
    return lo, hi


def imul_trunc(cpu, a: int, b: int, sb: int) -> int:
    """Two/three-operand imul: the truncated product; CF=OF=1 if it did not fit."""
    return imul_wide(cpu, a, b, sb)[0]


def div(cpu, hi: int, lo: int, d: int, sb: int) -> tuple[int, int]:
    """Unsigned divide of hi:lo by d: (quotient, remainder); #DE on zero or overflow."""
    if d == 0:
        raise CpuException(0)
    n = (hi << sb.bit_length()) | lo
    q, r = divmod(n, d)
    if q > (sb << 1) - 1:
        raise CpuException(0)
    return q, r


def idiv(cpu, hi: int, lo: int, d: int, sb: int) -> tuple[int, int]:
    """Signed divide of hi:lo by d, truncating toward zero: (quotient, remainder)."""
    if d == 0:
        raise CpuException(0)
    bits = sb.bit_length()
    n = _signed((hi << bits) | lo, 1 << (2 * bits - 1))
    dv = _signed(d, sb)
    q = abs(n) // abs(dv)
    if (n < 0) != (dv < 0):
        q = -q
    r = n - q * dv
    if not -sb <= q < sb:
        raise CpuException(0)
    mask = (sb << 1) - 1
    return q & mask, r & mask


# -- misc --------------------------------------------------------------------------------

def bsf(cpu, v: int, old: int) -> int:
    """Index of the lowest set bit; a zero source sets ZF and keeps the destination."""
    cpu._fl = flags_now(cpu) & ~ZF | (0 if v else ZF)
    return (v & -v).bit_length() - 1 if v else old


def bsr(cpu, v: int, old: int) -> int:
    """Index of the highest set bit; a zero source sets ZF and keeps the destination."""
    cpu._fl = flags_now(cpu) & ~ZF | (0 if v else ZF)
    return v.bit_length() - 1 if v else old


__all__ = ["SHIFTS", "bsf", "bsr", "cf_now", "div", "idiv", "imul_trunc",
           "imul_wide", "mul"]
