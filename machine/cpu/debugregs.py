"""Debug registers DR0-DR3, DR6 and DR7 with the x64 encoding, and what the CPU derives
from them: which pages hold watched data and which instruction addresses are watched.

DR7 per slot n: enable Ln at bit 2n (Gn at 2n+1), R/Wn at bits 16+4n (00 execute, 01 write,
11 read/write; 10 is I/O, unused in 64-bit kernels), LENn at bits 18+4n (00 one byte,
01 two, 11 four, 10 eight).  Bit 10 of DR7 and bits 4-11 and 16-31 of DR6 read as 1.
DR6 Bn (bit n) is set when slot n's condition is met; the CPU never clears it.
"""

from __future__ import annotations

from dataclasses import dataclass

DR6_INIT = 0xFFFF0FF0
DR7_INIT = 0x400
DR6_B_MASK = 0xF
RF = 0x10000  # RFLAGS.RF: suppresses instruction breakpoints for one instruction
SLOTS = 4

RW_EXECUTE, RW_WRITE, RW_IO, RW_READWRITE = 0, 1, 2, 3
LEN_FIELD = {1: 0b00, 2: 0b01, 8: 0b10, 4: 0b11}
FIELD_LEN = {v: k for k, v in LEN_FIELD.items()}


@dataclass(frozen=True)
class Watch:
    """One enabled slot as the CPU checks it."""

    slot: int
    address: int
    size: int
    rw: int  # RW_EXECUTE / RW_WRITE / RW_READWRITE


def encode_dr7(slots: list[tuple[int, int] | None]) -> int:
    """DR7 for up to four slots, each None or (rw, size); enabled with its local bit."""
    dr7 = DR7_INIT
    for n, slot in enumerate(slots):
        if slot is None:
            continue
        rw, size = slot
        dr7 |= 1 << (2 * n)
        dr7 |= rw << (16 + 4 * n)
        dr7 |= LEN_FIELD[size] << (18 + 4 * n)
    return dr7


def decode_watches(dr: list[int]) -> list[Watch]:
    """The enabled slots of dr[0..3] under dr[7] (local or global enable)."""
    dr7 = dr[7]
    out = []
    for n in range(SLOTS):
        if not dr7 >> (2 * n) & 3:
            continue
        rw = dr7 >> (16 + 4 * n) & 3
        if rw == RW_IO:
            continue  # I/O breakpoints need CR4.DE and port accesses: none here
        size = 1 if rw == RW_EXECUTE else FIELD_LEN[dr7 >> (18 + 4 * n) & 3]
        # The CPU ignores the low address bits a length covers (addresses are aligned).
        out.append(Watch(n, dr[n] & ~(size - 1), size, rw))
    return out
