"""Enter on an empty line, as kd treats it: stepping commands run again, and memory
display and disassembly continue where they stopped; other commands are not repeated."""

from __future__ import annotations

from commands import registry
from commands.cmdline import split_name
from commands.errors import KdError

# The commands kd runs again as typed: a step, a trace, to the next call.
STEPPING = frozenset({"p", "t", "pc", "tc"})
# The families that continue from where the last display ended when given no address.
CONTINUING = frozenset({"memory", "unassemble"})
CONTINUING_EXCEPT = frozenset({"ub"})  # a backward listing has nowhere obvious to go on


def repeat_line(last: str | None) -> str | None:
    """What Enter on an empty line runs after `last` (the previous line typed), or None."""
    if last is None or ";" in last or "{" in last:
        return None
    text = last.strip()
    registry.load_all()
    try:
        parsed = split_name(text, registry.letter_commands())
    except KdError:  # a line that does not parse is not repeated
        return None
    name = parsed.name.lower()
    spec = registry.COMMANDS.get(name)
    if spec is None:
        return None
    if name in STEPPING:
        return text
    if spec.family in CONTINUING and name not in CONTINUING_EXCEPT:
        return parsed.name
    return None
