"""Lab progress in the user's data directory: where it lives, a round trip, and
recovery from a file that cannot be understood."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kdsim.labs.progress import LabProgress, Progress, data_dir


def test_the_data_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("KDSIM_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "x"))
    assert data_dir() == tmp_path / "d"
    monkeypatch.delenv("KDSIM_DATA_DIR")
    assert data_dir() == tmp_path / "x" / "kdsim"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home" / ".local" / "share" / "kdsim"


def test_round_trip(monkeypatch, tmp_path):
    monkeypatch.setenv("KDSIM_DATA_DIR", str(tmp_path))
    first = Progress()
    assert first.status("myfault") == "new"
    assert not (tmp_path / "progress.json").exists()  # nothing written until something happens
    first.started("myfault")
    first.hint_seen("myfault", 2)
    first.hint_seen("myfault", 1)  # the most hints seen in any session
    first.attempted("myfault", solved=False)
    first.attempted("other", solved=True)
    again = Progress()
    assert again.get("myfault") == LabProgress("started", 2, 1)
    assert again.get("other") == LabProgress("solved", 0, 1)
    again.attempted("other", solved=False)  # solved stays solved
    assert Progress().get("other") == LabProgress("solved", 0, 2)
    data = json.loads((tmp_path / "progress.json").read_text())
    assert data["version"] == 1 and sorted(data["labs"]) == ["myfault", "other"]


@pytest.mark.parametrize("content", [
    "{not json", "[]", '{"labs": []}', '{"labs": {"myfault": {"status": "won"}}}',
    '{"labs": {"myfault": {"attempts": -1}}}', '{"labs": {"myfault": 3}}', b"\xff\xfe{",
])
def test_a_corrupt_file_is_reported_once_and_replaced(tmp_path, content):
    path = tmp_path / "progress.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    warn = io.StringIO()
    progress = Progress(path, warn)
    assert progress.labs == {}
    progress.started("myfault")
    progress.attempted("myfault", solved=True)
    message = warn.getvalue()
    assert message.count("\n") == 1 and "is corrupt" in message and str(path) in message
    assert Progress(path, io.StringIO()).get("myfault") == LabProgress("solved", 0, 1)


def test_an_unwritable_directory_is_reported_not_raised(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    warn = io.StringIO()
    progress = Progress(Path(blocker) / "progress.json", warn)
    progress.started("myfault")
    progress.started("myfault")
    assert warn.getvalue().startswith("kdsim: cannot read ")  # one report per run
    assert warn.getvalue().count("\n") == 1
