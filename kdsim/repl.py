"""The interactive prompt: kd's `N: kd> ` with what a terminal can add.

- history kept across sessions in the user's data directory (`history`);
- Enter on an empty line repeats a step or continues a display, as kd does
  (kdsim/repeat.py);
- Tab completes commands, options, symbols, types, fields, pseudo-registers and file
  names (kdsim/completion.py); the input line is highlighted by the kd lexer;
- a bottom toolbar with the scenario, simulated time, state and IRQLs (kdsim/status.py);
- Ctrl+C at the prompt clears the line, while a command runs it breaks in to the target;
  Ctrl+D or `q` quits;
- a progress display while the machine runs for a while (kdsim/progress.py).
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.lexers import PygmentsLexer
from prompt_toolkit.output.color_depth import ColorDepth

from kdsim.colour import use_colour
from kdsim.completion import KdCompleter
from kdsim.kdlexer import KdLexer
from kdsim.output import Output
from kdsim.pipe import break_requests
from kdsim.repeat import repeat_line
from kdsim.status import stopped_status

HISTORY_FILE = "history"
# At the prompt a go runs until the target stops or Ctrl+C, as kd's does (a script or a
# pipe keeps the session's step budget, so that it cannot hang; so does a step).
UNBOUNDED = 1 << 62


def history_path() -> Path:
    from kdsim.labs.progress import data_dir

    return data_dir() / HISTORY_FILE


def open_history() -> History:
    """The history file, created with its directory; in memory when it cannot be."""
    path = history_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    except OSError:
        return InMemoryHistory()
    return FileHistory(str(path))


def build_prompt(session, view) -> PromptSession:
    colour = use_colour(sys.stdout, os.environ)

    def toolbar() -> str:
        try:
            return " " + stopped_status(session, view.scenario_name()).text()
        except Exception:  # noqa: BLE001 - the toolbar must never end the session
            return ""

    options: dict = {"history": open_history(), "bottom_toolbar": toolbar,
                     "completer": KdCompleter(session), "complete_while_typing": False}
    if colour:
        options["lexer"] = PygmentsLexer(KdLexer)
    else:
        options["color_depth"] = ColorDepth.MONOCHROME
    return PromptSession(**options)


def repl(session, out: Output, view) -> int:
    """The prompt loop; `view` (kdsim.cli.TargetView) names the scenario and gives the
    machine for the progress display."""
    prompt = build_prompt(session, view)
    session.go_budget = UNBOUNDED
    last: str | None = None
    while True:
        try:
            line = prompt.prompt(session.prompt)
        except KeyboardInterrupt:
            continue  # Ctrl+C at the prompt clears the line
        except EOFError:
            return 0
        if not line.strip():
            line = repeat_line(last)
            if line is None:
                continue
        else:
            last = line
        shown = session.prompt
        with break_requests(session) as running, watching(view.machine()):
            running[0] = True
            results = session.execute(line)
        if out.results(shown, results):
            return 0


def watching(machine):
    """The progress display around a command (it shows only if the machine runs; a dump
    has no machine)."""
    from kdsim.progress import watch_run

    return nullcontext() if machine is None else watch_run(machine)
