"""kd on a pipe, and command files: read a line, run it, write its output, repeat.

With standard input not a terminal, kdsim behaves as kd.exe does for the tools that
drive it: the prompt `N: kd> ` is printed (without a newline) before each line is read,
every command's output is flushed before the next line is read, `q` or the end of input
ends the session.  A command that lets a live target run (`g`) prints nothing until the
target stops; a break request (SIGINT, what Ctrl+C sends) stops it, and the command
reports the break-in as kd does.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from kdsim.output import Output


@contextmanager
def break_requests(session) -> Iterator[list[bool]]:
    """While the block runs, SIGINT breaks in to the target if a command is running
    (the yielded flag, set by the caller) and is otherwise ignored, as at kd's prompt."""
    running = [False]

    def on_interrupt(_signum, _frame) -> None:
        if running[0]:
            session.break_in()

    try:
        previous = signal.signal(signal.SIGINT, on_interrupt)
    except ValueError:  # not the main thread: no signals to take over
        yield running
        return
    try:
        yield running
    finally:
        signal.signal(signal.SIGINT, previous)


def run_stream(session, stream: TextIO, out: Output, echo: bool = False) -> bool:
    """Run every line of the stream; True when a command quit (`q`).  A command file
    (`echo`: kd's -cf) has each line echoed after the prompt as if typed; a pipe has
    the prompt printed before each line is read."""
    with break_requests(session) as running:
        while True:
            prompt = session.prompt
            if not echo:
                out.prompt(prompt)
            line = stream.readline()
            if not line:
                if not echo:
                    out.prompt("\n")  # the last prompt's line ends with the input
                return False
            line = line.rstrip("\r\n")
            if echo:
                out.echo(prompt, line)
            running[0] = True
            try:
                results = session.execute(line)
            finally:
                running[0] = False
            if out.results(prompt, results):
                return True
