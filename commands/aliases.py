"""kd's aliases: `as`, `aS`, `ad`, `al`, and their expansion in command text.

Expansion (kd's rules, see `expand`):

* It happens when a command line is run and again each time a `{ }` block is entered,
  over the whole text at once.  So `as` on one command of a line is seen by the lines
  run after it and inside blocks entered after it, not by later commands of the same
  line or block (`aS /x a 1; .echo a` prints `a`; `aS /x a 1; .block { .echo a }`
  prints `0x1`).
* Text that begins with `as`, `aS`, `ad` or `al` is not expanded at all.
* Fixed-name aliases `$u0`-`$u9` are replaced anywhere, first.  Then `${Name}`,
  `${/d:Name}` (1 or 0), `${/f:Name}` (empty when undefined), `${/n:Name}` (the name) and
  `${/v:Name}` (never replaced); then user-named aliases standing as a whole word, that
  is between the ends of the text, blanks, `;` and `"`.
"""

from __future__ import annotations

import re

from commands.errors import KdCommandError, KdError, KdSyntaxError
from commands.flow import run_nested
from commands.registry import Result, command

_BRACED = re.compile(r"\$\{(/[vdfn]:)?([^}]*)\}")
_FIXED = re.compile(r"\$u([0-9])")
_NO_EXPANSION = ("as", "ad", "al")
_WORD_EDGE = " \t\r\n;\""


def expand(s, text: str, extra: dict[str, str] | None = None) -> str:
    """`text` with the session's aliases (and `extra` ones, such as a `.foreach`
    variable or a script's `$argN`) replaced, as kd expands a line or a block."""
    if text[:2].lower() in _NO_EXPANSION:
        return text
    text = _FIXED.sub(lambda m: s.fixed_aliases[int(m.group(1))], text)
    table = dict(s.aliases)
    if extra:
        table.update(extra)
    if not table and "${" not in text:
        return text

    out: list[str] = []
    pos = 0
    for m in _BRACED.finditer(text):
        out.append(_whole_words(text[pos:m.start()], table))
        out.append(_braced(m, table))
        pos = m.end()
    out.append(_whole_words(text[pos:], table))
    return "".join(out)


def _braced(m: re.Match[str], table: dict[str, str]) -> str:
    """`${Name}` and its switched forms."""
    switch, name = m.group(1), m.group(2)
    defined = name in table
    if switch == "/v:":
        return m.group(0)
    if switch == "/d:":
        return "1" if defined else "0"
    if switch == "/f:":
        return table.get(name, "")
    if switch == "/n:":
        return name if defined else m.group(0)
    return table[name] if defined else m.group(0)


def _whole_words(text: str, table: dict[str, str]) -> str:
    if not table or not text:
        return text
    out: list[str] = []
    pos = 0
    n = len(text)
    while pos < n:
        if text[pos] in _WORD_EDGE:
            out.append(text[pos])
            pos += 1
            continue
        end = pos
        while end < n and text[end] not in _WORD_EDGE:
            end += 1
        word = text[pos:end]
        out.append(table.get(word, word))
        pos = end
    return "".join(out)


# ---------------------------------------------------------------------------- commands

_STRING_SWITCHES = {"/ma": 1, "/mu": 2, "/msa": 1, "/msu": 2}
_MAX_STRING = 0x1000


def alias_name(word: str) -> str:
    """An alias name as typed; `${/v:Name}` stands for Name (kd's rule for as/aS/ad)."""
    m = re.fullmatch(r"\$\{/v:([^}]*)\}", word)
    return m.group(1) if m else word


@command("as", syntax="as Name text | aS Name text | as /x Name expr | "
         "as /ma|/mu|/msa|/msu Name address | as /c Name commands",
         help="Define a user-named alias: text, a value in hex, a string from memory or "
              "the output of commands.")
def as_cmd(s, args: str) -> Result:
    typed = s.command_text or "as " + args
    rest = args.strip()
    switch = ""
    if rest.startswith("/"):
        switch, _, rest = rest.partition(" ")
        rest = rest.lstrip()
        if switch not in ("/x", "/c", *_STRING_SWITCHES):
            raise KdCommandError(typed, max(0, typed.find(switch)))
    name, _, value = rest.partition(" ")
    value = value.lstrip(" \t")
    if not name:
        raise KdCommandError(typed, len(typed))
    name = alias_name(name)
    if switch == "/x":
        value = f"0x{s.evaluate(value.strip()):x}"
    elif switch in _STRING_SWITCHES:
        value = _memory_string(s, switch, s.evaluate(value.strip()))
    elif switch == "/c":
        lines: list[str] = []
        for res in run_nested(s, value):
            lines += res.lines
        value = "\n".join(lines)
    elif typed.lstrip()[:2] == "aS" and len(value) >= 2 and value[0] == '"' \
            and value.endswith('"'):
        value = value[1:-1]
    s.aliases[name] = value
    return Result([], {"name": name, "value": value})


def _memory_string(s, switch: str, address: int) -> str:
    if switch in ("/msa", "/msu"):
        length = s.reader.field("_UNICODE_STRING", address, "Length")
        buffer = s.reader.field("_UNICODE_STRING", address, "Buffer")
        data = s.target.read_virtual(buffer, length) if length else b""
        return data.decode("utf-16-le" if switch == "/msu" else "latin-1", errors="replace")
    return read_c_string(s, address, _STRING_SWITCHES[switch])


def read_c_string(s, address: int, unit: int) -> str:
    """A NUL-terminated ASCII (unit 1) or UTF-16 (unit 2) string in target memory; the
    first byte must be readable (else kd's memory error), the rest stops where it stops."""
    from commands.target import MemoryAccessError

    chars: list[str] = []
    pos = address
    while len(chars) < _MAX_STRING:
        try:
            raw = s.target.read_virtual(pos, unit)
        except MemoryAccessError:
            if not chars:
                raise
            break
        code = int.from_bytes(raw, "little")
        if code == 0:
            break
        chars.append(chr(code))
        pos += unit
    return "".join(chars)


@command("ad", syntax="ad [/q] Name | ad *", help="Delete a user-named alias, or all of them.")
def ad_cmd(s, args: str) -> Result:
    words = args.split()
    quiet = bool(words) and words[0] == "/q"
    if quiet:
        words = words[1:]
    if not words:
        raise KdSyntaxError(args.strip(), 0)
    if words == ["*"]:
        s.aliases.clear()
        return Result([], {"deleted": "*"})
    name = alias_name(words[0])
    if name not in s.aliases:
        if quiet:
            return Result([], {"deleted": None})
        raise KdError(f"No alias named '{name}'")
    del s.aliases[name]
    return Result([], {"deleted": name})


@command("al", syntax="al", help="List the user-named aliases and their values.")
def al_cmd(s, args: str) -> Result:
    if not s.aliases:
        return Result(["No aliases"], {"aliases": {}})
    lines = ["  Alias            Value  ", " -------          ------- "]
    for name in sorted(s.aliases):
        lines.append(f" {name:<16} {s.aliases[name]} ")
    return Result(lines, {"aliases": dict(sorted(s.aliases.items()))})
