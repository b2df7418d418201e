"""Lab commands: the story, hints, graded answers and a restart.

The application provides the lab as `Session.lab`, an object with the `LabHost`
protocol below; the debugger knows nothing else about how labs are stored or run.
"""

from __future__ import annotations

from typing import Protocol

from commands.registry import Result, command
from commands.target import Target

NO_LAB = "No lab is loaded; start one with kdsim lab start NAME"


class LabHost(Protocol):
    def intro(self) -> Result:
        """The lab's story and objectives."""

    def hint(self) -> Result:
        """The next hint of the ladder, or a message when none are left."""

    def submit(self, answers: str, radix: int) -> Result:
        """Grade `field=value ...` answers (numbers read in `radix`)."""

    def restart(self, settings: dict[str, object]) -> tuple[Target, int, Result]:
        """A new target run to the lab's stop: the target, its current processor and
        the start-up text to print (shown with the debugger `settings` kept)."""


# Debugger settings a restart keeps: what the command line set (-y, -i) and the prompt's
# run limits; everything about the old machine goes.
KEPT_SETTINGS = ("symbol_path", "symbol_cache", "image_path", "run_budget", "go_budget")


def _lab(s) -> LabHost | None:
    return getattr(s, "lab", None)


def _no_lab() -> Result:
    return Result([NO_LAB], {"error": "no lab"})


@command(".lab", syntax=".lab", help="Show the lab's story and objectives.")
def lab_cmd(s, args: str) -> Result:
    lab = _lab(s)
    return _no_lab() if lab is None else lab.intro()


@command(".hint", syntax=".hint",
         help="Show the lab's next hint (each .hint gives one more).")
def hint_cmd(s, args: str) -> Result:
    lab = _lab(s)
    return _no_lab() if lab is None else lab.hint()


@command(".submit", syntax=".submit field=value [field=value ...]",
         help="Grade answers against the lab's key (fields such as bugcheck, driver, "
              "routine, cause); says which are right, never the right values.")
def submit_cmd(s, args: str) -> Result:
    lab = _lab(s)
    return _no_lab() if lab is None else lab.submit(args, s.radix)


@command(".restart", syntax=".restart",
         help="Rebuild the lab's machine from the same scenario and seed and run it to "
              "the lab's starting point again; the session starts afresh on it.")
def restart_cmd(s, args: str) -> Result:
    lab = _lab(s)
    if lab is None:
        return _no_lab()
    settings = {name: getattr(s, name) for name in KEPT_SETTINGS}
    target, processor, shown = lab.restart(settings)
    # A fresh session state on the new target (nothing set on the old machine holds),
    # kept in the same object the prompt loop is using; the lab, the open log, the
    # state of the command line now running and the debugger settings stay.
    fresh = type(s)(target, processor=processor)
    fresh.lab, fresh.log, fresh.flow = s.lab, s.log, s.flow
    for name, value in settings.items():
        setattr(fresh, name, value)
    vars(s).clear()
    vars(s).update(vars(fresh))
    return shown
