"""Executive locks with owners and waiters in memory: fast mutexes (and guarded
mutexes, the same structure since Windows 8) and ERESOURCEs.

A fast mutex's Count is 1 when free and 0 when owned (drivers initialize one inline,
as ExInitializeFastMutex in wdm.h does, or with KeInitializeGuardedMutex); waiters block
on its embedded synchronization event (WrFastMutex / WrGuardedMutex).  An ERESOURCE records an
exclusive owner (or its first shared owner) in OwnerEntry and further shared owners in
an OwnerTable; exclusive waiters block on an event, shared waiters on a semaphore
(both WrResource), and every resource is on nt!ExpSystemResourcesList for !locks.
"""

from __future__ import annotations

from machine.ke.native import Call, routine
from machine.ke.processor import APC_LEVEL
from machine.ke.wait import init_header
from machine.rtl.lists import insert_tail_list, remove_entry_list
from machine.types.view import Struct

WR_RESOURCE, WR_FAST_MUTEX, WR_GUARDED_MUTEX = 27, 34, 35
RESOURCE_OWNED_EXCLUSIVE = 0x80
RESOURCE_NOT_OWNED = 0xE3
OWNER_TABLE_ENTRIES = 8
KERNEL_MODE = 0


# -- fast and guarded mutexes ---------------------------------------------------------

def _fast_mutex_init(m, space, mutex: int) -> None:
    fm = Struct(space, "_FAST_MUTEX", mutex)
    fm.set("Count", 1)
    fm.set("Owner", 0)
    fm.set("Contention", 0)
    init_header(space, fm.addr("Event"), 1, m.catalog.get("_KEVENT").size, 0)


def _acquire_fast_mutex(m, proc, mutex: int, reason: int, raise_irql: bool):
    fm = Struct(m.kspace, "_FAST_MUTEX", mutex)
    thread = proc.current
    old_irql = proc.irql
    if raise_irql:
        m.set_irql(proc, max(proc.irql, APC_LEVEL))
    while fm.get("Count") != 1:
        fm.set("Contention", fm.get("Contention") + 1)
        yield Call(m.sym("KeWaitForSingleObject"), (fm.addr("Event"), reason, KERNEL_MODE, 0,
                                                    0), ret=0x9A)
        proc = m.processor_of(thread)
    fm.set("Count", 0)
    fm.set("Owner", thread.ethread)
    fm.set("OldIrql", old_irql)


def _release_fast_mutex(m, proc, mutex: int, lower_irql: bool):
    fm = Struct(m.kspace, "_FAST_MUTEX", mutex)
    fm.set("Owner", 0)
    fm.set("Count", 1)
    if fm.get("Contention"):
        yield Call(m.sym("KeSetEvent"), (fm.addr("Event"), 0, 0), ret=0x6E)
    if lower_irql:
        m.set_irql(proc, fm.get("OldIrql"))
    return 0


@routine("ExAcquireFastMutex", frame=0x38, size=0x140)
def ExAcquireFastMutex(m, proc, a):
    yield from _acquire_fast_mutex(m, proc, a[0], WR_FAST_MUTEX, raise_irql=True)
    return 0


@routine("ExReleaseFastMutex", frame=0x38, size=0x100)
def ExReleaseFastMutex(m, proc, a):
    result = yield from _release_fast_mutex(m, proc, a[0], lower_irql=True)
    return result


@routine("KeInitializeGuardedMutex", frame=0x28, size=0x80)
def KeInitializeGuardedMutex(m, proc, a):
    _fast_mutex_init(m, proc.cpu.mem, a[0])
    return 0


@routine("KeAcquireGuardedMutex", frame=0x38, size=0x140)
def KeAcquireGuardedMutex(m, proc, a):
    """Enters a guarded region (special kernel APCs off) instead of raising IRQL."""
    kt = Struct(m.kspace, "_KTHREAD", proc.current.ethread)
    kt.set("SpecialApcDisable", kt.get("SpecialApcDisable") - 1)
    yield from _acquire_fast_mutex(m, proc, a[0], WR_GUARDED_MUTEX, raise_irql=False)
    return 0


@routine("KeReleaseGuardedMutex", frame=0x38, size=0x100)
def KeReleaseGuardedMutex(m, proc, a):
    yield from _release_fast_mutex(m, proc, a[0], lower_irql=False)
    kt = Struct(m.kspace, "_KTHREAD", proc.current.ethread)
    kt.set("SpecialApcDisable", kt.get("SpecialApcDisable") + 1)
    return 0


# -- executive resources ----------------------------------------------------------------

def _owners(m, resource: int) -> list[tuple[int, int]]:
    """(owner entry address, thread) for every owner of a resource."""
    r = Struct(m.kspace, "_ERESOURCE", resource)
    out = []
    first = r.addr("OwnerEntry")
    if Struct(m.kspace, "_OWNER_ENTRY", first).get("OwnerThread"):
        out.append((first, Struct(m.kspace, "_OWNER_ENTRY", first).get("OwnerThread")))
    table = r.get("OwnerTable")
    for i in range(OWNER_TABLE_ENTRIES if table else 0):
        e = Struct(m.kspace, "_OWNER_ENTRY", table + 0x10 * i)
        if e.get("OwnerThread"):
            out.append((e.address, e.get("OwnerThread")))
    return out


def _add_owner(m, resource: int, ethread: int) -> None:
    for entry, owner in _owners(m, resource):
        if owner == ethread:
            e = Struct(m.kspace, "_OWNER_ENTRY", entry)
            e.set("OwnerCount", e.get("OwnerCount") + 1)
            return
    r = Struct(m.kspace, "_ERESOURCE", resource)
    slots = [r.addr("OwnerEntry")]
    if not r.get("OwnerTable"):
        r.set("OwnerTable", m.pool.allocate(0, 0x10 * OWNER_TABLE_ENTRIES, "Reso"))
    slots += [r.get("OwnerTable") + 0x10 * i for i in range(OWNER_TABLE_ENTRIES)]
    for slot in slots:
        e = Struct(m.kspace, "_OWNER_ENTRY", slot)
        if not e.get("OwnerThread"):
            e.set("OwnerThread", ethread)
            e.set("OwnerCount", 1)
            r.set("ActiveEntries", r.get("ActiveEntries") + 1)
            return
    raise RuntimeError("resource owner table full")


def _can_acquire(m, resource: int, ethread: int, exclusive: bool) -> bool:
    r = Struct(m.kspace, "_ERESOURCE", resource)
    owners = [t for _, t in _owners(m, resource)]
    if not owners:
        return True
    if r.get("Flag") & RESOURCE_OWNED_EXCLUSIVE:
        return owners == [ethread]  # recursive exclusive acquisition
    if exclusive:
        return False
    return not r.get("NumberOfExclusiveWaiters") or ethread in owners


@routine("ExInitializeResourceLite", frame=0x38, size=0x140)
def ExInitializeResourceLite(m, proc, a):
    space = proc.cpu.mem
    size = m.catalog.get("_ERESOURCE").size
    space.write(a[0], bytes(size))
    r = Struct(space, "_ERESOURCE", a[0])
    exclusive = m.pool.allocate(0, m.catalog.get("_KEVENT").size, "Reso")
    init_header(m.kspace, exclusive, 1, m.catalog.get("_KEVENT").size, 0)
    shared = m.pool.allocate(0, m.catalog.get("_KSEMAPHORE").size, "Reso")
    init_header(m.kspace, shared, 5, m.catalog.get("_KSEMAPHORE").size, 0)
    Struct(m.kspace, "_KSEMAPHORE", shared).set("Limit", 0x7FFFFFFF)
    r.set("ExclusiveWaiters", exclusive)
    r.set("SharedWaiters", shared)
    insert_tail_list(space, m.sym("nt!ExpSystemResourcesList"), r.addr("SystemResourcesList"))
    return 0


def _acquire(m, proc, resource: int, wait: int, exclusive: bool):
    r = Struct(m.kspace, "_ERESOURCE", resource)
    thread = proc.current
    while not _can_acquire(m, resource, thread.ethread, exclusive):
        if not wait:
            return 0
        r.set("ContentionCount", r.get("ContentionCount") + 1)
        field = "NumberOfExclusiveWaiters" if exclusive else "NumberOfSharedWaiters"
        r.set(field, r.get(field) + 1)
        target = r.get("ExclusiveWaiters" if exclusive else "SharedWaiters")
        yield Call(m.sym("KeWaitForSingleObject"), (target, WR_RESOURCE, KERNEL_MODE, 0, 0),
                   ret=0xC3)
        r.set(field, r.get(field) - 1)
    _add_owner(m, resource, thread.ethread)
    if exclusive:
        r.set("Flag", r.get("Flag") | RESOURCE_OWNED_EXCLUSIVE)
    r.set("ActiveCount", r.get("ActiveCount") + 1)
    return 1


@routine("ExAcquireResourceExclusiveLite", frame=0x58, size=0x300)
def ExAcquireResourceExclusiveLite(m, proc, a):
    """(Resource, Wait) -> TRUE when acquired."""
    result = yield from _acquire(m, proc, a[0], a[1] & 0xFF, exclusive=True)
    return result


@routine("ExAcquireResourceSharedLite", frame=0x58, size=0x300)
def ExAcquireResourceSharedLite(m, proc, a):
    result = yield from _acquire(m, proc, a[0], a[1] & 0xFF, exclusive=False)
    return result


@routine("ExReleaseResourceLite", frame=0x58, size=0x300)
def ExReleaseResourceLite(m, proc, a):
    from machine.ke.bugcheck import crash

    resource = a[0]
    r = Struct(m.kspace, "_ERESOURCE", resource)
    thread = proc.current.ethread
    mine = [entry for entry, owner in _owners(m, resource) if owner == thread]
    if not mine:
        crash(m, proc, RESOURCE_NOT_OWNED, (resource, thread, r.get("OwnerTable"), 0))
    e = Struct(m.kspace, "_OWNER_ENTRY", mine[0])
    e.set("OwnerCount", e.get("OwnerCount") - 1)
    r.set("ActiveCount", r.get("ActiveCount") - 1)
    if e.get("OwnerCount") == 0:
        e.set("OwnerThread", 0)
        r.set("ActiveEntries", r.get("ActiveEntries") - 1)
    if not _owners(m, resource):
        r.set("Flag", r.get("Flag") & ~RESOURCE_OWNED_EXCLUSIVE)
        if r.get("NumberOfExclusiveWaiters"):
            yield Call(m.sym("KeSetEvent"), (r.get("ExclusiveWaiters"), 0, 0), ret=0x1E1)
        elif r.get("NumberOfSharedWaiters"):
            yield Call(m.sym("KeReleaseSemaphore"), (r.get("SharedWaiters"), 0,
                                                     r.get("NumberOfSharedWaiters"), 0),
                       ret=0x20F)
    return 0


@routine("ExDeleteResourceLite", frame=0x38, size=0x100)
def ExDeleteResourceLite(m, proc, a):
    r = Struct(m.kspace, "_ERESOURCE", a[0])
    remove_entry_list(m.kspace, r.addr("SystemResourcesList"))
    return 0
