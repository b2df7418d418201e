"""docs/commands.md is the registry rendered: every command, with its syntax."""

from __future__ import annotations

from pathlib import Path

from commands.docs import commands_markdown
from commands.registry import ORDER, load_all

DOC = Path(__file__).resolve().parents[2] / "docs" / "commands.md"


def test_the_committed_reference_is_the_registry_rendered():
    assert DOC.read_text(encoding="utf-8") == commands_markdown(), \
        "docs/commands.md is stale: run `python -m commands.docs > docs/commands.md`"


def test_every_command_and_its_syntax_is_listed():
    load_all()
    text = commands_markdown()
    for spec in ORDER:
        for name in spec.names:
            assert f"`{name}`" in text
        assert spec.syntax.replace("|", "\\|") in text
