"""`kdsim lab list`, `kdsim lab start NAME` and the lab commands, through the real
command line (cli.main with standard input and output redirected, and subprocesses)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from importlib import resources

import pytest

from kdsim import cli
from kdsim.labs import catalog
from kdsim.labs.catalog import Entry

SOLVE = (".submit bugcheck=d1 driver=myfault routine=MyfaultHighIrqlFault "
         "cause=paged-at-dispatch")
WRONG = ".submit bugcheck=0x50 driver=nt.sys routine=nt!KeBugCheckEx+0x10 cause=null-deref"
MYFAULT = (resources.files("scenarios") / "myfault.toml").read_text()
NO_LAB = MYFAULT.split("\n# The introductory lab")[0] + "\n"


@pytest.fixture(autouse=True)
def data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("KDSIM_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def kdsim(monkeypatch, capsys, argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def rows(listing: str) -> list[list[str]]:
    """`kdsim lab list`'s rows, split at the spaces that pad its columns."""
    return [line.split() for line in listing.splitlines()]


def progress(data_dir) -> dict:
    return json.loads((data_dir / "progress.json").read_text())["labs"]


def test_lab_list_shows_each_lab_with_its_status(monkeypatch, capsys, data_dir):
    code, out, err = kdsim(monkeypatch, capsys, ["lab", "list"])
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "DIFFICULTY", "KIND", "STATUS", "TITLE"]
    assert ["myfault", "easy", "crash", "new", "High", "IRQL", "fault"] in rows(out)
    kdsim(monkeypatch, capsys, ["lab", "start", "myfault"], "q\n")
    assert ["myfault", "easy", "crash", "started", "High", "IRQL", "fault"] in \
        rows(kdsim(monkeypatch, capsys, ["lab", "list"])[1])
    kdsim(monkeypatch, capsys, ["lab", "start", "myfault"], SOLVE + "\n")
    assert ["myfault", "easy", "crash", "solved", "High", "IRQL", "fault"] in \
        rows(kdsim(monkeypatch, capsys, ["lab", "list"])[1])


def test_lab_list_sorts_by_difficulty_then_name_and_skips_bad_labs(monkeypatch, capsys):
    def lab(name: str, difficulty: str) -> Entry:
        text = MYFAULT.replace('difficulty = "easy"', f'difficulty = "{difficulty}"')
        return Entry(name, f"scenarios/{name}.toml", text)

    bad = Entry("broken", "scenarios/broken.toml", MYFAULT.replace('kind = "crash"',
                                                                   'kind = "oops"'))
    entries = [lab("b", "hard"), lab("a", "hard"), bad, lab("z", "easy"), lab("m", "medium"),
               Entry("plain", "scenarios/plain.toml", NO_LAB)]
    monkeypatch.setattr(catalog, "scenario_entries", lambda: entries)
    code, out, err = kdsim(monkeypatch, capsys, ["lab", "list"])
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["z", "m", "a", "b"]
    assert err.startswith("kdsim: skipping a lab: scenarios/broken.toml:")
    assert "`kind` must be one of" in err


def test_lab_start_runs_the_myfault_lab_and_grades_it(monkeypatch, capsys, data_dir):
    script = "\n".join([".lab", ".hint", ".hint", "!analyze -v", SOLVE, WRONG, "q"]) + "\n"
    code, out, err = kdsim(monkeypatch, capsys, ["lab", "start", "myfault"], script)
    assert code == 0 and err == "" and "Traceback" not in out
    banner, _, rest = out.partition("Lab myfault: High IRQL fault (easy, crash)")
    assert "BugCheck D1, {" in banner
    assert banner.startswith("kdsim Windows Kernel Debugger Version 0.1.0 AMD64\n")
    assert rest.index("Objectives:") < rest.index("0: kd> ")
    assert "  1. Name the bug check code and what it means." in rest
    assert "0: kd> Lab myfault: High IRQL fault (easy, crash)" in out  # .lab
    assert "0: kd> Hint 1 of 4: !analyze -v reads" in out
    assert "0: kd> Hint 2 of 4: The second parameter" in out
    assert "Hint 3 of 4" not in out
    assert "DRIVER_IRQL_NOT_LESS_OR_EQUAL (d1)" in out
    graded = out.split(SOLVE)[0] if SOLVE in out else out
    assert graded  # the commands are not echoed on a pipe
    right = ("0: kd> bugcheck: right\ndriver:   right\nroutine:  right\ncause:    right\n"
             "Solved: every answer the lab asks for is right.\n")
    wrong = ("0: kd> bugcheck: wrong\ndriver:   wrong\nroutine:  wrong\ncause:    wrong\n"
             "Not solved yet: still to answer right: bugcheck, driver, routine, cause.\n")
    assert right + wrong + "0: kd> " in out
    assert progress(data_dir) == {"myfault": {"status": "solved", "hints_used": 2,
                                              "attempts": 2}}


def test_hints_run_out_and_bad_submissions_are_explained(monkeypatch, capsys, data_dir):
    script = "\n".join([".hint"] * 5 + [".submit", ".submit colour=red",
                                        ".submit bugcheck=zz", ".submit driver"]) + "\n"
    code, out, _ = kdsim(monkeypatch, capsys, ["lab", "start", "myfault"], script)
    assert code == 0 and "Traceback" not in out
    assert "Hint 4 of 4: A page that is not present" in out
    assert "0: kd> No more hints: all 4 have been shown." in out
    assert "0: kd> Nothing to grade: give answers as field=value ..." in out
    assert "0: kd> Unknown field 'colour'; this lab grades: bugcheck, driver, routine, " \
           "cause" in out
    assert "0: kd> bugcheck: 'zz' is not a number" in out
    assert "0: kd> 'driver' is not field=value" in out
    assert progress(data_dir)["myfault"] == {"status": "started", "hints_used": 4,
                                             "attempts": 0}


def test_an_unknown_lab_name_lists_the_labs(monkeypatch, capsys, data_dir):
    code, out, err = kdsim(monkeypatch, capsys, ["lab", "start", "nosuch"])
    assert code == 2 and out == ""
    names = ", ".join(spec.name for spec in catalog.labs()[0])
    assert err == f"kdsim: no lab named 'nosuch'; the labs are: {names}\n"
    assert names.startswith("myfault") and "idt-hook" in names
    assert not data_dir.exists()


def test_lab_with_a_bad_action_is_a_usage_error(monkeypatch, capsys):
    with pytest.raises(SystemExit) as info:
        kdsim(monkeypatch, capsys, ["lab", "finish"])
    assert info.value.code == 2
    assert "invalid choice: 'finish'" in capsys.readouterr().err


def test_plain_kdsim_opens_the_introductory_lab(monkeypatch, capsys, data_dir):
    code, out, _ = kdsim(monkeypatch, capsys, [], "? 1\n")
    assert code == 0
    assert "Lab myfault: High IRQL fault (easy, crash)" in out
    assert "BugCheck D1, {" in out
    assert not data_dir.exists()  # a session that never uses the lab records nothing
    code, out, _ = kdsim(monkeypatch, capsys, [], ".hint\n")
    assert "0: kd> Hint 1 of 4:" in out
    assert progress(data_dir)["myfault"]["status"] == "started"


def test_restart_gives_the_same_transcript_again(monkeypatch, capsys):
    work = ["r", "k", "r rax=1234", "bp myfault!MyfaultHighIrqlFault", "bl", ".hint", "r rax",
            "!analyze -v", "~1s", "k"]
    script = "\n".join(work + [".restart"] + work) + "\n"
    code, out, _ = kdsim(monkeypatch, capsys, ["lab", "start", "myfault"], script)
    assert code == 0 and "Traceback" not in out
    # The prompt before .restart is "1: kd> " (~1s); the restart prints the start text.
    version = "kdsim Windows Kernel Debugger Version 0.1.0 AMD64\n"
    first, restarted = out.split("1: kd> " + version)
    start, first_work = first.split("\n0: kd> ", 1)
    again_start, again_work = restarted.split("\n0: kd> ", 1)
    assert version + again_start == start
    assert again_work == first_work + "1: kd> \n"  # the pipe's last prompt, at its end
    assert "Hint 1 of 4" in again_work  # the lab starts over, hints included


def test_a_scenario_file_with_a_lab_gets_the_lab_and_one_without_does_not(
        monkeypatch, capsys, tmp_path, data_dir):
    with_lab = tmp_path / "mine.toml"
    with_lab.write_text(MYFAULT.replace('name = "myfault"\ntitle', 'name = "mine"\ntitle'))
    code, out, _ = kdsim(monkeypatch, capsys, [str(with_lab)], SOLVE + "\n")
    assert code == 0 and "Lab mine: High IRQL fault" in out and "Solved:" in out
    assert progress(data_dir)["mine"]["status"] == "solved"
    plain = tmp_path / "plain.toml"
    plain.write_text(NO_LAB)
    script = ".lab\n.hint\n.submit bugcheck=d1\n.restart\n"
    code, out, _ = kdsim(monkeypatch, capsys, [str(plain)], script)
    assert code == 0 and "Lab " not in out
    assert out.count("No lab is loaded; start one with kdsim lab start NAME") == 4


def test_a_bad_lab_table_in_a_scenario_file_names_its_place(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(MYFAULT.replace('cause = "paged-at-dispatch"', 'cause = "bad-luck"'))
    code, out, err = kdsim(monkeypatch, capsys, [str(bad)])
    line = MYFAULT.splitlines().index('cause = "paged-at-dispatch"') + 1
    assert code == 2 and out == ""
    assert err.startswith(f"kdsim: {bad}:{line}:9: `cause` must be one of: ")
    assert "Traceback" not in err


def test_a_tick_stop_breaks_in_before_the_crash(monkeypatch, capsys, tmp_path):
    hang = tmp_path / "early.toml"
    hang.write_text(MYFAULT.replace('until = "bugcheck"', 'until = "ticks"\nticks = 5'))
    script = "? poi(nt!KeTickCount)\n.restart\n? poi(nt!KeTickCount)\ng\n"
    code, out, _ = kdsim(monkeypatch, capsys, [str(hang)], script)
    assert code == 0 and "Traceback" not in out
    before_go, after_go = out.split("0: kd> KDTARGET: Refreshing KD connection")
    assert before_go.count("Break instruction exception - code 80000003 (first chance)") == 2
    assert "THIS IS NOT A BUG OR A SYSTEM CRASH" in out
    assert "BugCheck D1" not in before_go
    ticks = [line for line in out.splitlines() if line.startswith("0: kd> Evaluate")]
    assert len(ticks) == 2 and ticks[0] == ticks[1]
    assert ticks[0] == "0: kd> Evaluate expression: 58005 = 00000000`0000e295"  # 5 ticks in
    assert "*** Fatal System Error: 0x000000d1" in after_go  # g runs on to the crash


def kdsim_process(*args: str, stdin: str, data: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, KDSIM_DATA_DIR=data)
    return subprocess.run([sys.executable, "-m", "kdsim", *args], input=stdin,
                          capture_output=True, text=True, timeout=120, env=env)


def test_the_same_lab_gives_the_same_transcript_in_two_processes(tmp_path):
    script = "\n".join([".lab", ".hint", ".hint", "!analyze -v", SOLVE, WRONG, "q"]) + "\n"
    first = kdsim_process("lab", "start", "myfault", stdin=script, data=str(tmp_path / "a"))
    second = kdsim_process("lab", "start", "myfault", stdin=script, data=str(tmp_path / "b"))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout
    assert "Solved: every answer the lab asks for is right." in first.stdout
    listing = kdsim_process("lab", "list", stdin="", data=str(tmp_path / "a"))
    assert ["myfault", "easy", "crash", "solved", "High", "IRQL", "fault"] in \
        rows(listing.stdout)


def test_a_corrupt_progress_file_is_reported_and_kdsim_goes_on(tmp_path):
    (tmp_path / "progress.json").write_text("{oops")
    res = kdsim_process("lab", "start", "myfault", stdin=SOLVE + "\n", data=str(tmp_path))
    assert res.returncode == 0 and "Solved:" in res.stdout
    assert res.stderr.count("is corrupt") == 1 and "Traceback" not in res.stderr
    assert json.loads((tmp_path / "progress.json").read_text())["labs"]["myfault"][
        "status"] == "solved"
