"""kd's automatic pseudo-registers that a kernel session computes from the target
(`$ip`, `$thread`, `$prcb`, `$ra`, `$exentry`, `$tpid`, `$peb`, `$bug_code`, ...) and
the user pseudo-registers `$t0`-`$t19`.

Each value is read the way kd reads it: from the current register context, the stack
walk, the kernel image's PE header in memory, or the current thread's KTHREAD/EPROCESS.
"""

from __future__ import annotations

from commands.pe_cmds import NT, nt_headers
from commands.stackwalk import walk

# `$t0`-`$t19`: session variables, 0 until set (kd's user-defined pseudo-registers).
TEMPS = frozenset(f"$t{i}" for i in range(20))
# Pseudo-registers `r` may assign, with the real register an assignment changes (None:
# a session value).
WRITABLE = {**dict.fromkeys(TEMPS), "$ip": "rip", "$retreg": "rax", "$retreg64": "rax"}
# Every automatic pseudo-register `pseudo_value` computes, by name (the prompt's
# completion lists them; keep in step with `pseudo_value`).
AUTOMATIC = ("$ip", "$sp", "$csp", "$thread", "$proc", "$prcb", "$pcr", "$bug_code",
             "$bug_param1", "$bug_param2", "$bug_param3", "$bug_param4", "$retreg",
             "$retreg64", "$ptrsize", "$pagesize", "$p", "$ra", "$exentry", "$tpid", "$tid",
             "$peb", "$teb")

PAGE_SIZE = 0x1000
POINTER_SIZE = 8


def pseudo_value(s, name: str) -> int | None:
    """The value of pseudo-register `name` (lower-case, with `$`), None if the session
    computes no such name here."""
    if name in TEMPS:
        return s.pseudo.get(name, 0)
    if name == "$ip":
        return s.registers().get("rip")
    if name in ("$sp", "$csp"):
        return s.registers().get("rsp")
    if name == "$thread":
        return s.current_thread()
    if name == "$proc":
        return s.current_process()
    if name == "$prcb":
        return s.prcb()
    if name == "$pcr":
        return s.prcb() - s.target.types.resolve("_KPCR", "Prcb")[0]
    if name == "$bug_code" or name.startswith("$bug_param"):
        data = s.nt("KiBugCheckData")
        index = 0 if name == "$bug_code" else int(name[-1])
        return s.reader.u64(data + 8 * index)
    if name in ("$retreg", "$retreg64"):
        return s.registers().get("rax")
    if name == "$ptrsize":
        return POINTER_SIZE
    if name == "$pagesize":
        return PAGE_SIZE
    if name == "$p":
        return s.pseudo.get("$p", 0)
    if name == "$ra":
        return return_address(s)
    if name == "$exentry":
        base = s.target.kernel_base()
        entry = s.reader.field(NT, nt_headers(s.reader, base), "OptionalHeader.AddressOfEntryPoint")
        return base + entry
    if name in ("$tpid", "$tid", "$peb", "$teb"):
        return _thread_value(s, name)
    return None


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
