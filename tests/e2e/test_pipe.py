"""kd on a pipe, driven the way automation clients drive kd.exe: write a command and
`.echo <marker>`, read standard output line by line until the marker, repeat."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from commands.session import Session
from kdsim.app import App
from kdsim.labs.catalog import INTRO
from machine.scenario import builtin_scenario
from tests.kdsim.test_budget import SPIN, budgeted

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "0: kd> "

# 50 inspection commands, several of them printing nothing, many lines or an error.
COMMANDS = [
    ".bugcheck", "!analyze -v", "k", "kb", "kv 3", "kn", "!process 0 0", "!thread", "lm",
    "lm m myfault", "r", "r rip", "rdmsr c0000082", "dt nt!_KPRCB", "dt nt!_EPROCESS @$proc",
    "dq @rsp L8", "db @rip L20", "dd @rsp", "u @rip", "ub @rip L3",
    "uf myfault!MyfaultHighIrqlFault", "? 0n216", "? nt!KeBugCheckEx+10", "x myfault!*",
    "ln @rip", "!pcr", "!prcb", "!irql", "!idt", "!dpcs", "!timer", "!pool @rcx", "!poolused",
    "!vm", "!pte @rip", "!devobj \\Device\\Myfault",
    "!drvobj myfault", "!irp @$t0", "!running", "!stacks", "!locks", ".frame 2", "dv",
    ".echo plain text", "as Foo bar", "al", ".printf \"%p\\n\", @rsp", "foo",
    "dps @rsp L4", "!process 0 7 notmyfault64.exe",
]


def kdsim_process(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "kdsim", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            bufsize=1, env=env, cwd=ROOT)


def read_lines_until(stream, marker: str, timeout: float = 60.0,
                     lines: list[str] | None = None) -> list[str]:
    """Lines read until one holding the marker (included), appended to `lines` as they
    come; a watchdog ends a stuck read."""
    lines = [] if lines is None else lines
    done = threading.Event()

    def read() -> None:
        for line in stream:
            lines.append(line)
            if marker in line:
                break
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert done.wait(timeout), f"no {marker!r} after {lines[-5:]}"
    return lines


def expected_outputs() -> list[list[str]]:
    """The same commands run in this process on the same machine."""
    app = App.start(builtin_scenario(INTRO))
    session = Session(app.target, processor=app.target.stop_processor)
    out = []
    for command in COMMANDS:
        out.append([line for res in session.execute(command) for line in res.lines])
    return out


def test_fifty_commands_each_followed_by_an_echo_marker():
    assert len(COMMANDS) == 50
    expected = expected_outputs()
    proc = kdsim_process()
    assert proc.stdin is not None and proc.stdout is not None
    try:
        for i, command in enumerate(COMMANDS):
            marker = f"MARKER_{i:02d}_3f9c"
            proc.stdin.write(f"{command}\n.echo {marker}\n")
            proc.stdin.flush()
            chunk = "".join(read_lines_until(proc.stdout, marker))
            # kd on a pipe: the prompt, the command's output (input is not echoed), the
            # next prompt and the marker .echo printed, on its own line.
            body = "\n".join(expected[i]) + "\n" if expected[i] else ""
            want = f"{PROMPT}{body}{PROMPT}{marker}\n"
            if i == 0:
                assert chunk.endswith(want)  # the start-up banner comes first
            else:
                assert chunk == want, command
        proc.stdin.write("q\n")
        proc.stdin.flush()
        assert proc.wait(30) == 0
        assert proc.stdout.read() == PROMPT  # the prompt q was typed at, nothing more
    finally:
        proc.kill()
        proc.wait()


def test_end_of_input_ends_the_session_with_exit_code_0():
    proc = kdsim_process()
    out, err = proc.communicate("r rip\n", timeout=60)
    assert proc.returncode == 0, err
    assert out.endswith(f"{PROMPT}rip=fffff80554402a00\n{PROMPT}\n")
    assert "Traceback" not in err


def test_a_break_request_stops_a_running_target(tmp_path):
    """`g` on a machine that spins prints nothing until it stops; SIGINT (Ctrl+C) breaks
    in with kd's text, and the session goes on."""
    scenario = tmp_path / "spin.toml"
    scenario.write_text(budgeted("spin", SPIN))
    proc = kdsim_process(str(scenario))
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(".echo READY\n")
        proc.stdin.flush()
        read_lines_until(proc.stdout, "READY")
        proc.stdin.write("g\n.echo STOPPED\n")
        proc.stdin.flush()
        lines: list[str] = []
        reader = threading.Thread(
            target=lambda: read_lines_until(proc.stdout, "STOPPED", lines=lines),
            daemon=True)
        reader.start()
        # A request before `g` has started is dropped (as at kd's prompt): send until the
        # stop's first line arrives.
        deadline = time.monotonic() + 60
        while reader.is_alive() and time.monotonic() < deadline:
            time.sleep(0.3)
            if not lines:
                proc.send_signal(signal.SIGINT)
        reader.join(5)
        text = "".join(lines)
        assert text.startswith(PROMPT + "Break instruction exception - code 80000003")
        assert "You are seeing this message because you pressed either" in text
        assert "steps without an event" not in text  # stopped by the request, not a budget
        proc.stdin.write("q\n")
        proc.stdin.flush()
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
