"""Lark grammars of kd's command-line language.

`masm.lark` is MASM expression syntax (fed by the lexer in `commands.expr`);
`cmdline.lark` splits a command line into commands (used by `commands.cmdline`).
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def load(name: str) -> str:
    """The text of grammar `name` (without the `.lark` suffix)."""
    return resources.files(__name__).joinpath(f"{name}.lark").read_text(encoding="utf-8")
