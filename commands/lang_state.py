"""What the command language keeps in a session between command lines: the open log
file and the bookkeeping of running command programs (nesting, step budget)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TextIO

# The most statements one command line may run (loops included): kd runs until Ctrl+C,
# kdsim also stops a program here so that a loop cannot hang the session.
MAX_FLOW_STEPS = 1_000_000
# Nested script files and blocks deeper than this are refused (a script running itself).
MAX_FLOW_DEPTH = 64


@dataclass
class LogFile:
    """kd's `.logopen` file: every command line run (with its prompt) and its output."""

    path: str
    handle: TextIO

    def write_lines(self, lines: list[str]) -> None:
        for line in lines:
            self.handle.write(line + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


@dataclass
class FlowState:
    """Per command line: statements run so far and how deeply programs are nested."""

    steps: int = 0
    depth: int = 0
    closing: list[LogFile] = field(default_factory=list)  # closed after the line is logged
    # Set while a breakpoint's command string runs: a plain go in it (at any depth of its
    # blocks) ends the string and asks the run that hit to resume ("g" or "gc").
    resume_on_go: bool = False
    resume: str | None = None
    # Set by a Ctrl+C while a command program runs: the program stops at its next step.
    interrupted: bool = False
