"""Benchmarks of crash-dump files.  Run: python bench/dump_files.py [repeats]

For the library's largest machine (the scenario whose physical memory has the most
pages) and for the default myfault crash: the median time to write a full (`.dump /f`)
and a bitmap (`.dump /ka`) dump, and to open each (read, check, build the target) and
run `k` on it; with the files' sizes.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from commands.session import Session  # noqa: E402
from kdsim.app import App  # noqa: E402
from kdsim.dumptarget import open_dump  # noqa: E402
from machine.scenario import load_scenario  # noqa: E402


def largest_scenario() -> tuple[str, App]:
    best: tuple[int, str, App] | None = None
    for path in sorted((ROOT / "scenarios").glob("*.toml")):
        app = App.start(load_scenario(str(path)))
        pages = len(app.machine.phys.frames)
        if best is None or pages > best[0]:
            best = (pages, path.stem, app)
    assert best is not None
    return best[1], best[2]


def measure(name: str, app: App, repeats: int, tmp: Path) -> None:
    session = Session(app.target, processor=app.target.stop_processor)
    pages = len(app.machine.phys.frames)
    for option in ("/f", "/ka"):
        path = tmp / f"{name}{option.replace('/', '-')}.dmp"
        writes, opens = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = session.execute(f'.dump {option} /o "{path}"')[0].lines
            t1 = time.perf_counter()
            target = open_dump(str(path))
            opened = Session(target, processor=target.stop_processor)
            opened.execute("k")
            t2 = time.perf_counter()
            assert out[-1] == "Dump successfully written"
            writes.append(t1 - t0)
            opens.append(t2 - t1)
        size = path.stat().st_size
        print(f"{name} ({pages} pages) .dump {option:3}  {size:>9,} bytes  "
              f"write median {statistics.median(writes):.3f} s  "
              f"open + k median {statistics.median(opens):.3f} s")


def main(repeats: int) -> None:
    name, app = largest_scenario()
    with tempfile.TemporaryDirectory() as tmp:
        measure(name, app, repeats, Path(tmp))
        measure("myfault", App.start(load_scenario(str(ROOT / "scenarios" / "myfault.toml"))),
                repeats, Path(tmp))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
