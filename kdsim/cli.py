"""`kdsim`: open a scenario's machine in the debugger, like kd on a crashed target.

`kdsim [options] [SCENARIO]` takes kd's options where they apply (-c, -cf, -logo, -y,
-i, -b) and kdsim's own (--seed, --cpus, --json).  `kdsim lab list` and
`kdsim lab start NAME` work the graded labs (docs/labs.md); `kdsim scenario check
FILE...` checks scenario files without running them (docs/scenarios.md).

Exit codes: 0 after `q` or the end of input; 2 for a bad command line, scenario file,
lab or command file; 130 for Ctrl+C before the machine had booted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from kdsim.app import VERSION, App, Watch
from kdsim.labs.catalog import INTRO
from kdsim.labs.runtime import LabRuntime
from kdsim.labs.spec import LabError, LabSpec, parse_lab
from kdsim.output import Output
from machine.scenario import Scenario, ScenarioError, builtin_scenario, load_scenario

EXIT_OK = 0
EXIT_USAGE = 2  # a bad command line, scenario, lab or command file
EXIT_NO_CRASH = 1  # kdsim run: the scenario did not bug-check
EXIT_INTERRUPTED = 130  # Ctrl+C before the machine had booted

EPILOG = """subcommands:
  kdsim lab list | kdsim lab start NAME   the graded labs
  kdsim scenario check FILE...            check scenario files without running them

exit codes: 0 after q or the end of input; 2 for a bad command line, scenario file,
lab or command file; 130 for Ctrl+C before the machine had booted"""


@dataclass
class SessionOptions:
    """How a session starts and talks: what kd's command line sets."""

    commands: str | None = None  # -c
    command_file: str | None = None  # -cf
    log_file: str | None = None  # -logo
    symbol_path: str | None = None  # -y
    image_path: str | None = None  # -i
    json: bool = False  # --json


def add_session_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", dest="commands", metavar="CMDS",
                   help="a command line to run at start (commands separated by ';')")
    p.add_argument("-cf", dest="command_file", metavar="FILE",
                   help="a command file to run at start, each line echoed as typed")
    p.add_argument("-logo", dest="log_file", metavar="FILE",
                   help="log the session to FILE (overwritten), as .logopen does")
    p.add_argument("-y", dest="symbol_path", metavar="PATH",
                   help="the symbol search path (default: $_NT_SYMBOL_PATH; stored, "
                        "the symbols come with the target)")
    p.add_argument("-i", dest="image_path", metavar="PATH",
                   help="the executable image search path (default: "
                        "$_NT_EXECUTABLE_IMAGE_PATH)")
    p.add_argument("--json", action="store_true",
                   help="print each command's result as one JSON object per line "
                        "(docs/json.md)")


def session_options(args: argparse.Namespace) -> SessionOptions:
    return SessionOptions(args.commands, args.command_file, args.log_file,
                          args.symbol_path, args.image_path, args.json)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kdsim", description=__doc__.splitlines()[0],
                                epilog=EPILOG, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", nargs="?", help="scenario file (default: the built-in myfault)")
    p.add_argument("-z", dest="dump", metavar="DUMP",
                   help="open a crash dump file (written by .dump or kdsim run --dump)")
    add_session_options(p)
    p.add_argument("-b", dest="initial_break", action="store_true",
                   help="break in as soon as the machine has booted, before the "
                        "scenario's events run (no lab grading)")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--cpus", type=int, help="override the scenario's processor count")
    p.add_argument("--version", action="version", version=f"kdsim {VERSION}")
    return p.parse_args(argv)


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["lab"]:
        from kdsim.labs.cli import lab_main

        return lab_main(argv[1:])
    if argv[:1] == ["scenario"]:
        return scenario_main(argv[1:])
    if argv[:1] == ["run"]:
        return run_main(argv[1:])
    args = parse_args(argv)
    opts = session_options(args)
    if args.dump is not None:
        return open_dump_file(args.dump, args.scenario, opts)
    watch = progress_watch()
    try:
        scen = load_scenario(args.scenario) if args.scenario else builtin_scenario(INTRO)
        if args.cpus is not None and not 1 <= args.cpus <= 64:
            print("kdsim: --cpus must be between 1 and 64", file=sys.stderr)
            return EXIT_USAGE
        check_command_file(opts)
        spec = parse_lab(scen.text, scen.path, INTRO if not args.scenario else scen.name)
        if spec is None or args.initial_break:
            ticks = 0 if args.initial_break else None
            app = App.start(scen, seed=args.seed, cpus=args.cpus, ticks=ticks, watch=watch)
            return interact(app.session, app.banner, opts, app_view(lambda: app))
        lab = start_lab(spec, scen, args.seed, args.cpus, watch)
    except (ScenarioError, LabError, CommandFileError) as exc:
        print(f"kdsim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        # Ctrl+C while the machine boots (its drivers' DriverEntry routines run there);
        # once booted, Ctrl+C breaks in to the scenario's run instead.
        print("kdsim: interrupted while the machine was booting", file=sys.stderr)
        return EXIT_INTERRUPTED
    return interact(lab.app.session, lab.start_lines, opts, app_view(lambda: lab.app))


class CommandFileError(Exception):
    pass


def check_command_file(opts: SessionOptions) -> None:
    """A -cf file that cannot be read is a bad command line: found before booting."""
    if opts.command_file is not None:
        try:
            with open(opts.command_file, encoding="utf-8", errors="replace") as f:
                f.read(1)
        except (OSError, ValueError) as exc:
            raise CommandFileError(f"cannot read command file '{opts.command_file}': "
                                   f"{getattr(exc, 'strerror', None) or exc}") from None


def terminal_stream(opts: SessionOptions):
    """Standard output, through the colouring writer on a terminal that wants colour;
    plain kd text on a pipe, with NO_COLOR, or as JSON."""
    if opts.json or not interactive():
        return sys.stdout
    from kdsim.colour import ColourWriter, use_colour

    return ColourWriter(sys.stdout) if use_colour(sys.stdout, os.environ) else sys.stdout


def progress_watch() -> Watch:
    """How the scenario's run at start is watched: Ctrl+C breaks in to it, and on a
    terminal a progress display shows it."""
    from kdsim.progress import startup_watch

    return startup_watch(display=interactive())


def open_dump_file(path: str, scenario: str | None, opts: SessionOptions) -> int:
    """`kdsim -z DUMP`: the debugger on a dump file (run control is refused, as on kd)."""
    from commands.session import Session
    from kdsim.app import dump_banner
    from kdsim.dumptarget import DumpOpenError, open_dump

    if scenario is not None:
        print("kdsim: give a scenario or -z DUMP, not both", file=sys.stderr)
        return EXIT_USAGE
    try:
        check_command_file(opts)
        target = open_dump(path)
    except (DumpOpenError, CommandFileError) as exc:
        print(f"kdsim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    session = Session(target, processor=target.stop_processor)
    name = (target.scenario or {}).get("name") or os.path.basename(path)
    return interact(session, lambda: dump_banner(session, target), opts,
                    TargetView(lambda: str(name), lambda: None))


def run_main(argv: list[str]) -> int:
    """`kdsim run SCENARIO --dump FILE`: run the scenario as `kdsim SCENARIO` does and,
    when it bug-checks, write the dump Windows would (MEMORY.DMP); no debugger."""
    p = argparse.ArgumentParser(prog="kdsim run", description="run a scenario to its "
                                "bug check and write a crash dump, as Windows does")
    p.add_argument("scenario", help="scenario file")
    p.add_argument("--dump", required=True, metavar="FILE", help="the dump file to write")
    p.add_argument("--bitmap", action="store_true", help="a bitmap dump (default: full)")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--cpus", type=int, help="override the scenario's processor count")
    args = p.parse_args(argv)
    from commands.crashdump import DUMP_BITMAP, DUMP_FULL
    from commands.dump_cmd import write_dump
    from commands.errors import KdError

    try:
        scen = load_scenario(args.scenario)
        app = App.start(scen, seed=args.seed, cpus=args.cpus, watch=progress_watch())
    except ScenarioError as exc:
        print(f"kdsim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if app.machine.bugcheck is None:
        print(f"kdsim: {args.scenario} did not bug-check; no dump written", file=sys.stderr)
        return EXIT_NO_CRASH
    try:
        size = write_dump(app.session, args.dump, DUMP_BITMAP if args.bitmap else DUMP_FULL,
                          overwrite=True)
    except KdError as exc:
        print(f"kdsim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    code = app.machine.bugcheck.code
    print(f"BugCheck {code:X}: dump written to {args.dump} ({size} bytes)")
    return EXIT_OK


@dataclass
class TargetView:
    """What the prompt shows of the target beyond the debugger: the scenario's name for
    the toolbar, and the machine (None for a dump) for the progress display."""

    scenario_name: Callable[[], str]
    machine: Callable[[], object | None]


def app_view(current: Callable[[], App]) -> TargetView:
    return TargetView(lambda: current().scenario.name, lambda: current().machine)


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
              cpus: int | None = None, watch: Watch | None = None) -> LabRuntime:
    """Boot a lab's scenario and run it to the lab's stop; the session gets the lab."""
    ticks = spec.stop.ticks if spec.stop.until == "ticks" else None
    lab = LabRuntime(spec, lambda: App.start(scen, seed=seed, cpus=cpus, ticks=ticks,
                                             watch=watch))
    lab.app.session.lab = lab
    return lab


def interact(session, start_lines: Callable[[], list[str]], opts: SessionOptions,
             view: TargetView) -> int:
    """Set the session up from the options, print the start-up text, run -cf's file and
    -c's command line, then the prompt (a terminal) or kd on a pipe."""
    out = Output(terminal_stream(opts), json_mode=opts.json)
    env = os.environ
    symbol_path = opts.symbol_path
    if symbol_path is None:
        parts = [env.get("_NT_ALT_SYMBOL_PATH", ""), env.get("_NT_SYMBOL_PATH", "")]
        symbol_path = ";".join(p for p in parts if p)
    session.symbol_path = symbol_path
    session.image_path = (opts.image_path if opts.image_path is not None
                          else env.get("_NT_EXECUTABLE_IMAGE_PATH", ""))
    notices: list[str] = []
    if opts.log_file is not None:
        from commands.lang_state import LogFile

        try:
            handle = open(opts.log_file, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            print(f"kdsim: cannot open log file '{opts.log_file}': {exc.strerror}",
                  file=sys.stderr)
            return EXIT_USAGE
        session.log = LogFile(opts.log_file, handle)
        notices.append(f"Opened log file '{opts.log_file}'")
    lines = notices + start_lines()
    out.text(lines)
    if session.log is not None:
        session.log.write_lines(lines)
    if opts.command_file is not None:
        from kdsim.pipe import run_stream

        with open(opts.command_file, encoding="utf-8", errors="replace") as f:
            if run_stream(session, f, out, echo=True):
                return EXIT_OK
    if opts.commands:
        # One command line, as kd's -c runs it: echoed once, then its commands' output.
        prompt = session.prompt
        out.echo(prompt, opts.commands.strip())
        if out.results(prompt, session.execute(opts.commands)):
            return EXIT_OK
    if interactive():
        from kdsim.repl import repl

        return repl(session, out, view)
    from kdsim.pipe import run_stream

    run_stream(session, sys.stdin, out)
    return EXIT_OK
