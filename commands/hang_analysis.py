"""`!analyze -hang`: a machine that is stuck rather than crashed.  It looks, in memory, for
a thread blocked behind a lock another thread holds: first the executive resources on
nt!ExpSystemResourcesList that have waiters, then threads waiting on a mutant or a fast
(guarded) mutex that has an owner, and reports the lock, the owner and the blocked
thread with its stack, in !analyze's field layout."""

from __future__ import annotations

from dataclasses import dataclass

from commands import fmt
from commands.locks_cmds import read_resource, render_resource, resource_list
from commands.process import Kernel
from commands.registry import Result
from commands.stack import call_site
from commands.stackwalk import Frame, walk
from commands.target import MemoryAccessError

WAIT = 5
MUTANT = 2  # _DISPATCHER_HEADER.Type of a KMUTANT
WR_FAST_MUTEX, WR_GUARDED_MUTEX = 34, 35
SYSTEM_MODULES = ("nt", "hal")
NO_HANG = "No blocked thread waiting on a held lock was found."


@dataclass
class Blocked:
    lock: int
    kind: str  # "resource", "mutant", "fast mutex"
    owner: int
    thread: int


def _resource_hang(s) -> Blocked | None:
    for addr in resource_list(s):
        try:
            res = read_resource(s, addr)
        except MemoryAccessError:
            continue
        waiters = res.exclusive_waiters + res.shared_waiters
        if res.owners and waiters:
            return Blocked(addr, "resource", res.owners[0][0] & ~3, waiters[0])
    return None


def _all_threads(s, k: Kernel) -> list[int]:
    r = s.reader
    off = r.offset("_ETHREAD", "ThreadListEntry")
    out = []
    for ep in k.process_list():
        out += [e - off for e in r.list_entries(r.field_addr("_EPROCESS", ep, "ThreadListHead"),
                                                limit=4096)]
    return out


def _mutex_hang(s, k: Kernel) -> Blocked | None:
    r = s.reader
    for et in _all_threads(s, k):
        try:
            if r.field("_ETHREAD", et, "Tcb.State") != WAIT:
                continue
            block = r.field("_ETHREAD", et, "Tcb.WaitBlockList")
            if not block:
                continue
            obj = r.field("_KWAIT_BLOCK", block, "Object")
            reason = r.field("_ETHREAD", et, "Tcb.WaitReason")
            if r.field("_DISPATCHER_HEADER", obj, "Type") == MUTANT:
                owner = r.field("_KMUTANT", obj, "OwnerThread")
                if owner and owner != et:
                    return Blocked(obj, "mutant", owner, et)
            elif reason in (WR_FAST_MUTEX, WR_GUARDED_MUTEX):
                mutex = obj - r.offset("_FAST_MUTEX", "Event")
                owner = r.field("_FAST_MUTEX", mutex, "Owner")
                if owner:
                    return Blocked(mutex, "fast mutex", owner, et)
        except MemoryAccessError:
            continue
    return None


def find_blocked(s) -> Blocked | None:
    k = Kernel(s)
    return _resource_hang(s) or _mutex_hang(s, k)


def _stack(s, k: Kernel, et: int) -> list[Frame]:
    ctx = k.thread_context(et, s.reader.field("_ETHREAD", et, "Tcb.State"))
    if ctx is None:
        return []
    return walk(s.target, s.symbols, ctx["rip"], ctx["rsp"])


def hang_cmd(s) -> Result:
    from commands.analyze import BANNER

    lines = list(BANNER) + ["Debugging Details:", "------------------", "", ""]
    b = find_blocked(s)
    if b is None:
        return Result(lines + [NO_HANG], {"blocked": None})
    k = Kernel(s)
    if b.kind == "resource":
        lines += [f"LOCK_ADDRESS:  {b.lock:016x} -- (!locks {b.lock:016x})"]
        lines += render_resource(read_resource(s, b.lock)) + [""]
    else:
        lines += [f"LOCK_ADDRESS:  {b.lock:016x}", ""]
    process = s.reader.field("_ETHREAD", b.thread, "Tcb.Process")
    lines += [f"BLOCKING_THREAD:  {b.owner:016x}", "", f"BLOCKED_THREAD:  {b.thread:016x}", "",
              f"PROCESS_NAME:  {k.image(process)}", "", "STACK_TEXT:  "]
    frames = _stack(s, k, b.thread)
    for f in frames:
        lines.append(f"{fmt.addr(f.child_sp)} {fmt.addr(f.ret_addr)}     : "
                     + " ".join(fmt.addr(x) for x in f.args) + f" : {call_site(s, f.ip)}")
    lines += ["", ""]
    data = {"lock": b.lock, "kind": b.kind, "blocking_thread": b.owner,
            "blocked_thread": b.thread, "symbol": "", "module": "", "image": ""}
    for f in frames:
        m = s.symbols.module_at(f.ip)
        if m is not None and m.name not in SYSTEM_MODULES:
            data.update(symbol=call_site(s, f.ip), module=m.name, image=m.image)
            lines += [f"SYMBOL_NAME:  {data['symbol']}", "", f"MODULE_NAME: {m.name}", "",
                      f"IMAGE_NAME:  {m.image}", ""]
            break
    return Result(lines, data)
