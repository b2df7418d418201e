"""String instructions (movs, stos, lods, cmps, scas) with and without rep prefixes.

A rep-prefixed instruction is interruptible, as on hardware: rsi/rdi/rcx are updated as
elements complete, so a fault part-way leaves the completed iterations in place with rip
still on the instruction.  One step executes at most ``REP_CHUNK`` elements and then
returns its own address so that the next step resumes it, which keeps a huge rcx from
stalling the machine.

On pages with data breakpoints (``cpu._dwatch``) elements go one at a time through the
checking accessors, and a hit ends the step after its iteration, as a #DB trap does on
hardware (rip stays on the instruction while iterations remain).
"""

from __future__ import annotations

from machine.cpu.flags import DF, SUB

M64 = 0xFFFFFFFFFFFFFFFF
REP_CHUNK = 1 << 16
_MASK = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF, 8: M64}


def _seg_base(seg: str | None):
    if seg == "gs":
        return lambda cpu: cpu.gs_base
    if seg == "fs":
        return lambda cpu: cpu.fs_base
    return None


def _acc_store(r, size: int, v: int) -> None:
    if size == 8 or size == 4:
        r[0] = v
    elif size == 2:
        r[0] = (r[0] & 0xFFFFFFFFFFFF0000) | v
    else:
        r[0] = (r[0] & 0xFFFFFFFFFFFFFF00) | v


def make_string(op: str, size: int, rep: str | None, seg: str | None, rip: int, nxt: int):
    """A compiled string instruction.  op: movs stos lods cmps scas; rep: rep repe repne."""
    fn = _make_string(op, size, rep, seg, rip, nxt)
    # A resumed rep instruction is not fetched anew: instruction breakpoints do not hit it.
    fn.rep_string = rep is not None  # type: ignore[attr-defined]
    return fn


def _make_string(op: str, size: int, rep: str | None, seg: str | None, rip: int, nxt: int):
    segf = _seg_base(seg)
    mask = _MASK[size]
    sb = 1 << (size * 8 - 1)

    if op == "movs":
        def movs(cpu):
            r = cpu.regs
            d = -size if cpu._fl & DF else size
            n = r[1] if rep else 1
            if n == 0:
                return nxt
            base = segf(cpu) if segf else 0
            left = REP_CHUNK
            while n and left:
                s = (r[6] + base) & M64
                t = r[7]
                if d > 0 and n > 1 and not (cpu._dwatch and (
                        s >> 12 in cpu._dwatch or t >> 12 in cpu._dwatch)):
                    so = s & 4095
                    to = t & 4095
                    k = min(n, left, (4096 - so) // size, (4096 - to) // size)
                    if k > 1:
                        sf = cpu._rframe(s)
                        tf = cpu._wframe(t)
                        nb = k * size
                        if tf is not None and not (sf is tf and so < to < so + nb):
                            tf[to:to + nb] = sf[so:so + nb]
                            r[6] = (r[6] + nb) & M64
                            r[7] = (t + nb) & M64
                            n -= k
                            left -= k
                            if rep:
                                r[1] = n
                            continue
                v = cpu._rd(s, size)
                cpu._wr(t, size, v)
                r[6] = (r[6] + d) & M64
                r[7] = (t + d) & M64
                n -= 1
                left -= 1
                if rep:
                    r[1] = n
                if cpu._dhits:
                    break
            return nxt if n == 0 else rip
        return movs

    if op == "stos":
        def stos(cpu):
            r = cpu.regs
            d = -size if cpu._fl & DF else size
            n = r[1] if rep else 1
            if n == 0:
                return nxt
            v = r[0] & mask
            left = REP_CHUNK
            while n and left:
                t = r[7]
                if d > 0 and n > 1 and not (cpu._dwatch and t >> 12 in cpu._dwatch):
                    to = t & 4095
                    k = min(n, left, (4096 - to) // size)
                    if k > 1:
                        tf = cpu._wframe(t)
                        if tf is not None:
                            nb = k * size
                            tf[to:to + nb] = v.to_bytes(size, "little") * k
                            r[7] = (t + nb) & M64
                            n -= k
                            left -= k
                            if rep:
                                r[1] = n
                            continue
                cpu._wr(t, size, v)
                r[7] = (t + d) & M64
                n -= 1
                left -= 1
                if rep:
                    r[1] = n
                if cpu._dhits:
                    break
            return nxt if n == 0 else rip
        return stos

    if op == "lods":
        def lods(cpu):
            r = cpu.regs
            d = -size if cpu._fl & DF else size
            n = r[1] if rep else 1
            if n == 0:
                return nxt
            base = segf(cpu) if segf else 0
            left = REP_CHUNK
            while n and left:
                v = cpu._rd((r[6] + base) & M64, size)
                _acc_store(r, size, v)
                r[6] = (r[6] + d) & M64
                n -= 1
                left -= 1
                if rep:
                    r[1] = n
                if cpu._dhits:
                    break
            return nxt if n == 0 else rip
        return lods

    if op in ("cmps", "scas"):
        is_cmps = op == "cmps"

        def cmps(cpu):
            r = cpu.regs
            d = -size if cpu._fl & DF else size
            n = r[1] if rep else 1
            if n == 0:
                return nxt
            base = segf(cpu) if segf else 0
            left = REP_CHUNK
            while n and left:
                if is_cmps:
                    a = cpu._rd((r[6] + base) & M64, size)
                    b = cpu._rd(r[7], size)
                    r[6] = (r[6] + d) & M64
                else:
                    a = r[0] & mask
                    b = cpu._rd(r[7], size)
                r[7] = (r[7] + d) & M64
                cpu._lz = (SUB, (a - b) & mask, a, b, sb)
                n -= 1
                left -= 1
                if rep:
                    r[1] = n
                    if rep == "repe" and a != b:
                        return nxt
                    if rep == "repne" and a == b:
                        return nxt
                if cpu._dhits:
                    break
            return nxt if n == 0 else rip
        return cmps

    raise ValueError(op)
