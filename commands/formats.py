"""`.formats expression`: one value in every format kd shows.

Time is shown in UTC so that output does not depend on the host: a value that fits in 32
bits is read as a C time_t (seconds since 1970), a larger one as a FILETIME (100 ns
units since 1601); a FILETIME with the top bit set is invalid, as kd says.
"""

from __future__ import annotations

import datetime
import math
import re
import struct

from commands.errors import KdMissingExpressionError
from commands.fmt import addr, signed64
from commands.registry import Result, command

MASK64 = 0xFFFFFFFFFFFFFFFF
FILETIME_EPOCH = datetime.datetime(1601, 1, 1, tzinfo=datetime.UTC)
UNIX_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def _nan(bits: int, width: int) -> str:
    """The C runtime's NaN spellings: the quiet NaN with no payload and the sign set is
    the "indeterminate" one, `-nan(ind)`; a signalling NaN is `nan(snan)`."""
    mantissa_bits = 23 if width == 32 else 52
    sign = "-" if bits >> (width - 1) else ""
    mantissa = bits & ((1 << mantissa_bits) - 1)
    quiet = mantissa >> (mantissa_bits - 1)
    if not quiet:
        return f"{sign}nan(snan)"
    if sign and mantissa == 1 << (mantissa_bits - 1):
        return "-nan(ind)"
    return f"{sign}nan"


def c_float(value: float, bits: int = 0, width: int = 64) -> str:
    """printf("%g") as the Windows C runtime prints it: a 3-digit exponent."""
    if math.isnan(value):
        return _nan(bits, width)
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = f"{value:g}"
    return re.sub(r"e([+-])(\d+)$", lambda m: f"e{m.group(1)}{int(m.group(2)):03d}", text)


def _ctime(moment: datetime.datetime, millis: bool) -> str:
    day = f"{moment.day:2d}"
    clock = moment.strftime("%H:%M:%S")
    if millis:
        clock += f".{moment.microsecond // 1000:03d}"
    return f"{moment.strftime('%a %b')} {day} {clock} {moment.year}"


def time_text(value: int) -> str:
    if value <= 0xFFFFFFFF:
        return _ctime(UNIX_EPOCH + datetime.timedelta(seconds=value), False)
    if value >> 63:
        return "***** Invalid FILETIME"
    try:
        moment = FILETIME_EPOCH + datetime.timedelta(microseconds=value // 10)
    except OverflowError:
        return "***** Invalid FILETIME"
    return _ctime(moment, True) + " (UTC + 0:00)"


def chars(value: int) -> str:
    raw = value.to_bytes(8, "big")
    return "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in raw)


def formats(value: int) -> tuple[list[str], dict]:
    value &= MASK64
    low, high = value & 0xFFFFFFFF, value >> 32
    f_low = struct.unpack("<f", low.to_bytes(4, "little"))[0]
    f_high = struct.unpack("<f", high.to_bytes(4, "little"))[0]
    double = struct.unpack("<d", value.to_bytes(8, "little"))[0]
    binary = " ".join(f"{b:08b}" for b in value.to_bytes(8, "big"))
    fields = {
        "hex": addr(value),
        "decimal": signed64(value),
        "unsigned": value,
        "octal": f"{value:022o}",
        "binary": binary,
        "chars": chars(value),
        "time": time_text(value),
        "float_low": c_float(f_low, low, 32),
        "float_high": c_float(f_high, high, 32),
        "double": c_float(double, value, 64),
    }
    lines = [
        "Evaluate expression:",
        f"  Hex:     {fields['hex']}",
        f"  Decimal: {fields['decimal']}",
        f"  Decimal (unsigned) : {value}",
        f"  Octal:   {fields['octal']}",
        f"  Binary:  {binary}",
        f"  Chars:   {fields['chars']}",
        f"  Time:    {fields['time']}",
        f"  Float:   low {fields['float_low']} high {fields['float_high']}",
        f"  Double:  {fields['double']}",
    ]
    return lines, fields


@command(".formats", syntax=".formats expression",
         help="Show a value in hex, decimal, octal, binary, characters, time and floats.")
def formats_cmd(s, args: str) -> Result:
    if not args.strip():
        raise KdMissingExpressionError("")
    lines, fields = formats(s.evaluate(args.strip()))
    return Result(lines, fields)
