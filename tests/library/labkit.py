"""Working a library lab the way a trainee does, for the per-scenario tests.

`transcript` runs `kdsim lab start NAME` through the real command line (kdsim.cli.main,
in this process) with kd commands on standard input, and returns what it printed;
`stopped` gives the machine at the lab's stop, for assertions on its state."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Iterator

from kdsim.app import App
from kdsim.labs import catalog
from kdsim.labs.spec import parse_lab
from machine.scenario import parse_scenario

GRADE_FIELDS = ("bugcheck", "driver", "routine", "cause")


@contextlib.contextmanager
def _data_dir(path: str) -> Iterator[None]:
    old = os.environ.get("KDSIM_DATA_DIR")
    os.environ["KDSIM_DATA_DIR"] = path
    try:
        yield
    finally:
        if old is None:
            del os.environ["KDSIM_DATA_DIR"]
        else:
            os.environ["KDSIM_DATA_DIR"] = old


def transcript(name: str, commands: list[str], data_dir: str) -> str:
    """`kdsim lab start NAME` with the commands piped in: its whole standard output."""
    from kdsim import cli

    out = io.StringIO()
    stdin = io.StringIO("".join(c + "\n" for c in commands))
    old_in = sys.stdin
    sys.stdin = stdin
    try:
        with _data_dir(str(data_dir)), contextlib.redirect_stdout(out):
            code = cli.main(["lab", "start", name])
    finally:
        sys.stdin = old_in
    text = out.getvalue()
    assert code == 0, text
    assert "Traceback" not in text
    return text


def stopped(name: str) -> App:
    """The lab's machine booted from its seed and run to the lab's stop."""
    entry = catalog.find(name)
    assert entry is not None, f"no scenario {name}"
    spec = parse_lab(entry.text, entry.path, entry.name)
    assert spec is not None, f"{name} has no [lab] table"
    ticks = spec.stop.ticks if spec.stop.until == "ticks" else None
    return App.start(parse_scenario(entry.text, entry.path), ticks=ticks)


def outputs(text: str) -> list[str]:
    """The transcript cut at each prompt: [start-up text, output of command 1, ...]."""
    return re.split(r"(?m)\d+: kd> ", text)


def grades(text: str) -> list[dict[str, str]]:
    """Each .submit's verdicts, in order: {field: 'right'|'wrong', 'solved': 'yes'|'no'}."""
    found = []
    for part in outputs(text):
        lines = part.splitlines()
        if not lines or not any(line.endswith((": right", ": wrong")) for line in lines):
            continue
        verdict: dict[str, str] = {}
        for line in lines:
            key, _, value = line.partition(":")
            if value.strip() in ("right", "wrong"):
                verdict[key.strip()] = value.strip()
            elif line.startswith("Solved:"):
                verdict["solved"] = "yes"
            elif line.startswith("Not solved yet:"):
                verdict["solved"] = "no"
        found.append(verdict)
    return found


def assert_right_then_wrong(text: str, right: str, wrong: str) -> None:
    """The transcript ends with `right` then `wrong` submitted: the first solves the lab
    with every field right, the second has every field wrong."""
    first, second = grades(text)[-2:]
    assert first.pop("solved") == "yes", first
    assert set(first.values()) == {"right"}, (right, first)
    assert second.pop("solved") == "no", second
    assert set(second.values()) == {"wrong"}, (wrong, second)
