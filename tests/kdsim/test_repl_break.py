"""Ctrl+C while a command runs breaks in to the target instead of ending the REPL."""

from __future__ import annotations

import contextlib
import io
import os
import signal

import kdsim.repl as repl_module
from commands.registry import Result
from kdsim.cli import TargetView
from kdsim.output import Output


class FakePrompt:
    def __init__(self, lines):
        self.lines = list(lines)

    def prompt(self, _text):
        if not self.lines:
            raise EOFError
        return self.lines.pop(0)


class RunningSession:
    """A session whose command is interrupted by SIGINT while it runs."""

    prompt = "0: kd> "

    def __init__(self) -> None:
        self.breaks = 0

    def execute(self, line: str) -> list[Result]:
        os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl+C mid-command
        return [Result([f"ran {line}"])]

    def break_in(self) -> None:
        self.breaks += 1


def test_ctrl_c_during_a_command_breaks_in_and_the_session_goes_on(monkeypatch):
    monkeypatch.setattr(repl_module, "build_prompt",
                        lambda *_: FakePrompt(["g", "k"]))
    monkeypatch.setattr(repl_module, "watching", lambda _app: contextlib.nullcontext())
    session, out = RunningSession(), io.StringIO()
    before = signal.getsignal(signal.SIGINT)
    assert repl_module.repl(session, Output(out), TargetView(lambda: "x", lambda: None)) == 0
    assert session.breaks == 2
    assert out.getvalue() == "ran g\nran k\n"
    assert signal.getsignal(signal.SIGINT) is before  # restored after each command
