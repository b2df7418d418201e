"""Meta-commands about the debugging environment rather than the target: `.symfix`,
`.prefer_dml`, `!sym`, `.kframes`, `.detach`, `.chain` and `.load`.

Each one keeps a session setting and prints what kd prints.  kdsim has no symbol server
and no extension DLLs: the symbol path is stored (see commands/symbol_path.py), symbol
loading has nothing to be noisy about, every extension command is built in, and DML is
never printed whichever way `.prefer_dml` is set.
"""

from __future__ import annotations

from commands import registry
from commands.errors import KdSyntaxError
from commands.registry import Result, command
from commands.stack import default_depth

# -- .symfix ---------------------------------------------------------------------------

SERVER_ELEMENT = "srv*"  # what `.symfix` puts in the path; `.sympath` expands it


@command(".symfix", syntax=".symfix[+] [LocalSymbolCache]",
         help="Point the symbol path at the Microsoft symbol store (with `+`, append it); "
              "the cache directory shows in the expanded path.")
def symfix_cmd(s, args: str) -> Result:
    text = args.strip()
    append = text.startswith("+")
    cache = text[1:].strip() if append else text
    old = s.symbol_path
    if append and old:
        path = old if SERVER_ELEMENT in old.lower().split(";") else f"{old};{SERVER_ELEMENT}"
    else:
        path = SERVER_ELEMENT
    s.symbol_path = path
    s.symbol_cache = cache
    return Result([], {"path": path, "cache": cache})


# -- .prefer_dml -----------------------------------------------------------------------

def _dml_line(on: bool) -> str:
    return f"DML versions of commands {'on' if on else 'off'} by default"


@command(".prefer_dml", syntax=".prefer_dml [0 | 1]",
         help="Show or set whether commands prefer their DML (hyperlinked) versions: a "
              "session setting; kdsim's output is plain text either way.")
def prefer_dml_cmd(s, args: str) -> Result:
    text = args.strip()
    if text:
        value, rest = s.take(text)
        if rest.strip():
            raise KdSyntaxError(rest.strip())
        s.prefer_dml = value != 0
    on = s.prefer_dml
    return Result([_dml_line(on)], {"prefer_dml": on})


# -- !sym ------------------------------------------------------------------------------

SYM_USAGE = "!sym <noisy/quiet - prompts/prompts off> - "


def _sym_state(s) -> str:
    mode = "noisy" if s.symbols_noisy else "quiet"
    prompts = "on" if s.symbol_prompts else "off"
    return f"{mode} mode - symbol prompts {prompts}"


@command("!sym", syntax="!sym [noisy | quiet | prompts | prompts off]",
         help="Show or set noisy symbol loading and symbol prompts (session settings: "
              "kdsim's symbols come with the target, so loading never prints more).")
def sym_cmd(s, args: str) -> Result:
    words = args.lower().split()
    if words == ["noisy"]:
        s.symbols_noisy = True
    elif words == ["quiet"]:
        s.symbols_noisy = False
    elif words == ["prompts"]:
        s.symbol_prompts = True
    elif words == ["prompts", "off"]:
        s.symbol_prompts = False
    else:
        # no argument, or one the extension does not know: its usage and the state
        state = _sym_state(s)
        return Result([SYM_USAGE + state], {"state": state})
    state = _sym_state(s)
    return Result([state], {"state": state})


# -- .kframes --------------------------------------------------------------------------

MAX_DEPTH = 0xFFFF  # the most frames k walks


@command(".kframes", syntax=".kframes [FrameCountDefault]",
         help="Show or set how many frames k (and how many words kd) show when no count "
              "is given.")
def kframes_cmd(s, args: str) -> Result:
    text = args.strip()
    if text:
        value, rest = s.take(text)
        if rest.strip():
            raise KdSyntaxError(rest.strip())
        if not 0 < value <= MAX_DEPTH:
            raise KdSyntaxError(text)
        s.stack_depth = value
    depth = default_depth(s)
    return Result([f"Default stack trace depth is 0n{depth} frames"], {"frames": depth})


# -- .detach ---------------------------------------------------------------------------

@command(".detach", syntax=".detach [/h | /n]",
         help="End the debugging session and leave the target running (kdsim: the "
              "session ends as with q).")
def detach_cmd(s, args: str) -> Result:
    for word in args.split():
        if word.lower() not in ("/h", "-h", "/n", "-n"):
            raise KdSyntaxError(args.strip()[args.strip().find(word):])
    return Result([], "quit")


# -- .chain and .load: the built-in extension commands ----------------------------------

def extension_families() -> dict[str, list[str]]:
    """The `!` commands by the command family (module) that defines them, in the
    registry's order."""
    families: dict[str, list[str]] = {}
    for spec in registry.ORDER:
        names = [n for n in spec.names if n.startswith("!")]
        if names:
            families.setdefault(spec.family, []).extend(names)
    return families


# The DLLs kd loads by default: their commands are kdsim's built-in ones.
STANDARD_DLLS = ("dbghelp", "ext", "exts", "uext", "ntsdexts", "kext", "kdexts")


@command(".chain", syntax=".chain",
         help="List the extension command families (all built in: kdsim loads no "
              "extension DLLs).")
def chain_cmd(s, args: str) -> Result:
    families = extension_families()
    lines = ["Extension DLL chain:"]
    for family, names in families.items():
        lines.append(f"    {family}: built in")
        lines.append(f"        [{', '.join(names)}]")
    return Result(lines, [{"family": f, "commands": n} for f, n in families.items()])


@command(".load", syntax=".load DLLName",
         help="Load an extension DLL: the standard ones (kdexts, kext, ext...) and kdsim's "
              "families are built in; any other DLL cannot be found.")
def load_cmd(s, args: str) -> Result:
    name = args.strip()
    if not name:
        raise KdSyntaxError("")
    base = name.replace("/", "\\").rsplit("\\", 1)[-1]
    stem = base[:-4] if base.lower().endswith(".dll") else base
    if stem.lower() in STANDARD_DLLS or stem.lower() in extension_families():
        return Result([], {"loaded": stem, "built_in": True})
    lines = [f"The call to LoadLibrary({name}) failed, Win32 error 0n2",
             '    "The system cannot find the file specified."',
             "Please check your debugger configuration and/or network access."]
    return Result(lines, {"error": "not found", "name": name})
