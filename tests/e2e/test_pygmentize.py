"""`pygmentize -l kd` after install: the lexers are `pygments.lexers` entry points."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import entry_points

LINE = 'bp myfault!MyfaultHighIrqlFault+0x1a ".echo hit; g"; dt nt!_EPROCESS @$proc -r1\n'


def pygmentize(*args: str, text: str) -> str:
    res = subprocess.run([sys.executable, "-m", "pygments", *args], input=text,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_the_lexers_are_registered_entry_points():
    found = {ep.name: ep.value for ep in entry_points(group="pygments.lexers")}
    assert found.get("kd") == "kdsim.kdlexer:KdLexer"
    assert found.get("kd-output") == "kdsim.kdlexer:KdOutputLexer"


def test_pygmentize_highlights_a_command_line():
    raw = pygmentize("-l", "kd", "-f", "raw", text=LINE)
    tokens = [line.split("\t", 1) for line in raw.splitlines()]
    kinds = {value: kind for kind, value in tokens}
    assert kinds["'bp'"] == "Token.Keyword"
    assert kinds["'myfault'"] == "Token.Name.Namespace"
    assert kinds["'MyfaultHighIrqlFault'"] == "Token.Name.Function"
    assert kinds["'0x1a'"].startswith("Token.Literal.Number")
    assert kinds["'_EPROCESS'"] == "Token.Name.Class"
    assert kinds["'@$proc'"] == "Token.Name.Variable"
    coloured = pygmentize("-l", "kd", "-f", "terminal256", text=LINE)
    assert re.search(r"\x1b\[[0-9;]*m", coloured)
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == LINE


def test_pygmentize_highlights_debugger_output():
    text = "BugCheck D1, {ffff8001b0110000, 2, 0, fffff805738e115a}\n"
    raw = pygmentize("-l", "kd-output", "-f", "raw", text=text)
    assert "Token.Literal.Number" in raw
