"""Finding processes and threads for drivers: the current ones, by client ID, and any
object by handle (ObReferenceObjectByHandle).

Windows finds a client ID through PspCidTable; the machine keeps no such table, so a
lookup walks what a debugger walks: nt!PsActiveProcessHead and each process's
ThreadListHead.  The result is the same: a process (or thread) is found from its creation
until its object is deleted, so an exited process that someone still references (a
zombie) is found too, and the lookup takes one more reference on it.

Declared after every other nt routine, so that the earlier ones keep their addresses.
"""

from __future__ import annotations

from machine.ke.native import routine
from machine.ob.object import (
    HANDLE_TABLE_ENTRY_SIZE,
    lookup_handle,
    reference,
    type_of,
)
from machine.rtl.lists import iterate_list
from machine.types.view import Struct

STATUS_SUCCESS = 0
STATUS_INVALID_HANDLE = 0xC0000008
STATUS_INVALID_PARAMETER = 0xC000000D
STATUS_ACCESS_DENIED = 0xC0000022
STATUS_OBJECT_TYPE_MISMATCH = 0xC0000024
KERNEL_MODE, USER_MODE = 0, 1
NT_CURRENT_PROCESS = 0xFFFFFFFFFFFFFFFF  # NtCurrentProcess(): (HANDLE)-1
NT_CURRENT_THREAD = 0xFFFFFFFFFFFFFFFE  # NtCurrentThread(): (HANDLE)-2
KERNEL_HANDLE_MASK = 0xFFFFFFFF80000000  # a kernel handle (OBJ_KERNEL_HANDLE) has these set

def active_processes(m) -> list[int]:
    """The EPROCESSes on nt!PsActiveProcessHead, in list order."""
    off = Struct(m.kspace, "_EPROCESS", 0).offset("ActiveProcessLinks")
    return [entry - off for entry in iterate_list(m.kspace, m.sym("nt!PsActiveProcessHead"))]


def process_by_id(m, pid: int) -> int | None:
    """The listed process whose UniqueProcessId is pid (the Idle process has none)."""
    if pid == 0:
        return None
    return next((ep for ep in active_processes(m)
                 if Struct(m.kspace, "_EPROCESS", ep).get("UniqueProcessId") == pid), None)


def thread_by_id(m, tid: int) -> int | None:
    """The thread whose Cid.UniqueThread is tid, on its listed process's ThreadListHead."""
    if tid == 0:
        return None
    off = Struct(m.kspace, "_ETHREAD", 0).offset("ThreadListEntry")
    for ep in active_processes(m):
        head = Struct(m.kspace, "_EPROCESS", ep).addr("ThreadListHead")
        for entry in iterate_list(m.kspace, head):
            if Struct(m.kspace, "_ETHREAD", entry - off).get("Cid.UniqueThread") == tid:
                return entry - off
    return None


def current_thread(m, proc) -> int:
    """KPRCB.CurrentThread of the calling processor."""
    return Struct(m.kspace, "_KPRCB", proc.prcb).get("CurrentThread")


def current_process(m, proc) -> int:
    """The process whose address space the current thread is in (ApcState.Process: the
    attached process while attached, as IoGetCurrentProcess returns)."""
    return Struct(m.kspace, "_KTHREAD", current_thread(m, proc)).get("ApcState.Process")


def _store_referenced(m, proc, out: int, body: int) -> int:
    reference(m, body)
    proc.cpu.mem.write_u64(out, body)
    return STATUS_SUCCESS


@routine("PsLookupProcessByProcessId", frame=0x38, size=0x100)
def PsLookupProcessByProcessId(m, proc, a):
    """(ProcessId, *Process): the process, referenced; the caller must dereference it."""
    found = process_by_id(m, a[0])
    if found is None:
        return STATUS_INVALID_PARAMETER
    return _store_referenced(m, proc, a[1], found)


@routine("PsLookupThreadByThreadId", frame=0x38, size=0x100)
def PsLookupThreadByThreadId(m, proc, a):
    """(ThreadId, *Thread): the thread, referenced; the caller must dereference it."""
    found = thread_by_id(m, a[0])
    if found is None:
        return STATUS_INVALID_PARAMETER
    return _store_referenced(m, proc, a[1], found)


# IoGetCurrentProcess and PsGetCurrentProcess are one routine in Windows (wdm.h even
# defines the one as the other); here they are two entry points with the same body, so a
# driver may call either by name.
@routine("IoGetCurrentProcess", frame=0x28, size=0x20)
def IoGetCurrentProcess(m, proc, a):
    """() -> the current process, not referenced."""
    return current_process(m, proc)


@routine("PsGetCurrentProcess", frame=0x28, size=0x20)
def PsGetCurrentProcess(m, proc, a):
    """() -> the current process, not referenced."""
    return current_process(m, proc)


@routine("PsGetCurrentThread", frame=0x28, size=0x20)
def PsGetCurrentThread(m, proc, a):
    """() -> the current thread, not referenced."""
    return current_thread(m, proc)


@routine("PsGetProcessId", frame=0x28, size=0x20)
def PsGetProcessId(m, proc, a):
    """(Process) -> its UniqueProcessId."""
    return Struct(m.kspace, "_EPROCESS", a[0]).get("UniqueProcessId")


@routine("PsGetCurrentProcessId", frame=0x28, size=0x20)
def PsGetCurrentProcessId(m, proc, a):
    """() -> the current thread's Cid.UniqueProcess."""
    return Struct(m.kspace, "_ETHREAD", current_thread(m, proc)).get("Cid.UniqueProcess")


@routine("PsGetCurrentThreadId", frame=0x28, size=0x20)
def PsGetCurrentThreadId(m, proc, a):
    """() -> the current thread's Cid.UniqueThread."""
    return Struct(m.kspace, "_ETHREAD", current_thread(m, proc)).get("Cid.UniqueThread")


def handle_entry(m, proc, handle: int, mode: int) -> tuple[int, int] | int:
    """(object, granted access) for a handle of the current process (a kernel handle: of
    the System process, from kernel mode only), or the status refusing it."""
    if handle == NT_CURRENT_PROCESS:
        return current_process(m, proc), 0x1FFFFF  # PROCESS_ALL_ACCESS
    if handle == NT_CURRENT_THREAD:
        return current_thread(m, proc), 0x1FFFFF  # THREAD_ALL_ACCESS
    owner = current_process(m, proc)
    if handle & KERNEL_HANDLE_MASK == KERNEL_HANDLE_MASK:
        if mode != KERNEL_MODE:
            return STATUS_INVALID_HANDLE
        owner = m.kspace.read_u64(m.sym("nt!PsInitialSystemProcess"))
        handle &= ~KERNEL_HANDLE_MASK & 0xFFFFFFFFFFFFFFFF
    table = Struct(m.kspace, "_EPROCESS", owner).get("ObjectTable")
    body = lookup_handle(m, table, handle) if table else None
    if body is None:
        return STATUS_INVALID_HANDLE
    entry = (Struct(m.kspace, "_HANDLE_TABLE", table).get("TableCode") & ~7) \
        + (handle // 4) * HANDLE_TABLE_ENTRY_SIZE
    granted = Struct(m.kspace, "_HANDLE_TABLE_ENTRY", entry).get("GrantedAccessBits")
    return body, granted


@routine("ObReferenceObjectByHandle", frame=0x48, size=0x180)
def ObReferenceObjectByHandle(m, proc, a):
    """(Handle, DesiredAccess, ObjectType, AccessMode, *Object, *HandleInformation): the
    handle's object, referenced.  ObjectType (an OBJECT_TYPE, or NULL for any) must be
    the object's; from user mode the handle must grant DesiredAccess."""
    found = handle_entry(m, proc, a[0], a[3] & 0xFF)
    if isinstance(found, int):
        return found
    body, granted = found
    kind = a[2]
    if kind and m.object_types.get(type_of(m, body)) != kind:
        return STATUS_OBJECT_TYPE_MISMATCH
    if a[3] & 0xFF == USER_MODE and a[1] & 0xFFFFFFFF & ~granted:
        return STATUS_ACCESS_DENIED
    if a[5]:  # OBJECT_HANDLE_INFORMATION: HandleAttributes, GrantedAccess
        proc.cpu.mem.write(a[5], bytes(4) + granted.to_bytes(4, "little"))
    return _store_referenced(m, proc, a[4], body)

