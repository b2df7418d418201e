"""`dt`: kd's display of a type, alone or laid over memory.

Pure rendering: the caller gives the type layouts, a memory reader and a symbolizer, and
gets back kd's lines.  Layout rules (all from real kd transcripts):

- Field line: 3 spaces per level + `+0x` + offset (3 hex digits at least) + space + name
  left-justified to 16 (or to the longest field argument when fields are selected) +
  ` : ` + type or value.
- Type only: `Int2B`, `Ptr64 _DEVICE_OBJECT`, `[28] Ptr64     long`, function pointers
  `Ptr64     long ` (with a trailing space), bit fields `Pos 0, 1 Bit`, embedded types
  by name, anonymous members `<anonymous-tag>`.
- With an address: signed integers `0n4`, unsigned `2` / `0x7000` /
  `0x00000001`74e7ad64`, chars `119 'w'` (Char) / `0x2 ''` (UChar), pointers
  `0xffffe709`68a36470 _DRIVER_EXTENSION`, NULL `(null) `, function pointers
  `0xfffff802`1134bb10     long  nt!IopInvalidDeviceRequest+0`, enums `200 ( NAME )`
  (bare hex; `0x3e7 (No matching name)`),
  bit fields `0y101` / `0y00100 (0x4)`, `_LIST_ENTRY [ f - b ]`, `_UNICODE_STRING "s"`,
  `_LARGE_INTEGER 0x0`, arrays `[2] <first element>` and `[15]  "System"`.
- Unreadable fields print `??` (pointers `???? `) and a final
  `Memory read error <16 hex digits>` names the last field that could not be read.
"""

from __future__ import annotations

import fnmatch
import struct
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from commands.dt_options import DtOptions
from commands.limits import MAX_OUTPUT_LINES, OutputLimit, stopped_notice
from commands.target import MemoryAccessError, TypeProvider

Reader = Callable[[int, int], bytes]


class Symbolizer(Protocol):
    def name_for(self, address: int) -> str | None:
        """`nt!KeBugCheckEx+0x10`, `nt!KeBugCheckEx` at offset 0, `myfault+0x12d0` for a
        module without symbols; None outside any module."""
        ...


class UnknownType(ValueError):
    """A type the symbols do not know; the message is kd's text."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Symbol {name} not found.")
        self.name = name


_CHARS = {"UChar": 1, "Char": 1, "Wchar": 2}
_FUNC_PREFIX = "Ptr64     "
_PTR_PREFIX = "Ptr64 "
_STRING_TYPES = {"_UNICODE_STRING": 2, "_STRING": 1}
_QUAD_TYPES = ("_LARGE_INTEGER", "_ULARGE_INTEGER")
_NAME_WIDTH = 16
_STRING_LIMIT = 0x100  # characters read behind a `Ptr64 Char/Wchar`
_LIST_SEPARATOR = "-" * 45


# -- number formats --------------------------------------------------------------------

def ptr_text(value: int) -> str:
    """A pointer as dt prints it: `0xfffff802`3fbc0000`."""
    value &= 0xFFFFFFFFFFFFFFFF
    return f"0x{value >> 32:08x}`{value & 0xFFFFFFFF:08x}"


def unsigned_text(value: int) -> str:
    """An unsigned integer: `0`..`9` bare, `0x7000`, backticked above 32 bits."""
    if value < 10:
        return str(value)
    if value <= 0xFFFFFFFF:
        return f"0x{value:x}"
    return ptr_text(value)


def _quad_text(value: int) -> str:
    if value <= 0xFFFFFFFF:
        return f"0x{value:x}"
    return ptr_text(value)


def _char_text(value: int, signed: bool) -> str:
    low = value & 0xFF
    shown = chr(low) if 0x20 <= low < 0x7F else ""
    if signed:
        number = str(value)
    else:
        number = "0" if value == 0 else f"0x{value:x}"
    return f"{number} '{shown}'"


def _split_array(type_str: str) -> tuple[int, str]:
    count, rest = type_str[1:].split("] ", 1)
    return int(count), rest


def _type_only_text(type_str: str) -> str:
    # kd ends a function-pointer type with a space (not inside an array type).
    is_function = type_str.startswith((_FUNC_PREFIX, "Ptr64 to     "))
    return type_str + " " if is_function else type_str


# -- field selection -------------------------------------------------------------------

def _parse_selection(fields: Sequence[str]) -> list[list[str]]:
    return [f.split(".") for f in fields]


def _matches(path: list[str], name: str) -> bool:
    comp = path[0].lower()
    low = name.lower()
    if comp == "":
        return True
    if "*" in comp or "?" in comp:
        return fnmatch.fnmatchcase(low, comp)
    if len(path) > 1 and path[1] == "":
        # `Field.` (and `Field..`): a prefix match, as with -y.
        return low.startswith(comp)
    return low == comp


class _Fail(Exception):
    pass


class _Dt:
    def __init__(self, types: TypeProvider, read: Reader | None, symbolizer: Symbolizer | None,
                 width: int, recurse: int, opts: DtOptions | None = None,
                 deref: Reader | None = None, arrays: dict[str, int] | None = None) -> None:
        self.types = types
        self._reader = read
        # What pointers lead to is read through `deref` (virtual memory even when the
        # structure itself was read from a physical address with -p).
        self._deref = deref or read
        self.sym = symbolizer
        self.width = width
        self.opts = opts or DtOptions()
        self.recurse = recurse
        self.block = self.opts.block
        self.arrays = arrays or {}  # field name (lower case) -> -a count (0: all)
        self.error_at: int | None = None
        self._quiet = 0

    def line(self, level: int, offset: int, name: str, value: str) -> str:
        """One field line: indentation (-i: one level only), offset (-o: none), name."""
        indent = "   " if self.opts.no_indent else "   " * (level + 1)
        where = "" if self.opts.no_offsets else f"+0x{offset:03x} "
        return f"{indent}{where}{name:<{self.width}} : {value}"

    def index_indent(self, level: int) -> str:
        """Where `[00]` element lines start: one column right of the field's indentation."""
        return ("   " if self.opts.no_indent else "   " * (level + 1)) + " "

    # -- memory ----------------------------------------------------------------------
    def read(self, address: int, size: int) -> bytes:
        """Read a field's bytes; failures are remembered for `Memory read error`."""
        if self._reader is None:
            raise _Fail
        try:
            data = self._reader(address & 0xFFFFFFFFFFFFFFFF, size)
        except MemoryAccessError:
            if not self._quiet:
                self.error_at = address & 0xFFFFFFFFFFFFFFFF
            raise _Fail from None
        if len(data) < size:
            if not self._quiet:
                self.error_at = address & 0xFFFFFFFFFFFFFFFF
            raise _Fail
        return data

    def peek(self, address: int, size: int, own: bool = False) -> bytes | None:
        """Read something a value points to, or (`own`) more of the structure's own
        memory for a summary; never reported as a read error."""
        reader = self._reader if own else self._deref
        if reader is None:
            return None
        try:
            data = reader(address & 0xFFFFFFFFFFFFFFFF, size)
        except MemoryAccessError:
            return None
        return data if len(data) >= size else None

    def read_uint(self, address: int, size: int) -> int:
        return int.from_bytes(self.read(address, size), "little")

    def _cstring(self, address: int, char_size: int, limit: int) -> str | None:
        """A NUL-terminated string of at most `limit` characters; None if the first
        character cannot be read."""
        chars: list[str] = []
        pos = address
        while len(chars) < limit:
            chunk = self.peek(pos, char_size)
            if chunk is None:
                if not chars:
                    return None
                break
            code = int.from_bytes(chunk, "little")
            if code == 0:
                break
            chars.append(_printable(code))
            pos += char_size
        return "".join(chars)

    def _counted_string(self, address: int, length: int, char_size: int) -> str | None:
        if length == 0:
            return ""
        data = self.peek(address, length)
        if data is None:
            return None
        count = length // char_size
        codes = [int.from_bytes(data[i * char_size:(i + 1) * char_size], "little")
                 for i in range(count)]
        return "".join(_printable(c) for c in codes)

    # -- values ----------------------------------------------------------------------
    def field_value(self, f: Any, base: int | None, drop_name: bool = False) -> str:
        if base is None:
            if self.opts.verbose:
                return self.verbose_field_type(f)
            if f.kind == "bitfield":
                return f.type
            return _type_only_text(f.type)
        addr = base + f.offset
        if f.kind == "bitfield":
            return self._bitfield(f, addr)
        if f.members:
            return "" if drop_name else f.type
        return self.value(f.type, addr, drop_name)

    def _bitfield(self, f: Any, addr: int) -> str:
        size = self.types.base_types.get(f.storage, (f.size or 4, False))[0]
        try:
            raw = self.read_uint(addr, size)
        except _Fail:
            return "??"
        value = (raw >> f.bit_position) & ((1 << f.bit_length) - 1)
        text = "0y" + format(value, f"0{f.bit_length}b")
        if f.bit_length > 4:
            text += " (0)" if value == 0 else f" (0x{value:x})"
        return text

    def value(self, type_str: str, addr: int, drop_name: bool = False) -> str:
        if type_str.startswith(_FUNC_PREFIX):
            return self._function_pointer(type_str[len(_FUNC_PREFIX):], addr)
        if type_str.startswith(_PTR_PREFIX):
            try:
                target = self.read_uint(addr, 8)
            except _Fail:
                return "???? "
            if target == 0:
                return "(null) "
            if self.block:
                # -b shows where a pointer points, not what (kd's block display).
                return ptr_text(target)
            return self.pointer(target, type_str[len(_PTR_PREFIX):])
        if type_str.startswith("["):
            return self._array(type_str, addr)
        if type_str in self.types.base_types:
            return self._base(type_str, addr)
        t = self.types.get(type_str)
        if t is None:
            return type_str
        if t.kind == "enum":
            try:
                raw = self.read_uint(addr, t.size or 4)
            except _Fail:
                return "??"
            return _enum_text(t, raw)
        return self.summary(t, addr, drop_name)

    def _base(self, type_str: str, addr: int) -> str:
        size, signed = self.types.base_types[type_str]
        try:
            data = self.read(addr, size)
        except _Fail:
            return "??"
        if type_str == "Float":
            return f"{struct.unpack('<f', data)[0]:g}"
        if type_str == "Double":
            return f"{struct.unpack('<d', data)[0]:g}"
        value = int.from_bytes(data, "little", signed=signed)
        if type_str in _CHARS:
            return _char_text(value, signed)
        if signed:
            return f"0n{value}"
        return unsigned_text(value)

    def _function_pointer(self, returns: str, addr: int) -> str:
        try:
            target = self.read_uint(addr, 8)
        except _Fail:
            return "???? "
        if target == 0:
            return "(null) "
        name = self.sym.name_for(target) if self.sym is not None else None
        if name and "!" in name:
            symbol = name if "+" in name.split("!", 1)[1] else name + "+0"
        elif name and name.startswith("<Unloaded_"):
            symbol = name  # in a driver that has been unloaded, named as k names it
        elif name is None:
            symbol = f"+{target:x}"  # outside every module: kd shows the bare address
        else:
            symbol = "+0"
        return f"{ptr_text(target)}     {returns}  {symbol}"

    def pointer(self, target: int, pointee: str) -> str:
        """A non-null pointer's value: the address and what it points to."""
        text = ptr_text(target)
        if pointee == "Void":
            return f"{text} Void"
        if pointee in _CHARS:
            s = self._cstring(target, _CHARS[pointee], _STRING_LIMIT)
            if s is None:
                s = f"--- memory read error at address {text} ---"
            return f'{text}  "{s}"'
        t = self.types.get(pointee) if not pointee.startswith(("Ptr64", "[")) else None
        if t is not None and t.kind != "enum":
            self._quiet += 1
            try:
                return f"{text} {self.summary(t, target, own=False)}"
            finally:
                self._quiet -= 1
        if pointee.startswith(("Ptr64", "[")) or pointee in self.types.base_types or t is not None:
            self._quiet += 1
            try:
                return f"{text}  -> {self.value(pointee, target)}"
            finally:
                self._quiet -= 1
        return f"{text} {pointee}"

    def _array(self, type_str: str, addr: int) -> str:
        count, element = _split_array(type_str)
        if element in _CHARS:
            size = _CHARS[element]
            try:
                data = self.read(addr, count * size)
            except _Fail:
                return (f'[{count}]  "--- memory read error at address '
                        f'{ptr_text(addr)} ---"')
            chars = []
            for i in range(count):
                code = int.from_bytes(data[i * size:(i + 1) * size], "little")
                if code == 0:
                    break
                chars.append(_printable(code))
            return f'[{count}]  "{"".join(chars)}"'
        return f"[{count}] {self.value(element, addr)}"

    def summary(self, t: Any, addr: int, drop_name: bool = False, own: bool = True) -> str:
        """An embedded struct's value (`own`: in the structure's memory; else what a
        pointer points to): its name, and for a few types their contents."""
        name = "" if drop_name else t.name
        detail = self._detail(t, addr, own)
        if detail is None:
            return name
        return f"{name} {detail}"

    def _detail(self, t: Any, addr: int, own: bool = True) -> str | None:
        if t.name == "_LIST_ENTRY":
            data = self.peek(addr, 16, own)
            if data is None:
                return None
            flink, blink = struct.unpack("<QQ", data)
            return f"[ {ptr_text(flink)} - {ptr_text(blink)} ]"
        if t.name in _STRING_TYPES:
            header = self.peek(addr, 16, own)
            if header is None:
                return None
            length = int.from_bytes(header[0:2], "little")
            buffer = int.from_bytes(header[8:16], "little")
            s = self._counted_string(buffer, length, _STRING_TYPES[t.name])
            if s is None:
                s = f"--- memory read error at address {ptr_text(buffer)} ---"
            return f'"{s}"'
        if t.name in _QUAD_TYPES:
            data = self.peek(addr, 8, own)
            if data is None:
                return None
            return _quad_text(int.from_bytes(data, "little"))
        return None

    # -- structure walk --------------------------------------------------------------
    def fields(self, fields: Sequence[Any], base: int | None, level: int,
               paths: list[list[str]] | None, out: list[str]) -> None:
        for f in fields:
            sub: list[list[str]] | None = None
            if paths is not None:
                matched = [p for p in paths if _matches(p, f.name)]
                if not matched:
                    continue
                sub = [p[1:] for p in matched if len(p) > 1] or None
            count = self._element_count(f, base, level)
            expandable_inline = f.kind in ("struct", "union") or bool(f.members)
            drop = base is not None and expandable_inline and (sub is not None or self.block)
            value = "" if count is not None else self.field_value(f, base, drop_name=drop)
            self._emit(out, self.line(level, f.offset, f.name, value))
            if self.opts.verbose and base is None and f.kind == "enum":
                out.append("")  # kd ends a verbose enum type with an empty line
            if count is not None:
                self.elements(f, base + f.offset, level, count, sub, out)
            elif sub is not None:
                self.expand(f, base, level + 1, sub, out)
            elif level < self.recurse or (self.block and expandable_inline):
                self.expand(f, base, level + 1, None, out)

    @staticmethod
    def _emit(out: list[str], line: str) -> None:
        out.append(line)
        if len(out) >= MAX_OUTPUT_LINES:
            raise OutputLimit

    def _element_count(self, f: Any, base: int | None, level: int) -> int | None:
        """How many elements of an array field to show one per line (-a, -b), or None.
        Character arrays stay strings; -a names top-level fields."""
        if base is None or f.kind != "array" or f.element in _CHARS:
            return None
        wanted = self.arrays.get(f.name.lower()) if level == 0 else None
        if wanted is None and "*" in self.arrays and level == 0:
            wanted = self.arrays["*"]
        if wanted is None and not self.block:
            return None
        return f.count if not wanted else min(wanted, f.count)

    def elements(self, f: Any, addr: int, level: int, count: int,
                 paths: list[list[str]] | None, out: list[str]) -> None:
        """An array's elements, `[00]`, `[01]`..., each with its value or its members."""
        digits = max(2, len(str(count - 1)))
        lead = self.index_indent(level)
        t = self.types.get(f.element) if f.element[:1] == "_" else None
        for i in range(count):
            where = addr + i * f.element_size
            index = f"[{i:0{digits}d}]"
            if t is not None and t.kind != "enum":
                if self.block:
                    self._emit(out, f"{lead}{index}")
                else:
                    self._emit(out, f"{lead}{index} {self.summary(t, where)}")
                if self.block or paths is not None or level < self.recurse:
                    self.fields(t.fields, where, level + 1, paths, out)
            else:
                self._emit(out, f"{lead}{index} {self.value(f.element, where)}")

    def expand(self, f: Any, base: int | None, level: int,
               paths: list[list[str]] | None, out: list[str]) -> None:
        """The members of a field: an anonymous or embedded struct, the first element of
        an array of structs, or a pointer's target."""
        if f.kind == "bitfield":
            return
        where = None if base is None else base + f.offset
        if f.members:
            self.fields(f.members, where, level, paths, out)
            return
        type_name = f.type
        if f.kind == "array":
            # kd expands an array's first element, as it shows its first value.
            type_name = f.type
            while type_name.startswith("["):
                type_name = _split_array(type_name)[1]
        if f.kind in ("struct", "union", "array"):
            t = self.types.get(type_name) if type_name[:1] == "_" else None
            if t is not None and t.kind != "enum":
                self.fields(t.fields, where, level, paths, out)
            return
        if f.kind == "pointer" and f.type.startswith(_PTR_PREFIX) and not self.block:
            pointee = f.type[len(_PTR_PREFIX):]
            t = self.types.get(pointee) if not pointee.startswith(("Ptr64", "[")) else None
            if t is None or t.kind == "enum":
                return
            if where is None:
                self.fields(t.fields, None, level, paths, out)
                return
            try:
                target = self.read_uint(where, 8)
            except _Fail:
                return
            if target:
                self.fields(t.fields, target, level, paths, out)

    # -- verbose type names (-v) -----------------------------------------------------
    def verbose_field_type(self, f: Any) -> str:
        if f.kind == "bitfield":
            return f"Bitfield {f.type}"
        if f.members:
            kind = "union" if f.kind == "union" else "struct"
            return f"{kind} {f.type}, {len(f.members)} elements, 0x{f.size:x} bytes"
        # As without -v, a function pointer ends with a space (not inside an array).
        return _type_only_text(self.verbose_type(f.type))

    def verbose_type(self, type_str: str) -> str:
        """`Ptr64 to struct _KTHREAD, 205 elements, 0x430 bytes`, `[2] Uint8B`..."""
        if type_str.startswith(_FUNC_PREFIX):
            return "Ptr64 to " + type_str[len("Ptr64 "):]
        if type_str.startswith(_PTR_PREFIX):
            return "Ptr64 to " + self.verbose_type(type_str[len(_PTR_PREFIX):])
        if type_str.startswith("["):
            count, rest = _split_array(type_str)
            return f"[{count}] {self.verbose_type(rest)}"
        if type_str in self.types.base_types:
            return type_str
        t = self.types.get(type_str)
        return type_header(t) if t is not None else type_str


def type_header(t: Any) -> str:
    """kd's -v line for a type: `struct _KDPC, 11 elements, 0x40 bytes`."""
    if t.kind == "enum":
        return f"Enum {t.name},  {len(t.values)} total enums"
    return f"{t.kind} {t.name}, {len(t.fields)} elements, 0x{t.size:x} bytes"


def _printable(code: int) -> str:
    if code < 0x20 or code == 0x7F:
        return "."
    try:
        return chr(code)
    except ValueError:
        return "."


def _enum_text(t: Any, raw: int) -> str:
    size = t.size or 4
    signed_value = raw - (1 << (size * 8)) if raw >> (size * 8 - 1) else raw
    name = t.enum_name(raw)
    if name is None and signed_value != raw:
        name = t.enum_name(signed_value)
    if name is None:
        return f"{unsigned_text(raw)} (No matching name)"
    # A named value is bare hex (`200 ( NonPagedPoolNx )`), an unnamed one `0x...`.
    return f"{raw:x} ( {name} )"


def _lookup(types: TypeProvider, type_name: str) -> Any:
    t = types.get(type_name)
    if t is None:
        raise UnknownType(type_name)
    return t


def _width(fields: Sequence[str]) -> int:
    return max(len(f) for f in fields) if fields else _NAME_WIDTH


def render_dt(types: TypeProvider, type_name: str, address: int | None = None,
              read: Reader | None = None, symbolizer: Symbolizer | None = None,
              fields: Sequence[str] = (), recurse: int = 0, *,
              header: bool | None = None, opts: DtOptions | None = None,
              deref: Reader | None = None, arrays: dict[str, int] | None = None) -> list[str]:
    """kd's `dt [module!]type [address] [fields] [-rN]`.

    `fields` are kd's field arguments: `Name`, `Name*` (prefix), `A.B` (a member of a
    member), `A.` / `A..` (members one or two levels down).  kd prints the
    `module!_TYPE` header line only when the type was named without a module (it had to
    search for it); `header` overrides that.  `opts` carries the display options (-v,
    -b, -c, -i, -o); `arrays` the array fields to show element by element (-a: name ->
    count, 0 for all); `deref` reads what pointers point to (default: `read`).
    """
    opts = opts or DtOptions()
    t = _lookup(types, type_name)
    if header is None:
        header = "!" not in type_name
    out: list[str] = []
    if header:
        out.append(f"nt!{t.name}")
    if opts.verbose:
        out.append(type_header(t))
    width = 0 if opts.compact else _width(fields)
    dt = _Dt(types, read, symbolizer, width, recurse, opts, deref, arrays)
    if t.kind == "enum":
        if address is None:
            for name, value in t.values:
                out.append(f"   {name} = 0n{value}")
        else:
            text = dt.value(t.name, address)
            out.append(f"   {text}")
            if dt.error_at is not None:
                out.append(f"Memory read error {dt.error_at:016x}")
        return out
    if address is not None:
        detail = dt._detail(t, address)
        if detail is not None:
            out.append(f" {detail}")
    paths = _parse_selection(fields) if fields else None
    before = len(out)
    try:
        dt.fields(t.fields, address, 0, paths, out)
    except OutputLimit:
        out.append(stopped_notice())
        return out
    if paths is not None and len(out) == before:
        out.append("Cannot find specified field members.")
    elif opts.compact:
        out[before:] = [compact_line(out[before:])]
    if dt.error_at is not None:
        out.append(f"Memory read error {dt.error_at:016x}")
    return out


def compact_line(lines: Sequence[str]) -> str:
    """-c: a structure's field lines joined on one line, without the name padding."""
    return "   " + " ".join(" ".join(line.split(" : ", 1)).strip() for line in lines)


def render_list_entry_walk(types: TypeProvider, type_name: str, address: int, read: Reader,
                           symbolizer: Symbolizer | None, list_field: str,
                           fields: Sequence[str] = (), recurse: int = 0,
                           limit: int = 1000, *, opts: DtOptions | None = None,
                           arrays: dict[str, int] | None = None) -> list[str]:
    """kd's `dt type address -l Field.Path`: each element headed by
    `<Field.Path> at <address>` and a rule, then its fields and a blank line, following
    the link until it returns to the first element, is NULL or cannot be read (and after
    `limit` elements at most)."""
    t = _lookup(types, type_name)
    try:
        offset, link = types.resolve(t.name, list_field)
    except KeyError:
        return ["Cannot find specified field members."]
    # Where the link points inside the next element: the element itself when the link
    # is a pointer to this type; the _LIST_ENTRY itself when the field named is one;
    # else the member that holds the link (`ActiveProcessLinks` for `...Links.Flink`).
    if link.type == f"{_PTR_PREFIX}{t.name}":
        back = 0
    elif link.kind in ("struct", "union"):
        back = offset
    else:
        back = offset - link.offset
    out: list[str] = []
    current = address
    seen: set[int] = set()
    for _ in range(limit):
        out.append(f"{list_field} at {ptr_text(current)}")
        out.append(_LIST_SEPARATOR)
        out.extend(render_dt(types, type_name, current, read, symbolizer, fields, recurse,
                             header=False, opts=opts, arrays=arrays))
        out.append("")
        if len(out) >= MAX_OUTPUT_LINES:
            out.append(stopped_notice())
            break
        seen.add(current)
        try:
            data = read(current + offset, 8)
        except MemoryAccessError:
            break
        nxt = int.from_bytes(data[:8], "little")
        if nxt == 0:
            break
        nxt = (nxt - back) & 0xFFFFFFFFFFFFFFFF
        if nxt == address or nxt in seen:
            break
        current = nxt
    return out


def render_array(types: TypeProvider, type_name: str, address: int, count: int,
                 read: Reader, symbolizer: Symbolizer | None, fields: Sequence[str] = (),
                 recurse: int = 0, *, opts: DtOptions | None = None,
                 arrays: dict[str, int] | None = None) -> list[str]:
    """kd's `dt -aN type address`: N consecutive structures, each headed by
    `[i] @ <address>` and a rule (with -c: `[i] <fields on one line>`)."""
    opts = opts or DtOptions()
    t = _lookup(types, type_name)
    size = t.size or 1
    out: list[str] = []
    for i in range(count):
        where = (address + i * size) & 0xFFFFFFFFFFFFFFFF
        body = render_dt(types, type_name, where, read, symbolizer, fields, recurse,
                         header=False, opts=opts, arrays=arrays)
        if opts.compact:
            out.append(f"[{i}] " + " ".join(line.strip() for line in body))
            continue
        out.append(f"[{i}] @ {where >> 32:08x}`{where & 0xFFFFFFFF:08x} ")
        out.append(_LIST_SEPARATOR)
        out.extend(body)
        out.append("")
        if len(out) >= MAX_OUTPUT_LINES:
            out.append(stopped_notice())
            break
    return out
