"""Lab progress, kept in the user's data directory as progress.json.

A file that cannot be read or understood is reported once and replaced by fresh
progress at the next save: kdsim never fails because of it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

FILE_NAME = "progress.json"
VERSION = 1
STATUSES = ("new", "started", "solved")


def data_dir() -> Path:
    """$KDSIM_DATA_DIR, else $XDG_DATA_HOME/kdsim, else ~/.local/share/kdsim."""
    explicit = os.environ.get("KDSIM_DATA_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg:
        return Path(xdg) / "kdsim"
    return Path.home() / ".local" / "share" / "kdsim"


@dataclass
class LabProgress:
    status: str = "new"
    hints_used: int = 0
    attempts: int = 0


def _record(raw: object) -> LabProgress:
    """One lab's entry, or ValueError when it is not the shape this version writes."""
    if not isinstance(raw, dict):
        raise ValueError("a lab entry is not an object")
    rec = LabProgress(raw.get("status", "new"), raw.get("hints_used", 0),
                      raw.get("attempts", 0))
    if rec.status not in STATUSES:
        raise ValueError(f"unknown status {rec.status!r}")
    for n in (rec.hints_used, rec.attempts):
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError("a count is not a non-negative integer")
    return rec


class Progress:
    def __init__(self, path: Path | None = None, warn: TextIO | None = None) -> None:
        self.path = path or data_dir() / FILE_NAME
        self.warn = warn if warn is not None else sys.stderr
        self.labs: dict[str, LabProgress] = {}
        self._warned = False
        self.load()

    def _report(self, message: str) -> None:
        if not self._warned:  # once per run: the user needs to hear it, not repeatedly
            self._warned = True
            self.warn.write(f"kdsim: {message}\n")
            self.warn.flush()

    def load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            self._report(f"cannot read {self.path} ({exc.strerror}); starting with fresh "
                         "lab progress")
            return
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("labs"), dict):
                raise ValueError("no labs table")
            self.labs = {str(k): _record(v) for k, v in data["labs"].items()}
        except ValueError as exc:
            self.labs = {}
            self._report(f"{self.path} is corrupt ({exc}); starting with fresh lab progress")

    def save(self) -> None:
        data = {"version": VERSION,
                "labs": {k: asdict(v) for k, v in sorted(self.labs.items())}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=2) + "\n")
            os.replace(tmp, self.path)  # a crash mid-write leaves the old file whole
        except OSError as exc:
            self._report(f"cannot save lab progress to {self.path} ({exc.strerror})")

    def get(self, lab: str) -> LabProgress:
        return self.labs.get(lab, LabProgress())

    def status(self, lab: str) -> str:
        return self.get(lab).status

    def _update(self, lab: str) -> LabProgress:
        rec = self.labs.setdefault(lab, LabProgress())
        if rec.status == "new":
            rec.status = "started"
        return rec

    def started(self, lab: str) -> None:
        self._update(lab)
        self.save()

    def hint_seen(self, lab: str, count: int) -> None:
        rec = self._update(lab)
        rec.hints_used = max(rec.hints_used, count)
        self.save()

    def attempted(self, lab: str, solved: bool) -> None:
        rec = self._update(lab)
        rec.attempts += 1
        if solved:
            rec.status = "solved"
        self.save()
