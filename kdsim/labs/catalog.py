"""The labs among the built-in scenarios (the `scenarios` package)."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from kdsim.labs.spec import DIFFICULTIES, LabError, LabSpec, parse_lab

INTRO = "myfault"  # the lab plain `kdsim` opens


@dataclass(frozen=True)
class Entry:
    name: str
    path: str  # as scenario errors name it
    text: str


def scenario_entries() -> list[Entry]:
    """Every scenario file in the package, by name."""
    root = resources.files("scenarios")
    out = []
    for item in root.iterdir():
        if item.name.endswith(".toml") and item.is_file():
            out.append(Entry(item.name[:-5], f"scenarios/{item.name}", item.read_text()))
    return sorted(out, key=lambda e: e.name)


def labs() -> tuple[list[LabSpec], list[LabError]]:
    """The built-in labs, easiest first then by name, and the errors of bad ones."""
    found, errors = [], []
    for entry in scenario_entries():
        try:
            spec = parse_lab(entry.text, entry.path, entry.name)
        except LabError as exc:
            errors.append(exc)
            continue
        if spec is not None:
            found.append(spec)
    found.sort(key=lambda s: (DIFFICULTIES.index(s.difficulty), s.name))
    return found, errors


def find(name: str) -> Entry | None:
    return next((e for e in scenario_entries() if e.name == name), None)
