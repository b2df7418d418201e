"""kd's command-line options on the real command line: -cf, -logo, -y, -i, -b, --json,
and the exit codes."""

from __future__ import annotations

import json

from tests.e2e.test_cli import kdsim
from tests.kdsim.test_budget import SPIN, budgeted

VERSION_LINE = "kdsim Windows Kernel Debugger Version 0.1.0 AMD64"


def test_the_banner_has_kds_shape():
    out = kdsim(stdin="q\n").stdout.splitlines()
    assert out[:3] == [VERSION_LINE, "", ""]
    assert out[3].startswith("Connected to Windows 10 19045 x64 target at (")
    assert out[3].endswith("), ptr64 TRUE")
    assert "Symbol search path is: <empty>" in out
    assert "Executable search path is: " in out
    assert "Windows 10 Kernel Version 19045 MP (2 procs) Free x64" in out
    assert "BugCheck D1, {ffff8001b0110000, 2, 0, fffff805738e115a}" in out


def test_search_paths_from_the_options_and_the_environment():
    res = kdsim("-y", r"srv*c:\symbols", "-i", r"c:\images", stdin=".sympath\n.exepath\n")
    assert r"Symbol search path is: srv*c:\symbols" in res.stdout.splitlines()
    assert res.stdout.count(r"Executable search path is: c:\images") == 2  # banner, .exepath
    env = kdsim(stdin=".sympath\n", env_extra={"_NT_SYMBOL_PATH": "srv*",
                                               "_NT_EXECUTABLE_IMAGE_PATH": r"d:\bin"})
    assert "Symbol search path is: srv*" in env.stdout.splitlines()
    assert r"Executable search path is: d:\bin" in env.stdout.splitlines()


def test_a_command_file_runs_first_echoed_then_c_then_the_pipe(tmp_path):
    script = tmp_path / "start.txt"
    script.write_text("r rip\n.echo from the file\n")
    res = kdsim("-cf", str(script), "-c", "? 1", stdin=".echo from stdin\n")
    assert res.returncode == 0
    tail = res.stdout[res.stdout.index("0: kd> r rip"):]
    assert tail == ("0: kd> r rip\nrip=fffff80554402a00\n"
                    "0: kd> .echo from the file\nfrom the file\n"
                    "0: kd> ? 1\nEvaluate expression: 1 = 00000000`00000001\n"
                    "0: kd> from stdin\n0: kd> \n")


def test_q_in_a_command_file_ends_the_session(tmp_path):
    script = tmp_path / "quit.txt"
    script.write_text("? 2\nq\n? 3\n")
    res = kdsim("-cf", str(script), stdin="? 4\n")
    assert res.returncode == 0
    assert "Evaluate expression: 2" in res.stdout
    assert "Evaluate expression: 3" not in res.stdout + res.stderr
    assert "Evaluate expression: 4" not in res.stdout


def test_bad_command_lines_exit_2_with_a_message(tmp_path):
    missing = kdsim("-cf", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2
    assert "kdsim: cannot read command file" in missing.stderr and "nope.txt" in missing.stderr
    assert kdsim("--cpus", "0").returncode == 2
    assert kdsim("--no-such-option").returncode == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[machine\n")
    res = kdsim(str(bad))
    assert res.returncode == 2 and "bad.toml:1:" in res.stderr
    assert "Traceback" not in missing.stderr + res.stderr


def test_logo_logs_the_start_text_and_every_command(tmp_path):
    log = tmp_path / "session.log"
    res = kdsim("-logo", str(log), stdin="r rip\n")
    assert res.stdout.startswith(f"Opened log file '{log}'\n{VERSION_LINE}\n")
    text = log.read_text()
    assert text.startswith(f"Opened log file '{log}'\n{VERSION_LINE}\n")
    assert text.endswith("0: kd> r rip\nrip=fffff80554402a00\n")


def test_b_breaks_in_right_after_boot_and_the_machine_runs_on():
    res = kdsim("-b", stdin="bp myfault!MyfaultHighIrqlFault\ng\nk 1\n")
    out = res.stdout
    assert "Break instruction exception - code 80000003 (first chance)" in out
    assert "BugCheck" not in out[:out.index("0: kd> ")]  # not crashed yet
    assert "Breakpoint 0 hit\nmyfault!MyfaultHighIrqlFault:" in out


def test_json_prints_one_object_per_line():
    res = kdsim("--json", stdin="r rip\nfoo\n.echo x; ? 1\n")
    objects = [json.loads(line) for line in res.stdout.splitlines()]
    assert objects[0]["kind"] == "banner" and objects[0]["lines"][0] == VERSION_LINE
    commands = objects[1:]
    assert [o["command"] for o in commands] == ["r rip", "foo", ".echo x", "? 1"]
    assert commands[0]["lines"] == ["rip=fffff80554402a00"]
    assert commands[0]["prompt"] == "0: kd> "
    assert commands[1]["data"]["error"]
    assert commands[3]["data"] == {"value": 1}


def test_a_scenario_that_never_stops_is_broken_into_on_a_pipe(tmp_path):
    scenario = tmp_path / "spin.toml"
    scenario.write_text(budgeted("spin", SPIN))
    res = kdsim(str(scenario), stdin="q\n")
    assert res.returncode == 0
    assert "its step budget); breaking in" in res.stdout
