"""Colour on the terminal: when it is on, the styles per token, and that colouring never
changes a character of what the debugger prints."""

from __future__ import annotations

import io
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from pygments.token import Error, Generic, Keyword, Name, Number, Text, Whitespace
from rich.console import Console

from commands.session import Session
from kdsim.colour import ColourWriter, colour_command, colour_line, style_for, use_colour
from tests.conftest import run

ANSI = re.compile(r"\x1b\[[0-9;]*m")
RICH_DROPS = "\x07\x08\x0b\x0c\r"  # control characters a rich Text never holds


class Tty(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def terminal() -> tuple[io.StringIO, Console]:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system="standard",
                      no_color=False, soft_wrap=True, highlight=False, markup=False,
                      emoji=False, width=40)
    return buffer, console


def styles_of(text) -> dict[str, str]:
    """The text of each styled span -> its style."""
    return {text.plain[s.start:s.end]: str(s.style) for s in text.spans}


# ----------------------------------------------------------------------------- when


def test_use_colour_only_on_a_terminal():
    assert use_colour(Tty(True), {"TERM": "xterm-256color"})
    assert not use_colour(Tty(False), {"TERM": "xterm-256color"})
    assert not use_colour(object(), {})


def test_no_color_in_any_value_turns_colour_off():
    assert not use_colour(Tty(True), {"NO_COLOR": "1"})
    assert not use_colour(Tty(True), {"NO_COLOR": ""})


def test_dumb_terminal_has_no_colour():
    assert not use_colour(Tty(True), {"TERM": "dumb"})
    assert use_colour(Tty(True), {"TERM": "xterm"})


def test_closed_stream_has_no_colour():
    stream = io.StringIO()
    stream.close()
    assert not use_colour(stream, {})


# ---------------------------------------------------------------------------- styles


def test_style_for_uses_the_nearest_ancestor():
    assert style_for(Generic.Prompt) == "bold green"
    assert style_for(Number.Hex) == style_for(Number) != ""
    assert style_for(Error) != style_for(Keyword) != ""
    assert style_for(Name.Function.Magic) != style_for(Name.Function)
    assert style_for(Text) == style_for(Whitespace) == ""


def test_colour_line_styles_addresses_symbols_and_bugchecks():
    text = colour_line("DRIVER_IRQL_NOT_LESS_OR_EQUAL (d1) at fffff805`738e115a "
                       "myfault!MyfaultHighIrqlFault+0x1a")
    styles = styles_of(text)
    assert styles["DRIVER_IRQL_NOT_LESS_OR_EQUAL"] == style_for(Name.Exception)
    assert styles["fffff805`738e115a"] == style_for(Number)
    assert styles["myfault"] == style_for(Name.Namespace)
    assert styles["MyfaultHighIrqlFault"] == style_for(Name.Function)


def test_colour_line_prompt_and_error():
    styles = styles_of(colour_line("0: kd> k"))
    assert styles["0: kd> "] == style_for(Generic.Prompt)
    assert styles["k"] == style_for(Keyword)
    line = "Couldn't resolve error at 'nosuch!x'"
    assert styles_of(colour_line(line))[line] == style_for(Generic.Error)


def test_colour_command_marks_an_unknown_command():
    styles = styles_of(colour_command("k; foo"))
    assert styles["k"] == style_for(Keyword)
    assert styles["foo"] == style_for(Error)


def test_colour_line_keeps_real_output(session: Session):
    for line in run(session, "!analyze -v") + run(session, "k") + run(session, "lm"):
        assert colour_line(line).plain == line


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_colour_keeps_every_character(text: str):
    expected = text.translate({ord(c): None for c in RICH_DROPS})
    assert colour_line(text).plain == expected
    assert colour_command(text).plain == expected


# ---------------------------------------------------------------------------- writer


def test_writer_colours_lines_and_keeps_the_text(session: Session):
    lines = ["0: kd> !analyze -v"] + run(session, "!analyze -v")
    text = "\n".join(lines) + "\n"
    buffer, console = terminal()
    writer = ColourWriter(buffer, console=console)
    for line in lines:  # as print() writes: the text, then the line end
        writer.write(line)
        writer.write("\n")
    writer.flush()
    out = buffer.getvalue()
    assert ANSI.search(out)
    assert ANSI.sub("", out) == text
    assert "\x1b[1;35mDRIVER_IRQL_NOT_LESS_OR_EQUAL\x1b[0m" in out  # bold magenta


def test_writer_passes_a_flushed_prompt_through_and_colours_the_command():
    buffer, console = terminal()
    writer = ColourWriter(buffer, console=console)
    writer.write("0: kd> ")
    writer.flush()
    assert buffer.getvalue() == "0: kd> "  # the partial line, unchanged
    writer.write("k\tx\r\n")  # a tab and a carriage return are kept as they are
    out = buffer.getvalue()
    assert ANSI.sub("", out) == "0: kd> k\tx\r\n"
    assert "\x1b[1;34mk\x1b[0m" in out  # lexed as the command after the prompt


def test_writer_holds_a_partial_line_until_it_ends():
    buffer, console = terminal()
    writer = ColourWriter(buffer, console=console)
    writer.write("fffff805`738e115a")
    assert buffer.getvalue() == ""
    writer.write(" nt!KeBugCheckEx\nrest")
    assert ANSI.sub("", buffer.getvalue()) == "fffff805`738e115a nt!KeBugCheckEx\n"
    writer.flush()
    assert ANSI.sub("", buffer.getvalue()).endswith("\nrest")


def test_writer_never_wraps_long_lines():
    buffer, console = terminal()  # 40 columns wide
    line = " ".join(["fffff805`738e115a"] * 10)
    ColourWriter(buffer, console=console).write(line + "\n")
    assert ANSI.sub("", buffer.getvalue()) == line + "\n"


def test_writer_with_colour_off_writes_the_exact_text():
    buffer = io.StringIO()
    writer = ColourWriter(buffer, enabled=False)
    writer.write("0: kd> ")
    writer.write("k\nfffff805`738e115a nt!KeBugCheckEx\n")
    writer.flush()
    assert buffer.getvalue() == "0: kd> k\nfffff805`738e115a nt!KeBugCheckEx\n"


def test_writer_is_a_stand_in_for_its_stream():
    stream = Tty(True)
    writer = ColourWriter(stream)
    assert writer.isatty() is True
    assert writer.write("abc") == 3
