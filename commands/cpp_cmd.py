"""`??`: evaluate a C++ expression and print the typed result as kd does.

`int 0n3`, `unsigned int64 0xa40`, `bool true`, `unsigned char 0x72 'r'`,
`void * 0x00000000`00000004`, `char * 0x...  "text"`; a pointer to a structure, or a
structure, prints its C type line and then the structure's fields as `dt` shows them.
"""

from __future__ import annotations

from commands.cpp_expr import Value, evaluate_in_session
from commands.cpp_types import CType
from commands.dt import ptr_text, render_dt, unsigned_text
from commands.errors import KdMissingExpressionError
from commands.limits import MAX_OUTPUT_LINES
from commands.registry import Result, command
from commands.target import MemoryAccessError

_STRING_LIMIT = 0x100  # characters shown behind a char / wchar_t pointer


def _printable(code: int) -> str:
    return chr(code) if 0x20 <= code < 0x7F else ""


def scalar_text(v: Value) -> str:
    """The value part of a scalar result (after its type)."""
    t = v.type
    if t.kind == "bool":
        return "true" if v.value else "false"
    if t.kind == "float":
        return f"{v.value:g}"
    if t.kind in ("pointer", "function"):
        return ptr_text(int(v.value))
    value = int(v.value)
    if t.name in ("char", "unsigned char", "wchar_t"):
        raw = value & ((1 << (8 * t.size)) - 1)
        number = f"0n{value}" if t.signed else f"0x{raw:0{2 * t.size}x}"
        return f"{number} '{_printable(raw)}'"
    if t.signed:
        return f"0n{value}"
    return unsigned_text(value)


def _enum_text(s, v: Value) -> str:
    t = s.target.types.get(v.type.name)
    name = t.enum_name(int(v.value)) if t is not None else None
    if name is None:
        return f"{v.type.name} 0n{int(v.value)}"
    return f"{v.type.name} {name} (0n{int(v.value)})"


def _string(s, address: int, char_size: int) -> str:
    chars: list[str] = []
    try:
        for i in range(_STRING_LIMIT):
            code = int.from_bytes(s.target.read_virtual(address + i * char_size, char_size),
                                  "little")
            if code == 0:
                break
            chars.append(chr(code) if 0x20 <= code < 0x7F or code > 0xFF else ".")
    except MemoryAccessError:
        if not chars:
            return f'"--- memory read error at address {ptr_text(address)} ---"'
    return '"' + "".join(chars) + '"'


def _fields(s, struct: CType, address: int) -> list[str]:
    return render_dt(s.target.types, struct.name, address,
                     lambda a, n: s.target.read_virtual(a, n), s.symbols, header=False)


def render(s, v: Value) -> list[str]:
    """kd's `??` lines for a value."""
    t = v.type
    if t.kind == "void":
        return ["void"]
    if t.kind == "struct":
        return [t.spelled()] + _fields(s, t, v.address)
    if t.kind == "array":
        return _array(s, v)
    if t.kind == "enum":
        return [_enum_text(s, v)]
    head = f"{t.spelled()} {scalar_text(v)}"
    if t.kind != "pointer":
        return [head]
    target = t.target
    address = int(v.value)
    if target.kind == "int" and target.name in ("char", "unsigned char", "wchar_t"):
        return [f"{head}  {_string(s, address, target.size)}"]
    if target.kind == "struct":
        return [head] + _fields(s, target, address)
    return [head]


def _array(s, v: Value) -> list[str]:
    t = v.type
    element = t.target
    head = t.spelled()
    if element.kind == "int" and element.name in ("char", "unsigned char", "wchar_t"):
        try:
            data = s.target.read_virtual(v.address, t.count * element.size)
        except MemoryAccessError:
            return [f'{head}  "--- memory read error at address {ptr_text(v.address)} ---"']
        chars = []
        for i in range(t.count):
            code = int.from_bytes(data[i * element.size:(i + 1) * element.size], "little")
            if code == 0:
                break
            chars.append(chr(code) if 0x20 <= code < 0x7F else ".")
        return [f'{head}  "{"".join(chars)}"']
    lines = [head]
    from commands.cpp_expr import Evaluator, SessionContext

    ev = Evaluator(SessionContext(s), "")
    for i in range(t.count):
        item = Value(element, None, v.address + i * element.size)
        if element.is_scalar:
            try:
                item = ev.load(item, _Here)
            except Exception:  # noqa: BLE001 - an unreadable element prints as ??
                lines.append(f"   [{i}] ??")
                continue
            text = _enum_text(s, item) if element.kind == "enum" else scalar_text(item)
        else:
            text = element.spelled()
        lines.append(f"   [{i}] {text}")
        if len(lines) >= MAX_OUTPUT_LINES:
            break
    return lines


class _Here:
    """A node position for errors raised while printing (never shown)."""

    start = 0
    end = 0


@command("??", syntax="?? expression",
         help="Evaluate a C++ expression and show its typed value (structures field by "
              "field).")
def cpp_evaluate_cmd(s, args: str) -> Result:
    text = args.strip()
    if not text:
        raise KdMissingExpressionError("<EOL>")
    v = evaluate_in_session(s, text)
    lines = render(s, v)
    data = {"type": v.type.spelled(), "value": v.value, "address": v.address}
    return Result(lines, data)
