"""Script files: `$$<`, `$<`, `$$><`, `$><` and `$$>a<`.

* `$$< file` runs the file's lines one by one as if typed (each echoed after the
  prompt, as kd echoes them); `$< file` is the same, the file name taking the rest of
  the line (it may hold semicolons).
* `$$>< file` joins the file's lines with semicolons and runs them as one command block
  (aliases are expanded once for the whole script, then per block entered); `$><` again
  takes the rest of the line as the name.
* `$$>a< file arg1 arg2 ...` is `$$><` with `${$arg0}` (the file name), `${$arg1}`, ...
  replaced by the arguments (double quotes around one holding blanks).

A relative name is relative to the current directory.  A file that cannot be read gives
kd's `Couldn't open file '<name>'`.
"""

from __future__ import annotations

from pathlib import Path

from commands.errors import KdError
from commands.flow import run_nested, split_arguments
from commands.registry import Result, command


def _read_lines(name: str) -> list[str]:
    try:
        text = Path(name).read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        raise KdError(f"Couldn't open file '{name}'") from None
    return text.splitlines()


def _file_name(args: str) -> str:
    name = args.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1]
    if not name:
        raise KdError("Couldn't open file ''")
    return name


def _combine(results: list[Result], lines: list[str], data: dict) -> Result:
    quit_ = False
    for res in results:
        lines += res.lines
        quit_ = quit_ or res.data == "quit"
    data["results"] = [res.data for res in results]
    return Result(lines, "quit" if quit_ else data)


def _run_lines(s, name: str) -> Result:
    lines: list[str] = []
    results: list[Result] = []
    for line in _read_lines(name):
        lines.append(f"{s.prompt}{line}")
        out = run_nested(s, line)
        for res in out:
            lines += res.lines
        results += out
        if any(res.data == "quit" for res in out):
            return Result(lines, "quit")
    return Result(lines, {"script": name, "results": [res.data for res in results]})


def _run_joined(s, name: str, arguments: list[str] | None = None) -> Result:
    program = ";".join(_read_lines(name))
    extra = None
    if arguments is not None:
        extra = {f"$arg{i}": arg for i, arg in enumerate([name, *arguments])}
    return _combine(run_nested(s, program, extra), [], {"script": name})


@command("$$<", "$<", syntax="$$< file",
         help="Run a script file's lines as typed, each echoed.")
def run_script_lines(s, args: str) -> Result:
    return _run_lines(s, _file_name(args))


@command("$$><", "$><", syntax="$$>< file",
         help="Run a script file as one command block (its lines joined by semicolons).")
def run_script_block(s, args: str) -> Result:
    return _run_joined(s, _file_name(args))


@command("$$>a<", syntax="$$>a< file [arg1 arg2 ...]",
         help="Run a script file as one command block with ${$arg1}... replaced by the "
              "arguments (${$arg0} is the file name).")
def run_script_with_arguments(s, args: str) -> Result:
    words = split_arguments(args)
    if not words:
        raise KdError("Couldn't open file ''")
    return _run_joined(s, words[0], words[1:])
