"""`dt`: display a type, or memory as a type (see commands/dt_command.py)."""

from __future__ import annotations

from commands.dt_command import run_dt
from commands.registry import Result, command


@command("dt", syntax="dt [-a[N]] [-b] [-c] [-i] [-o] [-p] [-r[N]] [-v] [-y] [-n] [-s Size] "
                      "[module!]Name[*] [address] [-l Field] [field ...]",
         help="Display a type's layout, a global variable, or the memory at an address "
              "decoded as a type; `*` in Name lists matching type names.")
def dt_cmd(s, args: str) -> Result:
    return run_dt(s, args)
