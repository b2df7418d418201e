"""`dt`: display a type, or memory as a type."""

from __future__ import annotations

from commands.dt import UnknownType, render_dt
from commands.errors import KdError
from commands.registry import Result, command


@command("dt", syntax="dt [-r[N]] [module!]Type [address] [field ...]",
         help="Display a type's layout, or the memory at an address decoded as that type.")
def dt_cmd(s, args: str) -> Result:
    words = args.split()
    recurse = 0
    rest: list[str] = []
    for w in words:
        if w.startswith("-r"):
            recurse = int(w[2:] or "1", 10) if w[2:].isdigit() or not w[2:] else 1
        else:
            rest.append(w)
    if not rest:
        raise KdError("Invalid type name")
    type_name, rest = rest[0], rest[1:]
    address = None
    if rest:
        try:
            address = s.evaluate(rest[0])
            rest = rest[1:]
        except KdError:
            address = None  # not an address: the words are field names
    try:
        lines = render_dt(s.target.types, type_name, address,
                          lambda a, n: s.target.read_virtual(a, n), s.symbols, rest, recurse)
    except UnknownType as exc:
        raise KdError(str(exc)) from None
    return Result(lines, {"type": type_name, "address": address, "fields": rest})
