"""The interactive prompt: `N: kd> ` with line editing and history."""

from __future__ import annotations

from prompt_toolkit import PromptSession
from prompt_toolkit.history import InMemoryHistory


def repl(session, out) -> int:
    from kdsim.cli import emit

    prompt = PromptSession(history=InMemoryHistory())
    while True:
        try:
            line = prompt.prompt(session.prompt)
        except KeyboardInterrupt:
            continue  # Ctrl+C at the prompt clears the line
        except EOFError:
            return 0
        if emit(out, session.execute(line)):
            return 0
