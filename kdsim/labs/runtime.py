"""A lab being worked: the debugger's `Session.lab` (commands/lab_cmds.py's LabHost).

It owns the running App, so `.restart` can build the same machine again, and records
progress as the student goes.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable

from commands.registry import Result
from commands.target import Target
from kdsim.app import App
from kdsim.labs.grading import SubmissionError, grade
from kdsim.labs.progress import Progress
from kdsim.labs.spec import LabSpec


def intro_lines(spec: LabSpec) -> list[str]:
    """The story and objectives, as shown at start and by `.lab`."""
    fields = ", ".join(f.name for f in spec.answer)
    lines = [f"Lab {spec.name}: {spec.title} ({spec.difficulty}, {spec.kind})", "",
             *spec.story.splitlines(), "", "Objectives:"]
    lines += [f"  {i}. {text}" for i, text in enumerate(spec.objectives, 1)]
    lines += ["",
              f"Answer with .submit field=value ... (fields: {fields}).",
              ".hint gives a hint, .lab shows this again, .restart starts the lab over.",
              ""]
    return lines


class LabRuntime:
    def __init__(self, spec: LabSpec, start: Callable[[], App],
                 progress: Callable[[], Progress] = Progress) -> None:
        self.spec = spec
        self._start = start
        self._progress_factory = progress
        self._progress: Progress | None = None
        self.hints_shown = 0
        self.app = start()

    @property
    def progress(self) -> Progress:
        # Opened on first use: a session that never touches the lab leaves no file.
        if self._progress is None:
            self._progress = self._progress_factory()
        return self._progress

    def start_lines(self) -> list[str]:
        return self.app.banner() + intro_lines(self.spec)

    def mark_started(self) -> None:
        self.progress.started(self.spec.name)

    # -- LabHost ----------------------------------------------------------------------

    def intro(self) -> Result:
        self.mark_started()
        s = self.spec
        return Result(intro_lines(s), {"lab": s.name, "title": s.title,
                                       "difficulty": s.difficulty, "kind": s.kind,
                                       "story": s.story, "objectives": list(s.objectives)})

    def hint(self) -> Result:
        hints = self.spec.hints
        if not hints:
            self.mark_started()
            return Result(["This lab has no hints."], {"hint": None, "total": 0})
        if self.hints_shown >= len(hints):
            self.mark_started()
            return Result([f"No more hints: all {len(hints)} have been shown."],
                          {"hint": None, "total": len(hints)})
        self.hints_shown += 1
        self.progress.hint_seen(self.spec.name, self.hints_shown)
        text = hints[self.hints_shown - 1]
        lines = textwrap.wrap(f"Hint {self.hints_shown} of {len(hints)}: {text}", 79,
                              subsequent_indent="  ", break_on_hyphens=False)
        return Result(lines,
                      {"hint": self.hints_shown, "total": len(hints), "text": text})

    def submit(self, answers: str, radix: int) -> Result:
        try:
            result = grade(self.spec, answers, radix)
        except SubmissionError as exc:
            return Result([str(exc)], {"error": str(exc)})
        self.progress.attempted(self.spec.name, result.solved)
        return Result(result.lines(), {"fields": {f.name: f.right for f in result.fields},
                                       "solved": result.solved})

    def restart(self, settings: dict[str, object]) -> tuple[Target, int, Result]:
        self.app = self._start()
        for name, value in settings.items():  # the banner shows them (search paths)
            setattr(self.app.session, name, value)
        self.hints_shown = 0  # the lab starts over, hint ladder included
        target = self.app.target
        return target, target.stop_processor, Result(self.start_lines(), {"restart": True})
