"""Meta-commands about the session itself: help, echo, quit."""

from __future__ import annotations

from commands.registry import ORDER, Result, command


@command(".help", syntax=".help [command]",
         help="List the commands, or show one command's syntax and help.")
def help_cmd(s, args: str) -> Result:
    want = args.strip().lower()
    rows = []
    for spec in ORDER:
        if want and want not in (n.lower() for n in spec.names):
            continue
        rows.append({"names": list(spec.names), "syntax": spec.syntax, "help": spec.help})
    if want and not rows:
        return Result([f"No help for '{args.strip()}'"], {"error": "no such command"})
    width = max(len(r["syntax"]) for r in rows)
    lines = [f"{r['syntax']:<{width}}  {r['help']}" for r in rows]
    return Result(lines, rows)


@command(".echo", syntax=".echo [text]", help="Print the text as it is.")
def echo(s, args: str) -> Result:
    return Result([args], {"text": args})


@command("q", "qq", syntax="q", help="End the debugging session.")
def quit_cmd(s, args: str) -> Result:
    return Result([], "quit")
