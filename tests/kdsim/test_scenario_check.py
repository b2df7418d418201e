"""`kdsim scenario check FILE...`: scenario files checked without running them, through
the real command line; every scenario shipped in scenarios/ passes."""

from __future__ import annotations

from importlib import resources

import pytest

from kdsim import cli
from machine import machine as machine_module

SCENARIOS = sorted(p.name for p in resources.files("scenarios").iterdir()
                   if p.name.endswith(".toml"))
MYFAULT = (resources.files("scenarios") / "myfault.toml").read_text()


def check(capsys, *files: str) -> tuple[int, str, str]:
    code = cli.main(["scenario", "check", *files])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def never_run(monkeypatch):
    """Checking must not run the machine: a run fails the test."""
    def refuse(self, *args, **kwargs):
        raise AssertionError("the check ran the machine")
    monkeypatch.setattr(machine_module.Machine, "_run", refuse)


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_shipped_scenario_passes(name, capsys, never_run):
    path = str(resources.files("scenarios") / name)
    code, out, err = check(capsys, path)
    assert (code, err) == (0, "")
    assert out.startswith(f"{path}: ok (") and out.count("\n") == 1


def test_the_summary_counts_drivers_routines_events_and_names_the_lab(capsys, never_run):
    path = str(resources.files("scenarios") / "myfault.toml")
    code, out, _ = check(capsys, path)
    assert code == 0
    assert out == f'{path}: ok (1 driver, 6 routines, 2 events, lab "High IRQL fault")\n'


def test_a_bad_file_is_reported_and_the_others_still_checked(tmp_path, capsys, never_run):
    good = tmp_path / "good.toml"
    good.write_text(MYFAULT.split("\n# The introductory lab")[0] + "\n")
    bad = tmp_path / "bad.toml"
    bad.write_text(MYFAULT.replace("cpus = 2", "cpus = 128"))
    code, out, err = check(capsys, str(bad), str(good))
    assert code == 2
    line = MYFAULT.splitlines().index("cpus = 2") + 1
    assert err == f"kdsim: {bad}:{line}:8: `cpus` must be from 1 to 64, not 128\n"
    assert out == f"{good}: ok (1 driver, 6 routines, 2 events)\n"


def test_assembly_and_lab_errors_are_found_without_running(tmp_path, capsys, never_run):
    asm = tmp_path / "asm.toml"
    asm.write_text(MYFAULT.replace("call    MyfaultHighIrqlFault", "call    MyfaultHighIrql"))
    code, _, err = check(capsys, str(asm))
    lines = MYFAULT.splitlines()
    row = next(i for i, t in enumerate(lines) if "call    MyfaultHighIrqlFault" in t) + 1
    assert code == 2
    assert err == (f"kdsim: {asm}:{row}:13: in myfault!MyfaultDispatchIoctl: unknown symbol "
                   "'MyfaultHighIrql'\n")
    lab = tmp_path / "lab.toml"
    lab.write_text(MYFAULT.replace('cause = "paged-at-dispatch"', 'cause = "gremlins"'))
    code, _, err = check(capsys, str(lab))
    assert code == 2 and err.startswith(f"kdsim: {lab}:") and "`cause` must be one of" in err


def test_kdsim_file_gives_the_same_error(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(MYFAULT.replace('action = "trim_paged_pool"', 'action = "trim"'))
    code, _, err = check(capsys, str(bad))
    assert code == 2
    assert cli.main([str(bad)]) == 2
    _, again = capsys.readouterr()
    assert again == err and "unknown event action 'trim'" in err


def test_a_missing_file_and_a_missing_action_are_usage_errors(capsys):
    code, _, err = check(capsys, "no/such/file.toml")
    assert code == 2 and err.startswith("kdsim: no/such/file.toml:")
    with pytest.raises(SystemExit) as info:
        cli.main(["scenario"])
    assert info.value.code == 2
