"""The one exception the assembler raises."""

from __future__ import annotations


class AsmError(Exception):
    """An assembly error at a 1-based line and column of the source."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"{line}:{column}: {message}")
        self.message = message
        self.line = line
        self.column = column

    def __reduce__(self):
        return (type(self), (self.message, self.line, self.column))
