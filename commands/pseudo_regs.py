"""kd's automatic pseudo-registers that a kernel session computes from the target
(`$ip`, `$thread`, `$prcb`, `$ra`, `$exentry`, `$tpid`, `$peb`, `$bug_code`, ...) and
the user pseudo-registers `$t0`-`$t19`.

Each value is read the way kd reads it: from the current register context, the stack
walk, the kernel image's PE header in memory, or the current thread's KTHREAD/EPROCESS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from commands.pe_cmds import NT, nt_headers
from commands.stackwalk import walk

# `$t0`-`$t19`: session variables, 0 until set (kd's user-defined pseudo-registers).
TEMPS = frozenset(f"$t{i}" for i in range(20))
# Pseudo-registers `r` may assign, with the real register an assignment changes (None:
# a session value).
WRITABLE = {**dict.fromkeys(TEMPS), "$ip": "rip", "$retreg": "rax", "$retreg64": "rax"}

PAGE_SIZE = 0x1000
POINTER_SIZE = 8


def _bug_word(s, name: str) -> int:
    """`$bug_code` and `$bug_param1`-`4`: nt!KiBugCheckData's words."""
    index = 0 if name == "$bug_code" else int(name[-1])
    return s.reader.u64(s.nt("KiBugCheckData") + 8 * index)


def _exentry(s, name: str) -> int:
    base = s.target.kernel_base()
    return base + s.reader.field(NT, nt_headers(s.reader, base),
                                 "OptionalHeader.AddressOfEntryPoint")


def remember_display(s, result) -> None:
    """`$p` is the first value the last memory display (`dd`, `dq`, `dps`, ...) printed."""
    data = result.data
    if isinstance(data, dict) and data.get("kind") and data.get("values"):
        first = data["values"][0]
        if isinstance(first, int):
            s.pseudo["$p"] = first


def return_address(s) -> int:
    """`$ra`: where the current frame returns to, from the stack walk of the context."""
    regs = s.registers()
    frames = walk(s.target, s.symbols, regs.get("rip", 0), regs.get("rsp", 0), 1)
    return frames[0].ret_addr if frames else 0


def _thread_value(s, name: str) -> int:
    thread = s.current_thread()
    if name == "$tid":
        return s.reader.field("_ETHREAD", thread, "Cid.UniqueThread")
    if name == "$teb":
        return s.reader.field("_KTHREAD", thread, "Teb")
    process = s.current_process()
    if name == "$tpid":
        return s.reader.field("_EPROCESS", process, "UniqueProcessId")
    return s.reader.field("_EPROCESS", process, "Peb")


# Every automatic pseudo-register, by name, and how it is computed.
_COMPUTED: dict[str, Callable[[Any, str], int | None]] = {
    "$ip": lambda s, _: s.registers().get("rip"),
    "$sp": lambda s, _: s.registers().get("rsp"),
    "$csp": lambda s, _: s.registers().get("rsp"),
    "$thread": lambda s, _: s.current_thread(),
    "$proc": lambda s, _: s.current_process(),
    "$prcb": lambda s, _: s.prcb(),
    "$pcr": lambda s, _: s.prcb() - s.target.types.resolve("_KPCR", "Prcb")[0],
    "$bug_code": _bug_word,
    **{f"$bug_param{i}": _bug_word for i in range(1, 5)},
    "$retreg": lambda s, _: s.registers().get("rax"),
    "$retreg64": lambda s, _: s.registers().get("rax"),
    "$ptrsize": lambda s, _: POINTER_SIZE,
    "$pagesize": lambda s, _: PAGE_SIZE,
    "$p": lambda s, _: s.pseudo.get("$p", 0),
    "$ra": lambda s, _: return_address(s),
    "$exentry": _exentry,
    **dict.fromkeys(("$tpid", "$tid", "$peb", "$teb"), _thread_value),
}
AUTOMATIC = tuple(_COMPUTED)  # their names (the prompt's completion lists them)


def pseudo_value(s, name: str) -> int | None:
    """The value of pseudo-register `name` (lower-case, with `$`), None if the session
    computes no such name here."""
    if name in TEMPS:
        return s.pseudo.get(name, 0)
    compute = _COMPUTED.get(name)
    return compute(s, name) if compute is not None else None
