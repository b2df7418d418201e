"""`?`: evaluate a MASM expression."""

from __future__ import annotations

from commands import fmt
from commands.errors import KdMissingExpressionError
from commands.registry import Result, command


@command("?", syntax="? expression",
         help="Evaluate a MASM expression and show it in decimal and hex.")
def evaluate_cmd(s, args: str) -> Result:
    if not args.strip():
        raise KdMissingExpressionError("<EOL>")
    value = s.evaluate(args)
    line = f"Evaluate expression: {fmt.signed64(value)} = {fmt.addr(value)}"
    return Result([line], {"value": value})
