"""kd's number formats, shared by every command."""

from __future__ import annotations

MASK64 = 0xFFFFFFFFFFFFFFFF


def addr(value: int) -> str:
    """Engine format: two 8-digit halves joined by a backtick (`fffff805`4d400000`)."""
    value &= MASK64
    return f"{value >> 32:08x}`{value & 0xFFFFFFFF:08x}"


def hex16(value: int) -> str:
    """Extension format: plain 16 hex digits (`ffff9189527e9080`)."""
    return f"{value & MASK64:016x}"


def signed64(value: int) -> int:
    value &= MASK64
    return value - (1 << 64) if value >> 63 else value


def masm_hex(value: int) -> str:
    """A MASM immediate as the disassembler prints it: `10h`, `0F0h`, `0`."""
    if value < 10:
        return f"{value:X}"
    text = f"{value:X}h"
    return "0" + text if text[0] in "ABCDEF" else text
