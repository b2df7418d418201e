"""Where each table, key and value sits in a TOML text, so errors can name file:line:col.

tomllib gives values without positions.  This scans a text that tomllib has already
accepted, statement by statement and value by value (multi-line strings, arrays and
inline tables included), and records positions by path.  A path is the tuple of key
names from the document's root; an element of an array (of tables, or an inline array)
adds its index: `("driver", 0, "routine", 2, "code")`, `("event", 1, "program", 0,
"open")`.  Lines and columns are 1-based and count characters, as tomllib's do.
"""

from __future__ import annotations

import bisect
import re

Path = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR_END = re.compile(r"[,\]}\n#]")


def toml_error_position(message: str) -> tuple[str, int, int]:
    """A tomllib error message split into (message, line, column)."""
    found = re.search(r" \(at line (\d+), column (\d+)\)$", message)
    if found is None:
        return message, 1, 1
    return message[:found.start()], int(found.group(1)), int(found.group(2))


class Locator:
    """Positions of tables, keys and values in one TOML text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._line_starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
        self.tables: dict[Path, int] = {}  # table header offsets
        self.keys: dict[Path, tuple[int, int]] = {}  # (key offset, value offset)
        self._arrays: dict[Path, int] = {}  # arrays of tables: how many elements so far
        self._scan()

    # -- queries ------------------------------------------------------------------------

    def position(self, offset: int) -> tuple[int, int]:
        """The (line, column) of a character offset."""
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def table(self, path: Path) -> tuple[int, int]:
        """A table's header (or the key or element that defines it), else the nearest
        enclosing table's, else the file's start."""
        path = tuple(path)
        while path:
            if path in self.tables:
                return self.position(self.tables[path])
            if path in self.keys:
                return self.position(self.keys[path][0])
            path = path[:-1]
        return 1, 1

    def key(self, path: Path) -> tuple[int, int]:
        """Where a key's name is written (its table, when the key is not found)."""
        path = tuple(path)
        if path in self.keys:
            return self.position(self.keys[path][0])
        if path in self.tables:  # a table: its header
            return self.position(self.tables[path])
        return self.table(path[:-1])

    def value(self, path: Path) -> tuple[int, int]:
        """Where a key's value starts (its table, when the key is not found)."""
        path = tuple(path)
        if path in self.keys:
            return self.position(self.keys[path][1])
        return self.table(path[:-1])

    def value_offset(self, path: Path) -> int | None:
        found = self.keys.get(tuple(path))
        return found[1] if found is not None else None

    def string_start(self, path: Path) -> tuple[int, int, int] | None:
        """Where a string value's characters start: (line, column, offset), past its
        opening quotes and, for a multi-line string, the newline right after them (which
        TOML drops)."""
        at = self.value_offset(path)
        if at is None:
            return None
        text = self.text
        quotes = 3 if text.startswith(('"""', "'''"), at) else 1
        at += quotes
        if quotes == 3:
            if text.startswith("\r\n", at):
                at += 2
            elif text.startswith("\n", at):
                at += 1
        return (*self.position(at), at)

    # -- the scanner (lenient: tomllib has checked the syntax) --------------------------

    def _skip(self, i: int, newlines: bool = True) -> int:
        text, n = self.text, len(self.text)
        while i < n:
            c = text[i]
            if c in " \t\r" or (newlines and c == "\n"):
                i += 1
            elif c == "#":
                while i < n and text[i] != "\n":
                    i += 1
            else:
                break
        return i

    def _key(self, i: int) -> tuple[list[str], int]:
        """A dotted key at i: its parts and the offset after it."""
        text, parts = self.text, []
        while True:
            i = self._skip(i, newlines=False)
            if text.startswith('"', i):
                end = self._basic_string_end(i)
                parts.append(text[i + 1:end - 1])
                i = end
            elif text.startswith("'", i):
                end = text.index("'", i + 1) + 1
                parts.append(text[i + 1:end - 1])
                i = end
            else:
                bare = _BARE.match(text, i)
                end = bare.end() if bare else i + 1
                parts.append(text[i:end])
                i = end
            i = self._skip(i, newlines=False)
            if not text.startswith(".", i):
                return parts, i
            i += 1

    def _scan(self) -> None:
        text, n = self.text, len(self.text)
        table: Path = ()
        i = self._skip(0)
        while i < n:
            if text[i] == "[":
                array = text.startswith("[[", i)
                parts, end = self._key(i + (2 if array else 1))
                table = self._header(parts, array)
                self.tables.setdefault(table, i)
                if array:  # the first [[name]] also stands for the whole array
                    self.tables.setdefault(table[:-1], i)
                i = end + (2 if array else 1)
            else:
                parts, end = self._key(i)
                path = table + tuple(parts)
                value = self._skip(end + 1, newlines=False)  # past the '='
                self.keys.setdefault(path, (i, value))
                i = self._value(value, path)
            i = self._skip(i)

    def _header(self, parts: list[str], array: bool) -> Path:
        """The indexed path a [table] or [[array]] header opens."""
        path: Path = ()
        for k, part in enumerate(parts):
            path = (*path, part)
            if k == len(parts) - 1 and array:
                count = self._arrays.get(path, 0)
                self._arrays[path] = count + 1
                path = (*path, count)
            elif path in self._arrays:
                path = (*path, self._arrays[path] - 1)  # the array's latest element
        return path

    def _basic_string_end(self, i: int) -> int:
        text, j = self.text, i + 1
        while text[j] != '"':
            j += 2 if text[j] == "\\" else 1
        return j + 1

    def _value(self, i: int, path: Path) -> int:
        """Record the positions inside the value at i; the offset after it."""
        text = self.text
        if text.startswith(('"""', "'''"), i):
            quote, j = text[i:i + 3], i + 3
            while not text.startswith(quote, j):
                j += 2 if quote == '"""' and text[j] == "\\" else 1
            j += 3
            while text.startswith(quote[0], j):  # up to two quotes end the content
                j += 1
            return j
        if text[i] == '"':
            return self._basic_string_end(i)
        if text[i] == "'":
            return text.index("'", i + 1) + 1
        if text[i] == "[":
            j, index = self._skip(i + 1), 0
            while text[j] != "]":
                element = (*path, index)
                self.keys.setdefault(element, (j, j))
                j = self._skip(self._value(j, element))
                if text[j] == ",":
                    j = self._skip(j + 1)
                index += 1
            return j + 1
        if text[i] == "{":
            j = self._skip(i + 1, newlines=False)
            while text[j] != "}":
                parts, end = self._key(j)
                key = (*path, *parts)
                value = self._skip(end + 1, newlines=False)
                self.keys.setdefault(key, (j, value))
                j = self._skip(self._value(value, key), newlines=False)
                if text[j] == ",":
                    j = self._skip(j + 1, newlines=False)
            return j + 1
        end = _SCALAR_END.search(text, i)
        return end.start() if end else len(text)
