"""Every data file the packages read at run time is declared as package data, so a
non-editable install carries it (the tests themselves import from the source tree)."""

from __future__ import annotations

import fnmatch
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_data_file_in_the_packages_is_package_data():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]
    tracked = subprocess.run(["git", "ls-files", "machine", "commands", "kdsim", "scenarios"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
    missing = []
    for name in tracked.split():
        path = Path(name)
        if path.suffix == ".py":
            continue
        covered = False
        for package, globs in declared.items():
            pkg_dir = Path(*package.split("."))
            if pkg_dir in path.parents:
                rel = path.relative_to(pkg_dir).as_posix()
                covered |= any(fnmatch.fnmatch(rel, g) for g in globs)
        if not covered:
            missing.append(name)
    assert missing == []
