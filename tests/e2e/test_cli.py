"""The real command line, run as a user would run it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

TRANSCRIPT = [
    ".bugcheck", "!analyze -v", "k", "kb", "kv", "!process 0 0", "!thread", "lm", "r",
    "dt nt!_KPRCB", "dq @rsp L8", "db @rip", "u @rip", "? 0n216", "? nt!KeBugCheckEx+10",
    "!process 0 7 notmyfault64.exe", "dt nt!_EPROCESS @$proc UniqueProcessId ImageFileName",
    "dps @rsp L4", "ub @rip L3", "lm v m myfault",
]


def kdsim(*args: str, stdin: str = "",
          env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "kdsim", *args], input=stdin,
                          capture_output=True, text=True, timeout=120, env=env)


def test_analyze_from_the_command_line():
    res = kdsim("-c", "!analyze -v; q")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "use !analyze -v" in out.lower()
    assert "0: kd> !analyze -v; q" in out
    assert "DRIVER_IRQL_NOT_LESS_OR_EQUAL (d1)" in out
    assert "myfault!MyfaultHighIrqlFault+0x" in out
    assert "PROCESS_NAME:  notmyfault64.exe" in out
    assert "IMAGE_NAME:  myfault.sys" in out
    assert "Traceback" not in out + res.stderr


def test_same_seed_same_transcript_in_two_processes():
    script = "\n".join(TRANSCRIPT) + "\nq\n"
    first = kdsim(stdin=script, env_extra={"PYTHONHASHSEED": "1"})
    second = kdsim(stdin=script, env_extra={"PYTHONHASHSEED": "2"})
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout
    assert first.stdout.count("0: kd> ") == len(TRANSCRIPT) + 1
    other_seed = kdsim("--seed", "7", stdin=script)
    assert other_seed.stdout != first.stdout  # the seed moves the layout


@pytest.mark.parametrize("line, expected", [
    ("foo", "^ Syntax error in 'foo'"),
    ("? blah+1", "Couldn't resolve error at 'blah+1'"),
    ("? poi(0)", "Memory access error at ')'"),
    ("dt nt!_NOSUCHTYPE", "Symbol nt!_NOSUCHTYPE not found."),
    ("? 1 +", "Numeric expression missing from '<EOL>'"),
])
def test_bad_lines_get_kd_errors_and_the_session_goes_on(line, expected):
    res = kdsim(stdin=f"{line}\n? 1\nq\n")
    assert res.returncode == 0
    assert expected in res.stdout
    assert "Evaluate expression: 1 = 00000000`00000001" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr


def test_pipe_prints_the_prompt_before_each_command_and_ends_at_eof():
    res = kdsim(stdin=".echo one\n.echo two\n")
    assert res.returncode == 0
    assert "0: kd> one\n0: kd> two\n0: kd> \n" in res.stdout


def test_bad_scenario_file_names_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "x"\n[machine\ncpus = 2\n')
    res = kdsim(str(bad))
    assert res.returncode == 2
    assert f"{bad}:3:" in res.stderr
    assert "Traceback" not in res.stderr


def test_dash_c_runs_one_command_line_with_blocks():
    res = kdsim("-c", ".for (r $t0 = 0; @$t0 < 3; r $t0 = @$t0 + 1) "
                      "{ .printf \"n=%d\\n\", @$t0 }; q")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    at = lines.index("0: kd> .for (r $t0 = 0; @$t0 < 3; r $t0 = @$t0 + 1) "
                     "{ .printf \"n=%d\\n\", @$t0 }; q")
    assert lines[at + 1:at + 4] == ["n=0", "n=1", "n=2"]
