""".printf: kd's formatted output.

`.printf [/D] [/o?] "format" [, arg, ...]`: each argument is a MASM expression (a 64-bit
value).  Conversions, as kd applies them:

* `%x %X %o %u %d %i %c` take 32 bits (`l` too: a long is 32 bits on Windows); `I64`
  or `ll` take all 64.  Flags, width and precision work as in C.
* `%p` is a target pointer (16 hex digits), `%N` a host pointer (16 upper-case hex
  digits), `%y` the symbol at an address (`nt!Name+0x10 (fffff805`12345678)`).
* `%ma` / `%mu` read a NUL-terminated ASCII / Unicode string from target memory,
  `%msa` / `%msu` an ANSI_STRING / UNICODE_STRING; `%s` is not a string in kd and is
  printed as typed.  `%%` is a percent sign.
* The format string takes the escapes `\\n \\t \\\\ \\"`.  `/D` (DML) is printed as text.
"""

from __future__ import annotations

import re

from commands import fmt
from commands.aliases import read_c_string
from commands.cmdline import quoted
from commands.errors import KdMissingExpressionError, KdSyntaxError
from commands.registry import Result, command

_SPEC = re.compile(r"%(?P<flags>[-+ #0]*)(?P<width>\d*)(?:\.(?P<prec>\d+))?"
                   r"(?P<size>I64|I32|ll|l|h)?(?P<conv>msa|msu|ma|mu|ly|[pNyxXoudic%s])")
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "r": "\r", "0": "\0"}
_MASK32 = 0xFFFFFFFF


def unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


@command(".printf", syntax='.printf [/D] "format" [, argument ...]',
         help="Print formatted text: %p %x %I64x %d %u %c %ma %mu %msu %y %N ...")
def printf_cmd(s, args: str) -> Result:
    rest = args.lstrip()
    while rest.startswith("/"):
        option, _, rest = rest.partition(" ")
        if option != "/D" and not re.fullmatch(r"/o[dDenpPsvw]", option):
            raise KdSyntaxError(rest, 0)
        rest = rest.lstrip()
    end = _string_end(rest)
    if end < 0:
        raise KdSyntaxError(rest, len(args) - len(rest))
    fmt_text, _ = quoted(rest[:end + 1], rest[:end + 1])
    rest = rest[end + 1:]
    text = format_values(s, unescape(fmt_text), rest)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return Result(lines, {"text": text})


def _string_end(text: str) -> int:
    """Index of the closing quote of the string `text` starts with; -1 if none."""
    if not text.startswith('"'):
        return -1
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    return -1


def format_values(s, template: str, rest: str) -> str:
    """The template with each conversion replaced by the next argument of `rest`
    (`, expr, expr ...`), as kd formats it."""
    out: list[str] = []
    pos = 0
    for m in _SPEC.finditer(template):
        out.append(template[pos:m.start()])
        pos = m.end()
        conv = m.group("conv")
        if conv == "%":
            out.append("%")
            continue
        if conv == "s":
            out.append(m.group(0))
            continue
        value, rest = _next_argument(s, rest)
        out.append(_convert(s, m, value))
    out.append(template[pos:])
    return "".join(out)


def _next_argument(s, rest: str) -> tuple[int, str]:
    text = rest.lstrip()
    if not text.startswith(","):
        raise KdMissingExpressionError(text, 0) if not text else KdSyntaxError(text, 0)
    return s.take(text[1:])


def _convert(s, m: re.Match[str], value: int) -> str:
    conv = m.group("conv")
    size = m.group("size") or ""
    if conv == "p":
        return f"{value:016x}"
    if conv == "N":
        return f"{value:016X}"
    if conv in ("y", "ly"):
        name = s.symbols.name_for(value)
        return f"{name} ({fmt.addr(value)})" if name else fmt.addr(value)
    if conv in ("ma", "mu"):
        return read_c_string(s, value, 1 if conv == "ma" else 2)
    if conv in ("msa", "msu"):
        length = s.reader.field("_UNICODE_STRING", value, "Length")
        buffer = s.reader.field("_UNICODE_STRING", value, "Buffer")
        data = s.target.read_virtual(buffer, length) if length else b""
        return data.decode("utf-16-le" if conv == "msu" else "latin-1", errors="replace")
    wide = size in ("I64", "ll")
    if not wide:
        value &= _MASK32 if size != "h" else 0xFFFF
    bits = 64 if wide else 16 if size == "h" else 32
    if conv in ("d", "i") and value >> (bits - 1) & 1:
        value -= 1 << bits
    spec = "%" + m.group("flags") + m.group("width")
    if m.group("prec") is not None:
        spec += "." + m.group("prec")
    if conv == "c":
        return (spec + "c") % chr(value & 0xFF)
    return (spec + {"i": "d", "u": "d"}.get(conv, conv)) % value
