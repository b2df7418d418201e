"""Errors that kd reports for a command line, each carrying the exact line kd prints.

kd reports errors in two shapes:

* expression errors, found while an argument is evaluated, quote the text from where the
  evaluator failed to the end of the argument::

      Couldn't resolve error at 'foo+1'
      Memory access error at ')'
      Numeric expression missing from '<EOL>'

* command errors, found while the command itself is parsed, quote the whole command and
  put a caret under the failing column, indented by the width of the prompt::

      0: kd> xyz
             ^ Syntax error in 'xyz'

`str(e)` is the printed line.  For command errors that is the line without the caret's
indentation; `e.line(prompt)` gives the full line for a given prompt.
"""

from __future__ import annotations

__all__ = [
    "KdError",
    "KdExpressionError",
    "KdSyntaxError",
    "KdMissingExpressionError",
    "KdOverflowError",
    "KdResolveError",
    "KdBadRegisterError",
    "KdMemoryError",
    "KdOperandError",
    "KdCommandError",
    "KdUnknownCommand",
    "KdExtraCharacterError",
    "KdRangeError",
]


class KdError(Exception):
    """Any error kd reports for a command; `str(e)` is the line kd prints."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class KdExpressionError(KdError):
    """`<Kind> error at '<rest>'`: `rest` is the text from the failing position to the
    end of the argument; `position` (if known) is where `rest` starts in the text that
    was being evaluated."""

    kind = "Syntax"

    def __init__(self, rest: str, position: int | None = None) -> None:
        self.rest = rest
        self.position = position
        super().__init__(self._format(rest))

    def _format(self, rest: str) -> str:
        return f"{self.kind} error at '{rest}'"


class KdSyntaxError(KdExpressionError):
    """`Syntax error at '<rest>'`."""

    kind = "Syntax"


class KdMissingExpressionError(KdSyntaxError):
    """An operand was expected: `Numeric expression missing from '<rest>'`, where an
    empty rest prints as `<EOL>` (as kd does for `? 1 +` or `.exr` with no argument)."""

    def _format(self, rest: str) -> str:
        return f"Numeric expression missing from '{rest or '<EOL>'}'"


class KdOverflowError(KdSyntaxError):
    """A number that does not fit in 64 bits: `Overflow error at '<rest>'`."""

    kind = "Overflow"


class KdResolveError(KdExpressionError):
    """A symbol that is not known: `Couldn't resolve error at '<rest>'`."""

    kind = "Couldn't resolve"


class KdBadRegisterError(KdResolveError):
    """`@name` where name is no register: `Bad register error at '@name...'`."""

    kind = "Bad register"


class KdMemoryError(KdExpressionError):
    """`poi` and friends on unreadable memory: `Memory access error at '<rest>'`."""

    kind = "Memory access"


class KdOperandError(KdExpressionError):
    """An invalid operation such as division by zero: `Operand error at '<rest>'`."""

    kind = "Operand"


class KdCommandError(KdError):
    """`^ <Kind> error in '<command>'`, the caret under `column` of `command`.

    Code that only sees part of a command (an argument parser) raises with the part it
    has; the dispatcher that knows the whole command calls `relocate` to quote it."""

    kind = "Syntax"

    def __init__(self, command: str, column: int = 0) -> None:
        self.command = command
        self.column = max(0, column)
        super().__init__(f"^ {self.kind} error in '{command}'")

    def line(self, prompt: str = "") -> str:
        """The line kd prints after `prompt`: the caret aligned under the column."""
        return " " * (len(prompt) + self.column) + str(self)

    def relocate(self, command: str, offset: int) -> KdCommandError:
        """The same error for the whole `command`, in which the text this error was
        raised for starts at `offset`."""
        return type(self)(command, offset + self.column)


class KdUnknownCommand(KdCommandError):
    """A command name kd does not know: `^ Syntax error in '<command>'`."""

    kind = "Syntax"


class KdExtraCharacterError(KdCommandError):
    """Text left over after a command's arguments: `^ Extra character error in '...'`."""

    kind = "Extra character"


class KdRangeError(KdCommandError):
    """A bad address range (end before start, or over the size limit without `L?`):
    `^ Range error in '<command>'`."""

    kind = "Range"
