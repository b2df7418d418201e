"""Shared by the dump tests: crashed machines of the library and their dump files."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from commands.session import Session
from kdsim.app import App
from kdsim.dumptarget import DumpTarget, open_dump
from machine.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


@cache
def crashed(name: str) -> App:
    """The scenario run to its bug check (no lab stop: a crash scenario ends there)."""
    app = App.start(load_scenario(str(SCENARIOS / f"{name}.toml")))
    assert app.machine.bugcheck is not None, name
    return app


def crash_scenarios() -> list[str]:
    """Every shipped scenario that ends in a bug check (its [lab] kind is crash)."""
    names = []
    for path in sorted(SCENARIOS.glob("*.toml")):
        if 'kind = "crash"' in path.read_text():
            names.append(path.stem)
    return names


def write(app: App, path: Path, option: str = "/f") -> Path:
    session = Session(app.target, processor=app.target.stop_processor)
    out = session.execute(f'.dump {option} /o "{path}"')
    assert out[0].lines[-1] == "Dump successfully written", out[0].lines
    return path


def dump_session(path: Path) -> tuple[DumpTarget, Session]:
    target = open_dump(str(path))
    return target, Session(target, processor=target.stop_processor)
