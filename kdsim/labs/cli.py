"""`kdsim lab list` and `kdsim lab start NAME`."""

from __future__ import annotations

import argparse
import sys

from kdsim.labs import catalog
from kdsim.labs.progress import Progress
from kdsim.labs.spec import LabError, parse_lab
from machine.scenario import ScenarioError, parse_scenario


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kdsim lab", description="Graded labs: list them or "
                                "start one (progress is kept in the user's data directory).")
    sub = p.add_subparsers(dest="action", required=True, metavar="{list,start}")
    sub.add_parser("list", help="the labs, easiest first, with your progress")
    start = sub.add_parser("start", help="boot a lab's machine and open the debugger on it")
    start.add_argument("name", help="the lab's name (see kdsim lab list)")
    from kdsim.cli import add_session_options

    add_session_options(start)
    return p.parse_args(argv)


def lab_main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.action == "list":
        return list_labs(sys.stdout)
    from kdsim.cli import session_options

    return start(args.name, session_options(args))


def list_labs(out) -> int:
    labs, errors = catalog.labs()
    for exc in errors:
        print(f"kdsim: skipping a lab: {exc}", file=sys.stderr)
    progress = Progress()
    rows = [("NAME", "DIFFICULTY", "KIND", "STATUS", "TITLE")]
    rows += [(s.name, s.difficulty, s.kind, progress.status(s.name), s.title) for s in labs]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        out.write("  ".join([*cells, row[4]]).rstrip() + "\n")
    if not labs:
        out.write("(no labs)\n")
    return 0


def start(name: str, opts) -> int:
    from kdsim.cli import (
        EXIT_INTERRUPTED,
        EXIT_USAGE,
        CommandFileError,
        app_view,
        check_command_file,
        interact,
        progress_watch,
        start_lab,
    )

    entry = catalog.find(name)
    spec = None
    try:
        if entry is not None:
            spec = parse_lab(entry.text, entry.path, entry.name)
        if spec is None:
            labs, _ = catalog.labs()
            names = ", ".join(s.name for s in labs) or "(none)"
            print(f"kdsim: no lab named '{name}'; the labs are: {names}", file=sys.stderr)
            return EXIT_USAGE
        assert entry is not None
        check_command_file(opts)
        lab = start_lab(spec, parse_scenario(entry.text, entry.path), watch=progress_watch())
    except (ScenarioError, LabError, CommandFileError) as exc:
        print(f"kdsim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("kdsim: interrupted while the machine was booting", file=sys.stderr)
        return EXIT_INTERRUPTED
    lab.mark_started()
    return interact(lab.app.session, lab.start_lines, opts, app_view(lambda: lab.app))
