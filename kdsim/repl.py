"""The interactive prompt: `N: kd> ` with line editing and history."""

from __future__ import annotations

import signal

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
        # Ctrl+C while a command runs breaks in to the target, as in kd; the command
        # reports the stop and the session goes on.
        previous = signal.signal(signal.SIGINT, lambda *_: session.break_in())
        try:
            done = emit(out, session.execute(line))
        finally:
            signal.signal(signal.SIGINT, previous)
        if done:
            return 0
