"""`kdsim`: open a scenario's machine in the debugger, like kd on a crashed target.

Exit codes: 0 after `q` or end of input; 2 for a bad command line or scenario file.
"""

from __future__ import annotations

import argparse
import sys

from commands.registry import Result
from kdsim.app import VERSION, App
from machine.scenario import ScenarioError, builtin_scenario, load_scenario


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kdsim", description=__doc__.splitlines()[0])
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
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        scen = load_scenario(args.scenario) if args.scenario else builtin_scenario("myfault")
        if args.cpus is not None and not 1 <= args.cpus <= 64:
            raise SystemExit("kdsim: --cpus must be between 1 and 64")
        app = App.start(scen, seed=args.seed, cpus=args.cpus)
    except ScenarioError as exc:
        print(f"kdsim: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout
    for line in app.banner():
        out.write(line + "\n")
    session = app.session
    if args.commands:
        # One command line, as kd's -c runs it: echoed once, then its commands' output.
        out.write(f"{session.prompt}{args.commands.strip()}\n")
        if emit(out, session.execute(args.commands)):
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
