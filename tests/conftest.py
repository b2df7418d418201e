"""Shared fixtures: one crashed default machine per test session (it is deterministic)."""

from __future__ import annotations

import pytest

from commands.session import Session
from kdsim.app import App
from machine.scenario import builtin_scenario


@pytest.fixture(scope="session")
def app() -> App:
    return App.start(builtin_scenario("myfault"))


@pytest.fixture()
def session(app: App) -> Session:
    """A fresh debugger session (no leftover .trap context) on the shared machine."""
    return Session(app.target, processor=app.target.stop_processor)


def run(session: Session, line: str) -> list[str]:
    out: list[str] = []
    for res in session.execute(line):
        out += res.lines
    return out
