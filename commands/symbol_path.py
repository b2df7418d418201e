"""`.sympath`, `.sympath+`, `.exepath`, `.exepath+` and `.reload`.

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


def _updated(current: str, args: str, append: bool = False) -> str:
    """A search path after `.sympath`/`.exepath` args: unchanged without a path,
    replaced, or (`+`, or the `+` form of the command) extended with `;`."""
    text = args.strip()
    if text.startswith("+"):
        append, text = True, text[1:].strip()
    if not text:
        return current
    return f"{current};{text}" if append and current else text


def _symbol_path_result(s, args: str, append: bool = False) -> Result:
    s.symbol_path = _updated(s.symbol_path, args, append)
    path, cache = s.symbol_path, s.symbol_cache
    return Result(_path_lines(path, cache), {"path": path, "expanded": expand(path, cache)})


@command(".sympath", syntax=".sympath [path]",
         help="Show or set the symbol search path (a stored setting: kdsim's symbols come "
              "with the target).")
def sympath_cmd(s, args: str) -> Result:
    return _symbol_path_result(s, args)


@command(".sympath+", syntax=".sympath+ path",
         help="Append to the symbol search path.")
def sympath_plus_cmd(s, args: str) -> Result:
    return _symbol_path_result(s, args, append=True)


def _image_path_result(s, args: str, append: bool = False) -> Result:
    s.image_path = _updated(s.image_path, args, append)
    # The wording of kd's start-up line (an empty path leaves the trailing blank).
    return Result([f"Executable search path is: {s.image_path}"], {"path": s.image_path})


@command(".exepath", syntax=".exepath [path]",
         help="Show or set the executable image search path (a stored setting: the "
              "images come with the target).")
def exepath_cmd(s, args: str) -> Result:
    return _image_path_result(s, args)


@command(".exepath+", syntax=".exepath+ path", help="Append to the executable image path.")
def exepath_plus_cmd(s, args: str) -> Result:
    return _image_path_result(s, args, append=True)


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
