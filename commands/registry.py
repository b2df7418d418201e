"""The command registry: one place for every command's names, syntax, help and handler.

`.help` and docs are generated from it.  A handler gets the debugger session and the
argument text, and returns a `Result`: structured data plus the kd-layout text rendered
from that data (the data is what scripts get as JSON).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Result:
    lines: list[str] = field(default_factory=list)
    data: Any = None
    command: str = ""  # the command as run (after alias expansion), set by the session


@dataclass(frozen=True)
class CommandSpec:
    names: tuple[str, ...]
    syntax: str
    help: str
    handler: Callable[..., Result]
    family: str

    @property
    def kind(self) -> str:
        first = self.names[0]
        return "extension" if first.startswith("!") else "meta" if first.startswith(".") \
            else "standard"


COMMANDS: dict[str, CommandSpec] = {}  # lower-case name -> spec
ORDER: list[CommandSpec] = []


def command(*names: str, syntax: str, help: str) -> Callable[[Callable[..., Result]],
                                                              Callable[..., Result]]:
    def register(fn: Callable[..., Result]) -> Callable[..., Result]:
        family = fn.__module__.rsplit(".", 1)[-1]
        spec = CommandSpec(tuple(names), syntax, help, fn, family)
        for n in names:
            if n.lower() in COMMANDS:
                raise ValueError(f"command {n} registered twice")
            COMMANDS[n.lower()] = spec
        ORDER.append(spec)
        return fn

    return register


def usage(spec: CommandSpec) -> Result:
    """What `<command> /?` and `.help <command>` print: syntax, then the help text."""
    lines = [f"Usage: {spec.syntax}", f"  {spec.help}"]
    if len(spec.names) > 1:
        lines.append("  Also: " + ", ".join(spec.names[1:]))
    return Result(lines, {"names": list(spec.names), "syntax": spec.syntax, "help": spec.help})


def letter_commands() -> set[str]:
    """Names of standard commands (no `!` or `.` prefix), for longest-prefix matching."""
    return {n for n in COMMANDS if not n.startswith(("!", "."))}


def load_all() -> None:
    """Import every module of the commands package (in name order, so the registry's
    order never depends on the file system): each command family registers itself."""
    import importlib
    import pkgutil

    import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.ispkg:
            importlib.import_module(f"commands.{info.name}")
