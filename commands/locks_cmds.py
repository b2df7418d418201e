"""Kernel locks: !locks (the executive resources on nt!ExpSystemResourcesList, their
owners and waiters) and !qlocks (each processor's queued spin lock entries,
KPRCB.LockQueue), read from memory as kd's extensions read them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from commands.errors import KdError
from commands.kernel_state import prcb_of, processor_count
from commands.registry import Result, command
from commands.target import MemoryAccessError

RESOURCE_OWNED_EXCLUSIVE = 0x80  # ERESOURCE.Flag
OWNER_ENTRY_SIZE = 0x10
MAX_OWNER_TABLE = 64  # more entries than this is a corrupt table, not a real one
POOL_HEADER_SIZE = 0x10
POOL_BLOCK_UNIT = 0x10
WAITERS_PER_LINE = 4
RESOURCE_LIMIT = 100_000


@dataclass
class ResourceInfo:
    address: int
    name: str  # the symbol the resource is at (`nt!X`), or ""
    exclusive: bool
    active_count: int
    contention: int
    exclusive_waiters_count: int
    shared_waiters_count: int
    owners: list[tuple[int, int]] = field(default_factory=list)  # (thread, count)
    exclusive_waiters: list[int] = field(default_factory=list)
    shared_waiters: list[int] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return bool(self.active_count or self.owners)


def resource_list(s) -> list[int]:
    """Every ERESOURCE on nt!ExpSystemResourcesList, in list order."""
    head = s.nt("ExpSystemResourcesList")
    off = s.reader.offset("_ERESOURCE", "SystemResourcesList")
    return [e - off for e in s.reader.list_entries(head, limit=RESOURCE_LIMIT)]


def _owner_table_size(s, table: int) -> int:
    """Entries of an owner table: the pool block it was allocated as says how many."""
    try:
        units = s.reader.field("_POOL_HEADER", table - POOL_HEADER_SIZE, "BlockSize")
    except MemoryAccessError:
        return 0
    return min(MAX_OWNER_TABLE, max(0, (units * POOL_BLOCK_UNIT - POOL_HEADER_SIZE)
                                    // OWNER_ENTRY_SIZE))


def _owners(s, res: int) -> list[tuple[int, int]]:
    r = s.reader
    out = []
    entries = [r.field_addr("_ERESOURCE", res, "OwnerEntry")]
    table = r.field("_ERESOURCE", res, "OwnerTable")
    if table:
        entries += [table + OWNER_ENTRY_SIZE * i for i in range(_owner_table_size(s, table))]
    for e in entries:
        try:
            thread = r.field("_OWNER_ENTRY", e, "OwnerThread")
            count = r.field("_OWNER_ENTRY", e, "OwnerCount")
        except MemoryAccessError:
            break
        if thread:
            out.append((thread, count))
    return out


def waiting_threads(s, dispatcher_object: int) -> list[int]:
    """The threads whose wait blocks are queued on a dispatcher object's wait list."""
    if not dispatcher_object:
        return []
    r = s.reader
    head = r.field_addr("_DISPATCHER_HEADER", dispatcher_object, "WaitListHead")
    off = r.offset("_KWAIT_BLOCK", "WaitListEntry")
    try:
        return [r.field("_KWAIT_BLOCK", e - off, "Thread")
                for e in r.list_entries(head, limit=1024)]
    except MemoryAccessError:
        return []


def read_resource(s, res: int) -> ResourceInfo:
    r = s.reader
    t = "_ERESOURCE"
    name = s.symbols.name_for(res) or ""
    info = ResourceInfo(
        res, name if "!" in name else "",
        bool(r.field(t, res, "Flag") & RESOURCE_OWNED_EXCLUSIVE),
        r.field(t, res, "ActiveCount"), r.field(t, res, "ContentionCount"),
        r.field(t, res, "NumberOfExclusiveWaiters"), r.field(t, res, "NumberOfSharedWaiters"))
    info.owners = _owners(s, res)
    info.exclusive_waiters = waiting_threads(s, r.field(t, res, "ExclusiveWaiters"))
    info.shared_waiters = waiting_threads(s, r.field(t, res, "SharedWaiters"))
    return info


def _thread_ref(thread: int, count: int) -> str:
    text = f"{thread:016x}-{count & 0xFF:02x}<*> "
    if thread & 3:  # an owner-pointer (low bits set), kd names the thread it stands for
        text += f"*** Actual Thread {thread & ~3:016x}"
    return text


def render_resource(res: ResourceInfo) -> list[str]:
    where = f"{res.name} (0x{res.address:016x})" if res.name else f"0x{res.address:016x}"
    if not res.held:
        state = "Available"
    elif res.exclusive:
        state = "Exclusively owned"
    else:
        state = f"Shared {len(res.owners)} owning threads"
    out = ["", f"Resource @ {where}    {state}"]
    if res.contention:
        out.append(f"    Contention Count = {res.contention}")
    if res.exclusive_waiters_count:
        out.append(f"    NumberOfExclusiveWaiters = {res.exclusive_waiters_count}")
    if res.shared_waiters_count:
        out.append(f"    NumberOfSharedWaiters = {res.shared_waiters_count}")
    if res.owners:
        out.append("     Threads: " + "".join(_thread_ref(t, c) for t, c in res.owners))
    for label, threads in (("Exclusive", res.exclusive_waiters),
                           ("Shared", res.shared_waiters)):
        if not threads:
            continue
        out += ["", f"     Threads Waiting On {label} Access:"]
        for i in range(0, len(threads), WAITERS_PER_LINE):
            chunk = threads[i:i + WAITERS_PER_LINE]
            out.append("              " + "".join(f"{t:016x}       " for t in chunk))
    return out


def _parse_locks_args(s, args: str) -> tuple[bool, int]:
    verbose, address = False, 0
    rest = args.strip()
    while rest.startswith("-"):
        word, _, rest = rest.partition(" ")
        for ch in word[1:].lower():
            if ch == "v":
                verbose = True
            elif ch not in ("p", "d"):  # statistics and "all locks": nothing more to show
                raise KdError(f"Unknown option '{ch}'")
        rest = rest.strip()
    if rest:
        address = s.evaluate(rest)
    return verbose, address


@command("!locks", syntax="!locks [-v] [address]",
         help="Executive resources (ERESOURCE) on nt!ExpSystemResourcesList: the held ones "
              "with their owners and waiters; -v every resource; an address shows one.")
def locks_cmd(s, args: str) -> Result:
    verbose, address = _parse_locks_args(s, args)
    lines = ["**** DUMP OF ALL RESOURCE OBJECTS ****"]
    if address:
        try:
            res = read_resource(s, address)
        except MemoryAccessError:
            raise KdError(f"Unable to read ERESOURCE at {address:016x}") from None
        lines += render_resource(res)
        return Result(lines[1:], {"resources": [asdict(res)], "total": 1,
                                  "held": int(res.held)})
    resources = resource_list(s)
    shown: list[ResourceInfo] = []
    held = 0
    scanned = 0
    for addr in resources:
        scanned += 1
        try:
            res = read_resource(s, addr)
        except MemoryAccessError:
            continue
        held += res.held
        if res.held or verbose:
            lines.append("KD: Scanning for held locks" + "." * scanned)
            scanned = 0
            lines += render_resource(res)
            shown.append(res)
    if scanned or not shown:
        lines.append("KD: Scanning for held locks" + "." * scanned)
        lines.append("")
    lines.append(f"{len(resources)} total locks"
                 + (f", {held} locks currently held" if held else ""))
    return Result(lines, {"resources": [asdict(r) for r in shown], "total": len(resources),
                          "held": held})


# -- !qlocks --------------------------------------------------------------------------------

# kd's names for the KSPIN_LOCK_QUEUE_NUMBER values (the lock queue numbers), in order.
LOCK_QUEUE_NAMES = ("KE   - Dispatcher", "KE   - Unused Spare", "MM   - PFN",
                    "MM   - System Space", "CC   - Vacb", "CC   - Master",
                    "EX   - NonPagedPool", "IO   - Cancel", "EX   - WorkQueue", "IO   - Vpb",
                    "IO   - Database", "IO   - Completion", "NTFS - Struct", "AFD  - WorkQueue",
                    "CC   - Bcb", "MM   - MM NonPagedPool")
LOCK_QUEUE_WAIT = 1
LOCK_QUEUE_OWNER = 2
QUEUE_ENTRY_SIZE = 0x10


def _queue_cells(s, prcbs: list[int], number: int, size: int) -> list[str]:
    """One lock queue number across the processors: 'O' for the owner, 1..n for the
    waiters in the order the queue hands the lock on, 'C' where the entry and the queue
    disagree, ' ' for processors neither owning nor waiting."""
    r = s.reader
    base = r.offset("_KPRCB", "LockQueue")
    entries = [p + base + size * number for p in prcbs]
    words = [r.field("_KSPIN_LOCK_QUEUE", e, "Lock") for e in entries]
    nexts = [r.field("_KSPIN_LOCK_QUEUE", e, "Next") for e in entries]
    cells = [" "] * len(prcbs)
    for i, word in enumerate(words):
        if not word & LOCK_QUEUE_OWNER:
            continue
        cells[i] = "O"
        position, nxt, seen = 1, nexts[i], {i}
        while nxt:
            if nxt not in entries or entries.index(nxt) in seen:
                break
            j = entries.index(nxt)
            seen.add(j)
            cells[j] = str(position) if words[j] & LOCK_QUEUE_WAIT else "C"
            position += 1
            nxt = nexts[j]
    for i, word in enumerate(words):
        if word & LOCK_QUEUE_WAIT and cells[i] == " ":
            cells[i] = "C"  # waiting, but behind no owner on any processor
    return cells


@command("!qlocks", syntax="!qlocks",
         help="The queued spin locks of every processor (KPRCB.LockQueue): owner and wait "
              "order per lock.")
def qlocks_cmd(s, args: str) -> Result:
    if args.strip():
        raise KdError("Usage: !qlocks")
    n = processor_count(s)
    prcbs = [prcb_of(s, i) for i in range(n)]
    entries = s.reader.types.resolve("_KPRCB", "LockQueue")[1]
    count = min(len(LOCK_QUEUE_NAMES), getattr(entries, "count", len(LOCK_QUEUE_NAMES)))
    lines = ["Key: O = Owner, 1-n = Wait order, blank = not owned/waiting, C = Corrupt", "",
             " " * 23 + "Processor Number",
             f"{'    Lock Name':<20}" + "".join(f"{i:>3}" for i in range(n)), ""]
    rows = []
    for number in range(count):
        cells = _queue_cells(s, prcbs, number, entries.element_size or QUEUE_ENTRY_SIZE)
        rows.append({"number": number, "name": LOCK_QUEUE_NAMES[number], "cells": cells})
        lines.append(f"{LOCK_QUEUE_NAMES[number]:<20}" + "".join(f"  {c}" for c in cells))
    return Result(lines, {"processors": n, "locks": rows})
