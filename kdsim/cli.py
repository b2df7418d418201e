"""`kdsim`: open a scenario's machine in the debugger, like kd on a crashed target.

`kdsim lab list` and `kdsim lab start NAME` work the graded labs (docs/labs.md);
`kdsim scenario check FILE...` checks scenario files without running them
(docs/scenarios.md).  Exit codes: 0 after `q` or end of input; 2 for a bad command line
or scenario file.
"""

from __future__ import annotations

import argparse
import sys

from commands.registry import Result
from kdsim.app import VERSION, App
from kdsim.labs.catalog import INTRO
from kdsim.labs.runtime import LabRuntime
from kdsim.labs.spec import LabError, LabSpec, parse_lab
from machine.scenario import Scenario, ScenarioError, builtin_scenario, load_scenario


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kdsim", description=__doc__.splitlines()[0],
                                epilog="kdsim lab list | kdsim lab start NAME: graded labs; "
                                       "kdsim scenario check FILE...: check scenario files")
    p.add_argument("scenario", nargs="?", help="scenario file (default: the built-in myfault)")
    p.add_argument("-c", dest="commands",
                   help="a command line to run first (commands separated by ';', blocks "
                        "and .if/.for as at the prompt)")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--cpus", type=int, help="override the scenario's processor count")
    p.add_argument("--version", action="version", version=f"kdsim {VERSION}")
    return p.parse_args(argv)


def emit(out, results: list[Result]) -> bool:
    """Print command results; True when one of them asked to quit."""
    quit_ = False
    for res in results:
        for line in res.lines:
            out.write(line + "\n")
        if res.data == "quit":
            quit_ = True
    out.flush()
    return quit_


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["lab"]:
        from kdsim.labs.cli import lab_main

        return lab_main(argv[1:])
    if argv[:1] == ["scenario"]:
        return scenario_main(argv[1:])
    args = parse_args(argv)
    try:
        scen = load_scenario(args.scenario) if args.scenario else builtin_scenario(INTRO)
        if args.cpus is not None and not 1 <= args.cpus <= 64:
            raise SystemExit("kdsim: --cpus must be between 1 and 64")
        spec = parse_lab(scen.text, scen.path, INTRO if not args.scenario else scen.name)
        if spec is None:
            app = App.start(scen, seed=args.seed, cpus=args.cpus)
            return interact(app.session, app.banner(), args.commands)
        lab = start_lab(spec, scen, args.seed, args.cpus)
    except (ScenarioError, LabError) as exc:
        print(f"kdsim: {exc}", file=sys.stderr)
        return 2
    return interact(lab.app.session, lab.start_lines(), args.commands)


def scenario_main(argv: list[str]) -> int:
    """`kdsim scenario check FILE...`: each file checked as `kdsim FILE` would load it
    (TOML, the schema, driver sources, assembly, the [lab] table), nothing run."""
    p = argparse.ArgumentParser(prog="kdsim scenario",
                                description="check scenario files without running them")
    sub = p.add_subparsers(dest="action", required=True)
    check = sub.add_parser("check", help="check scenario files; exit code 2 if one is bad")
    check.add_argument("files", nargs="+", metavar="FILE")
    args = p.parse_args(argv)
    failed = False
    for path in args.files:
        try:
            line = check_file(path)
        except (ScenarioError, LabError) as exc:
            print(f"kdsim: {exc}", file=sys.stderr)
            failed = True
            continue
        print(line)
    sys.stdout.flush()
    return 2 if failed else 0


def check_file(path: str) -> str:
    """`FILE: ok (...)` with what the file holds; ScenarioError or LabError if it is bad."""
    from machine.scenario_check import check_scenario

    scen = load_scenario(path)
    lab = parse_lab(scen.text, scen.path, scen.name)
    summary = check_scenario(scen)

    def count(n: int, what: str) -> str:
        return f"{n} {what}{'' if n == 1 else 's'}"

    parts = [count(summary.drivers, "driver"), count(summary.routines, "routine"),
             count(summary.events, "event")]
    if lab is not None:
        parts.append(f'lab "{lab.title}"')
    return f"{path}: ok ({', '.join(parts)})"


def start_lab(spec: LabSpec, scen: Scenario, seed: int | None = None,
              cpus: int | None = None) -> LabRuntime:
    """Boot a lab's scenario and run it to the lab's stop; the session gets the lab."""
    ticks = spec.stop.ticks if spec.stop.until == "ticks" else None
    lab = LabRuntime(spec, lambda: App.start(scen, seed=seed, cpus=cpus, ticks=ticks))
    lab.app.session.lab = lab
    return lab


def interact(session, start_lines: list[str], commands: str | None) -> int:
    """Print the start-up text, run -c's command line, then the prompt or the pipe."""
    out = sys.stdout
    for line in start_lines:
        out.write(line + "\n")
    if commands:
        # One command line, as kd's -c runs it: echoed once, then its commands' output.
        out.write(f"{session.prompt}{commands.strip()}\n")
        if emit(out, session.execute(commands)):
            return 0
    if sys.stdin.isatty() and sys.stdout.isatty():
        from kdsim.repl import repl

        return repl(session, out)
    return pipe(session, sys.stdin, out)


def pipe(session, stdin, out) -> int:
    """kd on a pipe: print the prompt, read one command line, run it, repeat."""
    while True:
        out.write(session.prompt)
        out.flush()
        line = stdin.readline()
        if not line:
            out.write("\n")
            return 0
        if emit(out, session.execute(line.rstrip("\r\n"))):
            return 0
