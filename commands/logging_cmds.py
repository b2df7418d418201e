"""`.cls` and the log file: `.logopen`, `.logappend`, `.logclose`, `.logfile`.

Once a log is open, every command line the session runs is written to it as kd writes
it, the prompt and the command (`0: kd> k`) followed by the output lines
(commands/flow.py does the writing; the line that closes the log is still in it).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from commands.dpcs_timers import shared_time
from commands.errors import KdError
from commands.lang_state import LogFile
from commands.registry import Result, command

DEFAULT_LOG = "dbgeng.log"
_EPOCH_1601 = datetime(1601, 1, 1)


@command(".cls", syntax=".cls", help="Clear the screen (a text session prints nothing).")
def cls_cmd(s, args: str) -> Result:
    return Result([], {"clear_screen": True})


def _options(args: str, allowed: str) -> tuple[set[str], str]:
    words = args.strip()
    options: set[str] = set()
    # An option is `/` and one letter; a longer word starting with `/` is a path.
    while words.startswith("/") and (len(words) == 2 or words[2:3].isspace()):
        option, _, words = words.partition(" ")
        if option[1:] not in allowed:
            raise KdError(f"Unknown option '{option}'")
        options.add(option[1])
        words = words.lstrip()
    name = words.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1]
    return options, name or DEFAULT_LOG


def _stamped(s, name: str) -> str:
    """`.logopen /t`: the name with `_<pid>_<date>_<time>` before its extension.  The
    time is the target's clock (SharedUserData), so the name is the same on every run;
    the id is the current process's."""
    stamp = shared_time(s, "SystemTime") or 0
    when = _EPOCH_1601 + timedelta(microseconds=stamp // 10)
    pid = s.register("$tpid") or 0
    path = Path(name)
    text = (f"{path.stem}_{pid:04X}_{when:%Y-%m-%d_%H-%M-%S}-{when.microsecond // 1000:03}"
            f"{path.suffix}")
    return str(path.with_name(text))


def _open(s, name: str, unicode: bool, append: bool) -> Result:
    lines: list[str] = []
    if s.log is not None:
        lines.append(f"Closing open log file {s.log.path}")
        s.flow.closing.append(s.log)
        s.log = None
    encoding = "utf-16" if unicode else "utf-8"
    try:
        handle = open(name, "a" if append else "w", encoding=encoding)  # noqa: SIM115
    except OSError:
        raise KdError(f"Unable to open log file '{name}'") from None
    s.log = LogFile(name, handle)
    lines.append(f"Opened log file '{name}'")
    return Result(lines, {"log": name, "append": append})


@command(".logopen", syntax=".logopen [/t] [/u] [file]",
         help="Open a log file (overwriting it): every command and its output is written "
              "to it.  /t adds a process id and time stamp to the name, /u writes Unicode.")
def logopen_cmd(s, args: str) -> Result:
    options, name = _options(args, "tu")
    if "t" in options:
        name = _stamped(s, name)
    return _open(s, name, "u" in options, append=False)


@command(".logappend", syntax=".logappend [/u] [file]",
         help="Open a log file, adding to what it holds.")
def logappend_cmd(s, args: str) -> Result:
    options, name = _options(args, "u")
    return _open(s, name, "u" in options, append=True)


@command(".logclose", syntax=".logclose", help="Close the log file.")
def logclose_cmd(s, args: str) -> Result:
    if s.log is None:
        return Result(["No log file open"], {"log": None})
    log, s.log = s.log, None
    s.flow.closing.append(log)  # closed once this line is written to it
    return Result([f"Closing open log file {log.path}"], {"closed": log.path})


@command(".logfile", syntax=".logfile", help="Show whether a log file is open.")
def logfile_cmd(s, args: str) -> Result:
    if s.log is None:
        return Result(["No log file open"], {"log": None})
    return Result([f"Log '{s.log.path}' open"], {"log": s.log.path})
