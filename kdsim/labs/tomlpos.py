"""Where a key or table sits in TOML text, so lab errors can name file:line:col.

tomllib gives values without positions; this scans the text for table headers and
`key =` lines (skipping multi-line strings), which is enough for hand-written files.
"""

from __future__ import annotations

import re

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")
_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_KEY = re.compile(rf"^(\s*)({_PART}(?:\s*\.\s*{_PART})*)\s*=\s*")


def _split_dotted(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in key.split("."))


def _lines_outside_strings(text: str):
    """(line number, line) for each line that does not start inside a multi-line string."""
    inside: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if inside is None:
            yield number, line
        pos = 0
        while True:
            if inside is None:
                hits = [(line.find(q, pos), q) for q in ('"""', "'''")]
                hits = [(i, q) for i, q in hits if i >= 0]
                if not hits:
                    break
                i, q = min(hits)
                inside, pos = q, i + 3
            else:
                i = line.find(inside, pos)
                if i < 0:
                    break
                inside, pos = None, i + 3


class Locator:
    """Positions of tables and keys in one TOML text (1-based line and column)."""

    def __init__(self, text: str) -> None:
        self.tables: dict[tuple[str, ...], tuple[int, int]] = {}
        self.keys: dict[tuple[str, ...], tuple[int, int, int]] = {}  # line, key col, value col
        table: tuple[str, ...] = ()
        for number, line in _lines_outside_strings(text):
            header = _HEADER.match(line)
            if header and not _KEY.match(line):
                table = _split_dotted(header.group(2))
                self.tables.setdefault(table, (number, line.index("[") + 1))
                continue
            key = _KEY.match(line)
            if key and not line.lstrip().startswith("#"):
                path = table + _split_dotted(key.group(2))
                self.keys.setdefault(path, (number, len(key.group(1)) + 1, key.end() + 1))

    def table(self, path: tuple[str, ...]) -> tuple[int, int]:
        """A table's header, else the nearest enclosing table's, else the file's start."""
        while path:
            if path in self.tables:
                return self.tables[path]
            if path in self.keys:  # a dotted key or inline table defines it
                line, col, _ = self.keys[path]
                return line, col
            path = path[:-1]
        return 1, 1

    def key(self, path: tuple[str, ...]) -> tuple[int, int]:
        """Where a key's name is written (its table, when the key is not found)."""
        if path in self.keys:
            line, col, _ = self.keys[path]
            return line, col
        return self.table(path[:-1])

    def value(self, path: tuple[str, ...]) -> tuple[int, int]:
        """Where a key's value starts (its table, when the key is not found)."""
        if path in self.keys:
            line, _, col = self.keys[path]
            return line, col
        return self.table(path[:-1])
