"""`dx`: display a debugger object model expression, as plain text.

Layout (kd's, without DML links): the root line is the expression as typed; an object
that expands is followed by 16 spaces (`@$cursession.Processes                `), then
` : <value>` when it has one and ` [Type: T]` when it is typed; a scalar prints
`expr : value [Type: T]`.  Each level of children is indented 4 more spaces, each child
named left-justified to 16 (typed fields after their `[+0x000]` offset, bit fields
`[+0x460 ( 0: 0)]`).  `-r N` expands N levels (default 1); `-g` shows a collection as a
grid.
"""

from __future__ import annotations

import re
from typing import Any

from commands import cpp_types as ct
from commands.cpp_expr import Evaluator, Value
from commands.cpp_types import CType
from commands.dx_model import (
    MAX_ELEMENTS,
    Collection,
    DxError,
    DxEvaluator,
    Model,
    ProcessObject,
    SessionObject,
    ThreadObject,
    Typed,
    _At,
)
from commands.errors import KdError
from commands.limits import MAX_OUTPUT_LINES
from commands.registry import Result, command
from commands.target import MemoryAccessError

_STRING_LIMIT = 0x100
_CHAR_TYPES = ("char", "unsigned char", "wchar_t")


def dx_type(t: CType) -> str:
    """dx's spelling of a C type: `unsigned __int64`, `_KPROCESS *`, `void *`."""
    if t.kind == "pointer":
        inner = dx_type(t.target) if t.target is not None else "void"
        return inner + ("*" if inner.endswith("*") else " *")
    if t.kind == "array":
        return f"{dx_type(t.target)} [{t.count}]"
    if t.kind in ("struct", "enum"):
        return t.name
    if t.kind == "function":
        return "void (*)()"
    return {"unsigned int64": "unsigned __int64", "int64": "__int64"}.get(t.name, t.name)


class Renderer:
    def __init__(self, s, model: Model) -> None:
        self.s = s
        self.model = model
        self.ev = Evaluator(model.ctx, "")
        self.types = s.target.types

    # -- values --------------------------------------------------------------------------
    def load(self, v: Value) -> Value | None:
        try:
            return self.ev.load(v, _At(0))
        except KdError:
            return None

    def string_at(self, address: int, char_size: int, length: int | None = None) -> str:
        chars: list[str] = []
        limit = _STRING_LIMIT if length is None else length // char_size
        try:
            for i in range(limit):
                raw = self.s.target.read_virtual(address + i * char_size, char_size)
                code = int.from_bytes(raw, "little")
                if code == 0 and length is None:
                    break
                chars.append(chr(code) if 0x20 <= code < 0x7F or code > 0xFF else ".")
        except MemoryAccessError:
            if not chars:
                return f"Unable to read memory at Address 0x{address:x}"
        return '"' + "".join(chars) + '"'

    def unicode_string(self, address: int) -> str:
        try:
            length = self.s.reader.field("_UNICODE_STRING", address, "Length")
            buffer = self.s.reader.field("_UNICODE_STRING", address, "Buffer")
        except MemoryAccessError:
            return f"Unable to read memory at Address 0x{address:x}"
        return self.string_at(buffer, 2, length)

    def describe(self, obj: Any) -> tuple[str | None, str | None, bool]:
        """(value text, type text, expandable)."""
        if isinstance(obj, SessionObject | Collection):
            return None, None, True
        if isinstance(obj, ProcessObject):
            return f"{self.model.process_name(obj.address)} [Switch To]", None, True
        if isinstance(obj, ThreadObject):
            return self.model.thread_summary(obj.address), None, True
        if isinstance(obj, bool):
            return ("true" if obj else "false"), None, False
        if isinstance(obj, int):
            return f"0x{obj & 0xFFFFFFFFFFFFFFFF:x}", None, False
        if isinstance(obj, str):
            return obj, None, False
        if isinstance(obj, Typed):
            return self.describe_typed(obj.value)
        return None, None, False

    def describe_typed(self, v: Value) -> tuple[str | None, str | None, bool]:
        t = v.type
        type_text = dx_type(t)
        if t.kind == "struct":
            if t.name == "_UNICODE_STRING" and v.address is not None:
                return self.unicode_string(v.address), type_text, True
            return None, type_text, True
        if t.kind == "array":
            return None, type_text, True
        loaded = self.load(v)
        if loaded is None:
            return f"Unable to read memory at Address 0x{v.address or 0:x}", type_text, False
        value = loaded.value
        if t.kind == "pointer":
            text = f"0x{int(value):x}"
            target = t.target
            if target is not None and target.kind == "int" and target.name in _CHAR_TYPES:
                return f"{text} : {self.string_at(int(value), target.size)}", type_text, False
            if target is not None and target.kind == "struct" and value:
                if target.name == "_UNICODE_STRING":
                    text += f" : {self.unicode_string(int(value))}"
                return text, type_text, True
            return text, type_text, False
        if t.kind == "bool":
            return ("true" if value else "false"), type_text, False
        if t.kind == "float":
            return f"{value:g}", type_text, False
        if t.kind == "enum":
            td = self.types.get(t.name)
            name = td.enum_name(int(value)) if td is not None else None
            return (f"{name} ({int(value)})" if name else f"{int(value)}"), type_text, False
        if t.signed:
            return f"{int(value)}", type_text, False
        return f"0x{int(value):x}", type_text, False

    # -- children ------------------------------------------------------------------------
    def children(self, obj: Any) -> list[tuple[str, str, Any]]:
        """(offset prefix, name, child) for each member dx lists under `obj`."""
        if isinstance(obj, Collection):
            out = []
            for i, (key, value) in enumerate(obj.items[:MAX_ELEMENTS]):
                label = f"[0x{key & 0xFFFFFFFFFFFFFFFF:x}]" if obj.keyed else f"[{i}]"
                out.append(("", label, value))
            if len(obj.items) > MAX_ELEMENTS:
                out.append(("", "[...]", None))
            return out
        if isinstance(obj, Typed):
            return self.typed_children(obj.value)
        return [("", name, child) for name, child in self.model.children(obj)]

    def typed_children(self, v: Value) -> list[tuple[str, str, Any]]:
        t = v.type
        if t.kind == "pointer":
            loaded = self.load(v)
            if loaded is None or not loaded.value or t.target.kind != "struct":
                return []
            return self.typed_children(Value(t.target, None, int(loaded.value)))
        if t.kind == "array" and v.address is not None:
            element = t.target
            return [("", f"[{i}]", Typed(Value(element, None, v.address + i * element.size)))
                    for i in range(min(t.count, MAX_ELEMENTS))]
        td = self.types.get(t.name) if t.kind == "struct" else None
        if td is None or v.address is None:
            return []
        out = []
        for f in td.fields:
            if f.kind == "bitfield":
                hi = f.bit_position + f.bit_length - 1
                prefix = f"[+0x{f.offset:03x} ({hi:2d}:{f.bit_position:2d})]"
                member = Value(ct.from_dt(self.types, f.storage), None, v.address + f.offset,
                               (f.bit_position, f.bit_length))
            else:
                prefix = f"[+0x{f.offset:03x}]"
                member = Value(ct.from_dt(self.types, f.type), None, v.address + f.offset)
            out.append((prefix, f.name, Typed(member)))
        return out

    # -- lines ---------------------------------------------------------------------------
    @staticmethod
    def suffix(value: str | None, type_text: str | None) -> str:
        text = f" : {value}" if value is not None else ""
        return text + (f" [Type: {type_text}]" if type_text else "")

    def root(self, text: str, obj: Any, recursion: int) -> list[str]:
        value, type_text, expandable = self.describe(obj)
        if expandable:
            lines = [text + " " * 16 + self.suffix(value, type_text)]
        else:
            lines = [text + self.suffix(value, type_text)]
        if expandable and recursion > 0:
            self.expand(obj, 1, recursion, lines)
        return lines

    def expand(self, obj: Any, depth: int, recursion: int, lines: list[str]) -> None:
        indent = "    " * depth
        for prefix, name, child in self.children(obj):
            if len(lines) >= MAX_OUTPUT_LINES:
                return
            head = f"{indent}{prefix} " if prefix else indent
            if child is None:
                lines.append(f"{head}{name}")
                continue
            value, type_text, expandable = self.describe(child)
            lines.append(f"{head}{name:<16}{self.suffix(value, type_text)}")
            if expandable and depth < recursion:
                self.expand(child, depth + 1, recursion, lines)

    def grid(self, text: str, obj: Any) -> list[str]:
        """`-g`: a collection as a table, one row per element."""
        rows = []
        columns: list[str] = []
        expandable_columns: set[str] = set()
        for _prefix, label, child in self.children(obj):
            if child is None:
                continue
            value, _type, expandable = self.describe(child)
            key = f"{label} : {value}" if expandable and value else label
            cells: dict[str, str] = {}
            if expandable:
                for _p, name, member in self.children(child):
                    v, _t, more = self.describe(member)
                    if name not in columns:
                        columns.append(name)
                    if more:
                        expandable_columns.add(name)
                    cells[name] = "{...}" if more else (v or "")
            else:
                if "" not in columns:
                    columns.append("")
                cells[""] = value or ""
            rows.append((key, cells))
        headers = [f"(+) {c}" if c in expandable_columns else c for c in columns]
        key_width = max([10] + [len(k) for k, _ in rows])
        widths = [max([len(h)] + [len(cells.get(c, "")) for _, cells in rows])
                  for c, h in zip(columns, headers, strict=True)]
        head = "= " + " " * key_width + "".join(
            f" = {h:<{w}}" for h, w in zip(headers, widths, strict=True)) + " ="
        rule = "=" * len(head)
        out = [rule, head, rule]
        for key, cells in rows:
            out.append("= " + f"{key:<{key_width}}" + "".join(
                f" - {cells.get(c, ''):<{w}}" for c, w in zip(columns, widths, strict=True))
                + " =")
        out.append(rule)
        return out


_RECURSE = re.compile(r"-r(\d*)$")


def parse_options(args: str) -> tuple[int, bool, str]:
    """(recursion, grid, expression) from dx's arguments."""
    words = args.strip().split(" ")
    recursion, grid = 1, False
    i = 0
    while i < len(words) and words[i].startswith("-"):
        word = words[i]
        m = _RECURSE.match(word)
        if m:
            if m.group(1):
                recursion = int(m.group(1))
            elif i + 1 < len(words) and words[i + 1].isdigit():
                i += 1
                recursion = int(words[i])
        elif word == "-g":
            grid = True
        elif word not in ("-nv", "-v", ""):
            break
        i += 1
    return recursion, grid, " ".join(words[i:]).strip()


@command("dx", syntax="dx [-r[N]] [-g] [-nv] expression",
         help="Display a debugger object model expression: @$cursession.Processes, "
              "@$curprocess, @$curthread (with Where/Select/OrderBy/First/Count) or a "
              "typed C++ expression, expanded N levels.")
def dx_cmd(s, args: str) -> Result:
    recursion, grid, text = parse_options(args)
    if not text:
        raise DxError("Unable to parse the expression")  # dx with no expression
    evaluator = DxEvaluator(s)
    obj = evaluator.evaluate(text)
    renderer = Renderer(s, evaluator.model)
    if grid and isinstance(obj, Collection):
        lines = renderer.grid(text, obj)
    else:
        lines = renderer.root(text, obj, recursion)
    return Result(lines, {"expression": text, "recursion": recursion, "grid": grid})
