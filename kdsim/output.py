"""Where a session's text goes: kd's plain text (coloured on a terminal that wants it) or,
with --json, one JSON object per line built from the commands' structured data.

docs/json.md describes the objects; docs/kdsim-json.schema.json is their schema.
"""

from __future__ import annotations

import json
from typing import TextIO

from commands.registry import Result


class Output:
    def __init__(self, stream: TextIO, json_mode: bool = False) -> None:
        self.stream = stream
        self.json_mode = json_mode

    def _object(self, obj: dict) -> None:
        self.stream.write(json.dumps(obj, ensure_ascii=False) + "\n")

    def text(self, lines: list[str], kind: str = "banner") -> None:
        """Text that is not a command's output: the start-up banner, a notice."""
        if self.json_mode:
            self._object({"kind": kind, "lines": lines})
        else:
            for line in lines:
                self.stream.write(line + "\n")
        self.stream.flush()

    def prompt(self, prompt: str) -> None:
        """The prompt before input is read (kd on a pipe prints it, without a newline)."""
        if not self.json_mode:
            self.stream.write(prompt)
            self.stream.flush()

    def echo(self, prompt: str, line: str) -> None:
        """A command line the debugger runs on its own (-c, -cf), echoed as kd does."""
        if not self.json_mode:
            self.stream.write(f"{prompt}{line}\n")

    def results(self, prompt: str, results: list[Result]) -> bool:
        """Write command results (flushed); True when one of them asked to quit."""
        quit_ = False
        for res in results:
            if self.json_mode:
                self._object({"kind": "command", "prompt": prompt, "command": res.command,
                              "lines": res.lines, "data": _jsonable(res.data)})
            else:
                for line in res.lines:
                    self.stream.write(line + "\n")
            if res.data == "quit":
                quit_ = True
        self.stream.flush()
        return quit_


def _jsonable(value: object) -> object:
    """Command data as JSON: tuples become lists; anything JSON cannot hold becomes
    its text, so a command's data can never stop the output."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
