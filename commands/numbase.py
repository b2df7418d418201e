"""`n`: show or set the default radix of MASM expressions (kd's number base)."""

from __future__ import annotations

from commands.errors import KdSyntaxError, KdUnknownCommand
from commands.registry import Result, command

RADIXES = (8, 10, 16)


@command("n", syntax="n [8 | 10 | 16]",
         help="Show the default radix (base is 16), or set it to 8, 10 or 16.")
def n_cmd(s, args: str) -> Result:
    if args[:1].isalpha() or args[:1] == "_":
        # `nonsense`: a word that only starts with n is no command.
        raise KdUnknownCommand("n" + args, 0)
    text = args.strip()
    if not text:
        return Result([f"base is {s.radix}"], {"radix": s.radix})
    # kd reads the new radix in decimal whatever the current one is (`n 10` from base 16
    # selects decimal, not base 16).
    if not text.isdigit() or int(text) not in RADIXES:
        raise KdSyntaxError(text, len(args) - len(args.lstrip()))
    s.radix = int(text)
    return Result([], {"radix": s.radix})
