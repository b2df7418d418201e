"""kdsim run in a real pseudo-terminal, as a user runs it (pexpect).

The prompt asks the terminal where its cursor is (a CPR request, ESC [6n) to know its
height, and shows the bottom toolbar only once answered: this terminal answers, as a
real one does.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parents[2]
CPR_REQUEST = "\x1b[6n"
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>]")
PROMPT = r"\d+: kd>"  # the prompt's trailing blank is a cursor move on the screen
TOOLBAR = r"\| IRQL (\d+:\d+ )*\d+:\d+(?=\s)"  # all of it: the blank after ends it


def plain(text: str) -> str:
    """The characters on the screen, without escape sequences."""
    return ANSI.sub("", text)


class Terminal:
    def __init__(self, *args: str, data_dir: Path, colour: bool = False,
                 rows: int = 40, cols: int = 200) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), KDSIM_DATA_DIR=str(data_dir),
                   TERM="xterm-256color")
        env.pop("NO_COLOR", None)
        if not colour:
            env["NO_COLOR"] = "1"
        self.rows = rows
        self.seen = ""  # everything the program wrote, escape sequences included
        self.pos = 0  # where the next expect looks from, in the plain text
        self.child = pexpect.spawn(sys.executable, ["-m", "kdsim", *args], env=env,
                                   cwd=str(ROOT), encoding="utf-8",
                                   dimensions=(rows, cols), timeout=90)

    def expect(self, pattern: str, timeout: float = 90) -> str:
        """Read until the regular expression matches the screen text after the last
        match; return the text up to the end of this match.  Cursor position requests
        are answered on the way."""
        compiled = re.compile(pattern)
        while True:
            text = plain(self.seen)
            found = compiled.search(text, self.pos)
            if found:
                before, self.pos = text[self.pos:found.end()], found.end()
                return before
            try:
                chunk = self.child.read_nonblocking(4096, timeout=timeout)
            except (pexpect.TIMEOUT, pexpect.EOF):
                raise AssertionError(
                    f"{pattern!r} not seen; screen text: {text[self.pos:][-2000:]!r}"
                ) from None
            self.seen += chunk
            for _ in range(chunk.count(CPR_REQUEST)):
                self.child.send(f"\x1b[{self.rows};1R")

    def prompt(self) -> str:
        """The prompt, ready for keys: its toolbar is drawn once the terminal is in the
        prompt's own mode (keys sent before could be taken by the line discipline)."""
        text = self.expect(PROMPT)
        return text + self.expect(TOOLBAR)

    def send(self, text: str) -> None:
        self.child.send(text)

    def quit(self) -> int:
        """Ctrl+D at the prompt; the exit status."""
        self.child.sendcontrol("d")
        return self.wait_exit()

    def wait_exit(self) -> int:
        self.child.expect(pexpect.EOF, timeout=60)
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
