"""Debugger output in colour on a terminal (rich), lexed with kdsim/kdlexer.py.

* `use_colour(stream, environ)`: colour only on a terminal, never with `NO_COLOR` set
  (any value, even empty, as no-color.org asks) or `TERM=dumb`.
* `colour_line(text)` / `colour_command(text)`: a rich Text of debugger output or of a
  command line, styled by token; its plain text is the input.
* `ColourWriter(stream)`: a stand-in for a text stream that writes each complete line in
  colour and writes nothing but the original characters (plus style codes).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from pygments.lexer import Lexer
from pygments.token import (
    Comment,
    Error,
    Generic,
    Keyword,
    Name,
    Number,
    Operator,
    String,
    _TokenType,
)
from rich.console import Console
from rich.control import strip_control_codes
from rich.segment import Segment, Segments
from rich.style import Style
from rich.text import Text

from kdsim.kdlexer import KdLexer, KdOutputLexer

__all__ = ["style_for", "colour_line", "colour_command", "use_colour", "ColourWriter",
           "make_console"]

# The theme: a token type's style is that of its nearest listed ancestor.
THEME: dict[_TokenType, str] = {
    Generic.Prompt: "bold green",
    Generic.Error: "bold red",
    Generic.Heading: "bold",
    Generic.Subheading: "bold",
    Error: "bold red underline",  # an unknown command name
    Keyword: "bold blue",  # standard commands
    Keyword.Reserved: "bold magenta",  # .if, .foreach, j, z
    Keyword.Type: "blue",
    Name.Builtin: "bold cyan",  # .meta commands
    Name.Function.Magic: "bold green",  # !extensions
    Name.Namespace: "yellow",  # module!
    Name.Function: "bright_yellow",  # !symbol
    Name.Class: "bright_cyan",  # _EPROCESS
    Name.Variable: "green",  # registers, pseudo-registers
    Name.Attribute: "bright_blue",  # options, dt field names
    Name.Label: "bold",
    Name.Exception: "bold magenta",  # bug check names
    Number: "cyan",  # addresses and numbers
    String: "bright_green",
    String.Interpol: "bold bright_green",
    Comment: "dim",
    Operator.Word: "bold",
}


def style_for(tokentype: _TokenType) -> str:
    """The rich style string for a token type ("" for plain text)."""
    while tokentype is not None:
        style = THEME.get(tokentype)
        if style is not None:
            return style
        tokentype = tokentype.parent
    return ""


def _styled(lexer: Lexer, text: str) -> Text:
    # rich drops some control characters (BEL, BS, VT, FF, CR) from a Text: lex what it
    # keeps, so the styles land on the right characters.
    text = strip_control_codes(text)
    out = Text(text, end="")
    for pos, token, value in lexer.get_tokens_unprocessed(text):
        style = style_for(token)
        if style and value:
            out.stylize(style, pos, pos + len(value))
    return out


def colour_line(text: str) -> Text:
    """A line (or lines) of debugger output in colour; `.plain` is `text` (without the
    control characters rich drops: BEL, BS, VT, FF, CR)."""
    return _styled(KdOutputLexer(), text)


def colour_command(text: str) -> Text:
    """A command line in colour, as it is echoed after the prompt; `.plain` is `text`
    (without the control characters rich drops)."""
    return _styled(KdLexer(), text)


def use_colour(stream: Any, environ: Mapping[str, str]) -> bool:
    """Colour only on a terminal, without NO_COLOR (any value) and with a TERM that is
    not `dumb`."""
    if "NO_COLOR" in environ or environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    if isatty is None:
        return False
    try:
        return bool(isatty())
    except (OSError, ValueError):  # a closed or detached stream
        return False


def make_console(stream: TextIO) -> Console:
    """A rich Console that adds styles and nothing else: no wrapping, no highlighting,
    no markup or emoji codes of its own."""
    return Console(
        file=stream,
        force_terminal=True,
        soft_wrap=True,
        highlight=False,
        markup=False,
        emoji=False,
    )


class ColourWriter:
    """A text stream in place of `stream` that writes complete lines in colour.

    A partial line (a prompt before input) waits until the line ends or `flush()`; a
    flushed partial line is written unchanged and kept as the start of its line, so the
    rest of the line is lexed knowing it (a command after a prompt).  Only style codes
    are added: the characters written are exactly those given.  With `enabled=False`
    every write goes straight to the stream."""

    def __init__(self, stream: TextIO, *, enabled: bool = True,
                 console: Console | None = None) -> None:
        self.stream = stream
        self.enabled = enabled
        self.console = console if console is not None else make_console(stream)
        self._lexer = KdOutputLexer()
        self._pending = ""  # the current line's text not yet written
        self._shown = ""  # the current line's start already written (a flushed prompt)

    def write(self, text: str) -> int:
        if not self.enabled:
            self.stream.write(text)
            return len(text)
        self._pending += text
        while (end := self._pending.find("\n")) >= 0:
            line, self._pending = self._pending[:end], self._pending[end + 1:]
            self._write_line(line)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self.enabled and self._pending:
            self.stream.write(self._pending)
            self._shown += self._pending
            self._pending = ""
        self.stream.flush()

    def _segments(self, line: str) -> Iterator[Segment]:
        start = len(self._shown)
        for pos, token, value in self._lexer.get_tokens_unprocessed(self._shown + line):
            end = pos + len(value)
            if end <= start:
                continue  # written already
            if pos < start:
                value = value[start - pos:]
            style = style_for(token)
            yield Segment(value, Style.parse(style) if style else None)
        yield Segment("\n")

    def _write_line(self, line: str) -> None:
        self.console.print(Segments(list(self._segments(line))), end="")
        self._shown = ""

    # The rest of the stream interface (isatty, fileno, encoding, ...) is the stream's.
    def __getattr__(self, name: str) -> Any:
        stream = self.__dict__.get("stream")
        if stream is None:
            raise AttributeError(name)
        return getattr(stream, name)
