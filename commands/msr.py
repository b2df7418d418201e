"""`rdmsr msr`: a model-specific register of the current processor, as the target
reports it (`msr[c0000082] = fffff805`54400180`)."""

from __future__ import annotations

from commands.errors import KdMissingExpressionError
from commands.fmt import addr
from commands.registry import Result, command
from commands.target import TargetNotLive

MASK32 = 0xFFFFFFFF


@command("rdmsr", syntax="rdmsr msr", help="Read a model-specific register.")
def rdmsr_cmd(s, args: str) -> Result:
    if not args.strip():
        raise KdMissingExpressionError("")
    msr = s.evaluate(args.strip()) & MASK32  # ecx: 32 bits (c0000082 sign-extends)
    read = getattr(s.target, "read_msr", None)  # a target may predate the method
    try:
        if read is None:
            raise TargetNotLive()
        value = read(s.processor, msr)
    except (KeyError, TargetNotLive):
        return Result(["no such msr"], {"msr": msr, "error": "no such msr"})
    return Result([f"msr[{msr:x}] = {addr(value)}"], {"msr": msr, "value": value,
                                                       "processor": s.processor})
