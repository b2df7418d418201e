"""`.sympath`, `.sympath+` and `.reload`.

kdsim's symbol files come with the target (the simulated images carry their own public
symbols), so the symbol search path is a session setting that is stored and printed, as
kd prints it, but never searched.  `.reload` reads the loaded-module list again from the
target's memory (nt!PsLoadedModuleList) and prints kd's loading lines: one dot per module.
"""

from __future__ import annotations

from commands.errors import KdSyntaxError
from commands.registry import Result, command
from commands.symbols import SymbolEngine

SYMBOL_SERVER = "https://msdl.microsoft.com/download/symbols"
DOTS_PER_LINE = 64


def expand(path: str, cache: str = "") -> str:
    """kd's expanded form: a bare `srv*` element names the cache (the one `.symfix`
    named, else the default) and the server."""
    parts = []
    for element in path.split(";"):
        low = element.strip().lower()
        if low in ("srv*", "symsrv*symsrv.dll*"):
            parts.append(f"cache*{cache};SRV*{SYMBOL_SERVER}")
        else:
            parts.append(element.strip())
    return ";".join(p for p in parts if p)


def _path_lines(path: str, cache: str = "") -> list[str]:
    return [f"Symbol search path is: {path or '<empty>'}",
            f"Expanded Symbol search path is: {expand(path, cache).lower() or '<empty>'}"]


@command(".sympath", syntax=".sympath [path]",
         help="Show or set the symbol search path (a stored setting: kdsim's symbols come "
              "with the target).")
def sympath_cmd(s, args: str) -> Result:
    text = args.strip()
    if text.startswith("+"):
        return sympath_plus_cmd(s, text[1:])
    if text:
        s.symbol_path = text
    path, cache = s.symbol_path, s.symbol_cache
    return Result(_path_lines(path, cache), {"path": path, "expanded": expand(path, cache)})


@command(".sympath+", syntax=".sympath+ path",
         help="Append to the symbol search path.")
def sympath_plus_cmd(s, args: str) -> Result:
    text = args.strip()
    if text:
        old = s.symbol_path
        s.symbol_path = f"{old};{text}" if old else text
    path, cache = s.symbol_path, s.symbol_cache
    return Result(_path_lines(path, cache), {"path": path, "expanded": expand(path, cache)})


def _dots(count: int) -> list[str]:
    return ["." * min(DOTS_PER_LINE, count - i) for i in range(0, count, DOTS_PER_LINE)]


@command(".reload", syntax=".reload [/f] [/user] [/unl] [/n] [/v] [module]",
         help="Read the loaded-module list from the target again and reload symbols.")
def reload_cmd(s, args: str) -> Result:
    flags: set[str] = set()
    names: list[str] = []
    for word in args.split():
        if word.startswith("/"):
            flag = word[1:].lower()
            if flag not in ("f", "user", "unl", "n", "v", "i", "s", "o", "d", "w", "u"):
                raise KdSyntaxError(args.strip()[args.strip().find(word):])
            flags.add(flag)
        else:
            names.append(word)
    s.symbols = SymbolEngine(s.target)
    modules = s.symbols.modules()
    if names:
        lines = []
        for name in names:
            key = name.split("=", 1)[0]
            if s.symbols.module_named(key) is None and \
                    s.symbols.module_named(key.rsplit(".", 1)[0]) is None:
                lines.append(f"Unable to find module '{key}'")
        return Result(lines, {"modules": [m.name for m in modules], "reloaded": names})
    lines: list[str] = []
    if "user" not in flags and "unl" not in flags:
        lines.append("Loading Kernel Symbols")
        lines += _dots(len(modules))
    if "unl" not in flags:
        # user-mode module lists (a process's PEB loader data) are not read here
        lines.append("Loading User Symbols")
    if "user" not in flags:
        lines.append("Loading unloaded module list")
    return Result(lines, {"modules": [m.name for m in modules]})
