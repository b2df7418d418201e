"""The REPL in a real pseudo-terminal: the prompt, the toolbar, history across restarts,
Tab completion, Enter repeating a step, Ctrl+C breaking in to a running target."""

from __future__ import annotations

import re
import time

import pytest

from commands.session import Session
from kdsim.app import App
from kdsim.labs.catalog import INTRO
from kdsim.status import stopped_status
from machine.scenario import builtin_scenario
from tests.e2e.terminal import PROMPT, ROOT, Terminal
from tests.kdsim.test_budget import budgeted

# A system thread that spins once the boot has settled: the scenario's run never ends.
LATE_SPIN = """
global ThreadHandle: u64;
global Spins: u64;
global Interval: i64 = -1000000;
routine DriverEntry(drv: ptr, reg: ptr): u32 {
    return PsCreateSystemThread(&ThreadHandle, 0x1FFFFF, NULL, NULL, NULL, &Spin, 0);
}
routine Spin(context: ptr) {
    KeDelayExecutionThread(KernelMode, FALSE, &Interval);
    while (TRUE) { Spins += 1; }
}
"""


@pytest.fixture()
def terminals(tmp_path):
    opened: list[Terminal] = []

    def open_terminal(*args: str, **kw) -> Terminal:
        term = Terminal(*args, data_dir=tmp_path / "data", **kw)
        opened.append(term)
        return term

    yield open_terminal
    for term in opened:
        term.close()


def in_process(*commands: str, ticks: int | None = None) -> list[list[str]]:
    app = App.start(builtin_scenario(INTRO), ticks=ticks)
    session = Session(app.target, processor=app.target.stop_processor)
    return [[line for res in session.execute(c) for line in res.lines] for c in commands]


def test_prompt_and_toolbar(terminals):
    app = App.start(builtin_scenario(INTRO))
    toolbar = stopped_status(app.session, INTRO).text()
    assert toolbar == ("scenario myfault | up 0 days 00:15:06.437 | crashed (bug check D1) "
                       "| IRQL 0:15 1:0")
    term = terminals()
    term.expect("BugCheck D1, ")
    screen = term.prompt()
    assert toolbar in screen
    assert term.quit() == 0


def test_history_is_kept_across_restarts(terminals, tmp_path):
    term = terminals()
    term.prompt()
    term.send("? 0x1234\r")
    term.expect("Evaluate expression: 4660 = ")
    term.prompt()
    assert term.quit() == 0
    history = (tmp_path / "data" / "history").read_text()
    assert "? 0x1234" in history
    again = terminals()
    again.prompt()
    again.send("\x1b[A")  # Up: the last line of the previous session
    again.send("\r")
    again.expect("Evaluate expression: 4660 = ")
    again.prompt()
    assert again.quit() == 0


def test_tab_completes_a_symbol_and_a_field(terminals):
    term = terminals()
    term.prompt()
    term.send("x nt!KeBugCheckE\t")
    term.expect("KeBugCheckEx")  # completed on the input line
    term.send("\r")
    term.expect(r"fffff805`54402a00 nt!KeBugCheckEx")
    term.prompt()
    term.send("dt nt!_KTHREAD WaitIr\t")
    term.expect("WaitIrql")  # completed on the input line
    term.send("\r")
    term.expect(r"\+0x186 WaitIrql : UChar")
    term.prompt()
    assert term.quit() == 0


def test_enter_on_an_empty_line_repeats_a_step_and_continues_a_display(terminals):
    commands = ["bp myfault!MyfaultHighIrqlFault", "g", "p", "p", "r rip", "db @rsp L10",
                "db"]
    expected = in_process(*commands, ticks=0)
    rip = expected[4][0]
    assert rip == "rip=fffff805738e1145"  # two steps from the breakpoint
    term = terminals("-b")
    term.prompt()
    for line in ("bp myfault!MyfaultHighIrqlFault", "g"):
        term.send(line + "\r")
        term.prompt()
    term.send("p\r")
    term.expect(re.escape(expected[2][0]))
    term.prompt()
    term.send("\r")  # Enter: p again
    term.expect(re.escape(expected[3][0]))
    term.prompt()
    term.send("r rip\r")
    term.expect(rip)
    term.prompt()
    term.send("db @rsp L10\r")
    term.expect(re.escape(expected[5][0]))
    term.prompt()
    term.send("\r")  # Enter: the display goes on where it ended
    term.expect(re.escape(expected[6][-1]))
    term.prompt()
    term.send("k\r")
    term.prompt()
    term.send("\r")  # not a command kd repeats: nothing runs
    term.prompt()
    term.send(".echo done\r")
    text = term.expect("done")
    assert "Child-SP" not in text
    term.prompt()
    assert term.quit() == 0


def test_ctrl_c_breaks_in_while_g_runs_on_a_hang(terminals):
    term = terminals(str(ROOT / "scenarios" / "myfault-irp-hang.toml"))
    term.prompt()
    term.send("g\r")
    # The progress display shows the machine running (a go at the prompt runs until
    # it stops or Ctrl+C, as kd's does).
    term.expect(r"running \| up \d+ days")
    time.sleep(0.5)
    term.send("\x03")
    text = term.expect(PROMPT)
    assert "Break instruction exception - code 80000003 (first chance)" in text
    assert "You are seeing this message because you pressed either" in text
    assert "steps without an event" not in text
    term.send("? 1\r")  # the session goes on
    term.expect("Evaluate expression: 1 = ")
    term.prompt()
    assert term.quit() == 0


def test_ctrl_c_at_the_prompt_clears_the_line_and_q_quits(terminals):
    term = terminals()
    term.prompt()
    term.send("? 0x7")
    term.send("\x03")
    term.prompt()
    term.send("? 0x9\r")
    text = term.expect("Evaluate expression: 9 = ")
    assert "Evaluate expression: 7" not in text
    term.prompt()
    term.send("q\r")
    assert term.wait_exit() == 0


def test_colour_on_a_terminal_and_none_with_no_color(terminals):
    coloured = terminals(colour=True)
    coloured.prompt()
    coloured.send("k 1\r")
    coloured.expect("KeBugCheckEx")
    coloured.prompt()
    assert re.search(r"\x1b\[[0-9;]*m[0-9a-f]{8}`[0-9a-f]{8}", coloured.seen)
    assert coloured.quit() == 0
    plain = terminals()
    plain.prompt()
    plain.send("k 1\r")
    plain.expect("KeBugCheckEx")
    plain.prompt()
    output = plain.seen[plain.seen.index("Child-SP"):]
    assert "\x1b[0;38" not in output.split("kd>")[0]
    assert plain.quit() == 0


def test_ctrl_c_breaks_in_while_the_scenario_runs_at_start(terminals, tmp_path):
    """A scenario that never stops by itself: the start shows its progress, and Ctrl+C
    breaks in there, as kd's Ctrl+C does; the session opens at the break-in."""
    scenario = tmp_path / "spin.toml"
    scenario.write_text(budgeted("spin", LATE_SPIN, budget=2_000_000_000))
    term = terminals(str(scenario))
    term.expect(r"running \| up \d+ days")
    term.send("\x03")
    text = term.prompt()
    assert "Break instruction exception - code 80000003 (first chance)" in text
    assert "its step budget" not in text
    assert "Traceback" not in text
    assert term.quit() == 0
