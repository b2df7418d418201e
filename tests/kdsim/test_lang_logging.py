""".cls and the log file commands: what kd prints, and what the log holds."""

from __future__ import annotations

from tests.conftest import run


def test_cls_asks_the_front_end_to_clear(session) -> None:
    res = session.execute(".cls")
    assert len(res) == 1 and res[0].lines == [] and res[0].data == {"clear_screen": True}


def test_log_holds_each_line_with_its_prompt_and_output(session, tmp_path) -> None:
    log = tmp_path / "session.log"
    assert run(session, ".logfile") == ["No log file open"]
    assert run(session, f".logopen {log}") == [f"Opened log file '{log}'"]
    assert run(session, ".logfile") == [f"Log '{log}' open"]
    rax = run(session, "r rax; ? 1")
    assert run(session, ".logclose") == [f"Closing open log file {log}"]
    assert run(session, ".echo not logged") == ["not logged"]
    prompt = session.prompt
    assert log.read_text(encoding="utf-8").splitlines() == [
        f"{prompt}.logfile", f"Log '{log}' open",
        f"{prompt}r rax; ? 1", *rax,
        f"{prompt}.logclose", f"Closing open log file {log}"]
    assert run(session, ".logclose") == ["No log file open"]


def test_logopen_overwrites_and_logappend_appends(session, tmp_path) -> None:
    log = tmp_path / "a.log"
    log.write_text("old\n", encoding="utf-8")
    run(session, f".logopen {log}")
    run(session, ".echo one")
    run(session, ".logclose")
    assert "old" not in log.read_text(encoding="utf-8")
    assert run(session, f".logappend {log}") == [f"Opened log file '{log}'"]
    run(session, ".echo two")
    run(session, ".logclose")
    text = log.read_text(encoding="utf-8")
    assert "one" in text and text.index("one") < text.index("two")


def test_opening_another_log_closes_the_first(session, tmp_path) -> None:
    first, second = tmp_path / "1.log", tmp_path / "2.log"
    run(session, f".logopen {first}")
    assert run(session, f".logopen {second}") == [f"Closing open log file {first}",
                                                 f"Opened log file '{second}'"]
    run(session, ".echo into second")
    run(session, ".logclose")
    assert "into second" not in first.read_text(encoding="utf-8")
    assert "into second" in second.read_text(encoding="utf-8")


def test_unicode_and_stamped_names(session, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(session, ".logopen /u u.log") == ["Opened log file 'u.log'"]
    run(session, ".echo wide")
    run(session, ".logclose")
    assert "wide" in (tmp_path / "u.log").read_text(encoding="utf-16")
    out = run(session, ".logopen /t t.log")
    name = out[0].split("'")[1]
    pid = session.evaluate("@$tpid")
    assert name.startswith(f"t_{pid:04X}_") and name.endswith(".log")
    run(session, ".logclose")
    assert (tmp_path / name).exists()
    assert run(session, ".logopen /t t.log") == out  # the target's clock: the same name


def test_default_name_and_bad_options(session, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(session, ".logopen") == ["Opened log file 'dbgeng.log'"]
    run(session, ".logclose")
    assert (tmp_path / "dbgeng.log").exists()
    assert run(session, ".logopen /q z.log") == ["Unknown option '/q'"]
    assert run(session, f".logopen {tmp_path}/no/such/dir/x.log")[0].startswith(
        "Unable to open log file")
