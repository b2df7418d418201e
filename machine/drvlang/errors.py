"""The one error type of the driver language: a message at a line and column of the
source text (1-based), which the scenario loader maps to the scenario file."""

from __future__ import annotations


class DriverLangError(Exception):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.message, self.line, self.column = message, line, column
