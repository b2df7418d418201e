"""Creating processes and threads: EPROCESS/ETHREAD objects in pool, their lists, address
spaces, kernel stacks and initial contexts."""

from __future__ import annotations

from machine.ke.apc import init_apc_lists
from machine.ke.threads import ProcessRec, ThreadRec
from machine.ke.timer import initialize_timer
from machine.mm.paging import AddressSpace
from machine.ob.object import create_handle_table, create_object, reference
from machine.ps.userdata import write_process_data, write_teb
from machine.ps.usermode import user_stack_top
from machine.rtl.lists import initialize_list_head, insert_tail_list
from machine.types.view import Struct

KERNEL_STACK_SIZE = 0x6000
XSAVE_AREA = 0x9B0  # InitialStack sits this far below StackBase (the thread's XSAVE area)
PROCESS_OBJECT, THREAD_OBJECT = 3, 6
EVENT_SYNCHRONIZATION = 1
TIMER_NOTIFICATION = 8
STATUS_PENDING = 0x103  # a running process's or thread's exit status (STILL_ACTIVE)
USER_STACK_TOP = 0x000000F000000000


def image_base(pid: int) -> int:
    """Where a process's executable is mapped (one 64 KiB slot per pid)."""
    return 0x00007FF600000000 + (pid >> 2) * 0x10000


def create_process(m, image: str, pid: int, parent_pid: int, session: int | None,
                   base_priority: int = 8, kernel_only: bool = False) -> ProcessRec:
    size = m.catalog.get("_EPROCESS").size
    ep = create_object(m, "Process", size, "Proc")
    e = Struct(m.kspace, "_EPROCESS", ep)
    if kernel_only:
        space = m.kspace
    else:
        space = AddressSpace(m.phys)
        space.share_kernel_half(m.kspace)
    e.set("Pcb.Header.Type", PROCESS_OBJECT)
    e.set("Pcb.Header.Size", size // 8 & 0xFF)
    e.set("Pcb.DirectoryTableBase", space.cr3)
    e.set("Pcb.UserDirectoryTableBase", space.cr3 | 1 if not kernel_only else 0)
    initialize_list_head(m.kspace, e.addr("Pcb.ThreadListHead"))
    initialize_list_head(m.kspace, e.addr("ThreadListHead"))
    initialize_list_head(m.kspace, e.addr("Pcb.Header.WaitListHead"))
    e.set("Pcb.BasePriority", base_priority)
    e.set("UniqueProcessId", pid)
    e.set("InheritedFromUniqueProcessId", parent_pid)
    e.set_bytes("ImageFileName", image.encode("ascii")[:14].ljust(15, b"\0"))
    e.set("CreateTime", m.system_time())
    e.set("ExitStatus", STATUS_PENDING)
    rec = ProcessRec(ep, pid, image, space)
    if pid:
        e.set("ObjectTable", create_handle_table(m, pid))
    if session is not None:
        # The session space object itself is not modelled: the process records its session
        # through its PEB, where a debugger can read it.
        e.set("Session", m.session_space)
    if not kernel_only:
        # The full image path (an OBJECT_NAME_INFORMATION: one UNICODE_STRING), which a
        # debugger prefers to the 15-byte ImageFileName.
        folder = "Windows" if image.lower() == "explorer.exe" else "Windows\\System32"
        name_info = m.pool.allocate(1, 0x10, "SeOn")
        from machine.ldr.loader import write_unicode_string

        image_path = f"\\Device\\HarddiskVolume3\\{folder}\\{image}"
        write_unicode_string(m, name_info, image_path, "SeOn")
        e.set("SeAuditProcessCreationInfo.ImageFileName", name_info)
        e.set("DeviceMap", m.device_map(session))
        rec.peb = 0x000000D000000000 + (pid >> 2) * 0x1000000
        space.map_new(rec.peb, 0x1000, user=True)
        peb = Struct(space, "_PEB", rec.peb)
        peb.set("SessionId", session or 0)
        peb.set("ImageBaseAddress", image_base(pid))
        write_process_data(m, space, rec.peb, image, image_path, image_base(pid))
        e.set("Peb", rec.peb)
        e.set("SectionBaseAddress", image_base(pid))
    if m.processes:
        insert_tail_list(m.kspace, m.sym("nt!PsActiveProcessHead"), e.addr("ActiveProcessLinks"))
    m.processes.append(rec)
    return rec


def create_thread(m, process: ProcessRec, tid: int, start: str, *, system: bool = False,
                  priority: int = 8, ideal: int = 0, win32_start: int = 0,
                  user_program=None, ready: bool = True, idle: bool = False,
                  routine: int = 0) -> ThreadRec:
    """A thread that first runs at kernel routine `start` (KiStartSystemThread,
    KiStartUserThread, KiIdleLoop); `routine` is a system thread's own start routine,
    which is what ETHREAD.StartAddress names."""
    size = m.catalog.get("_ETHREAD").size
    et = create_object(m, "Thread", size, "Thre")
    t = Struct(m.kspace, "_ETHREAD", et)
    stack_base = m.stacks.take(KERNEL_STACK_SIZE, guard_pages=1) + KERNEL_STACK_SIZE
    m.kspace.map_new(stack_base - KERNEL_STACK_SIZE, KERNEL_STACK_SIZE)
    initial = stack_base - XSAVE_AREA
    t.set("Tcb.Header.Type", THREAD_OBJECT)
    t.set("Tcb.Header.Size", size // 8 & 0xFF)
    initialize_list_head(m.kspace, t.addr("Tcb.Header.WaitListHead"))
    initialize_list_head(m.kspace, t.addr("Tcb.MutantListHead"))
    init_apc_lists(m, et)
    # The thread's own timer, which its delays (and timed waits) wait on.
    initialize_timer(m, m.kspace, t.addr("Tcb.Timer"), TIMER_NOTIFICATION)
    t.set("Tcb.InitialStack", initial)
    t.set("Tcb.StackBase", stack_base)
    t.set("Tcb.StackLimit", stack_base - KERNEL_STACK_SIZE)
    t.set("Tcb.KernelStack", initial)
    t.set("Tcb.Process", process.eprocess)
    t.set("Tcb.ApcState.Process", process.eprocess)
    t.set("Tcb.Priority", priority)
    t.set("Tcb.BasePriority", priority)
    t.set("Tcb.IdealProcessor", ideal)
    t.set("Tcb.UserIdealProcessor", ideal)
    t.set("Tcb.NextProcessor", ideal)
    t.set("Tcb.Affinity.Mask", (1 << len(m.processors)) - 1)
    t.set("Tcb.SystemThread", int(system))
    t.set("Tcb.ApcQueueable", 1)
    t.set("Cid.UniqueProcess", process.pid)
    t.set("Cid.UniqueThread", tid)
    t.set("CreateTime", m.system_time())
    t.set("ExitStatus", STATUS_PENDING)
    t.set("ThreadIoPriority", 2)
    t.set("ThreadPagePriority", 5)
    start_addr = m.sym(start)
    t.set("StartAddress", routine or start_addr)
    t.set("Win32StartAddress", win32_start or routine or start_addr)
    initialize_list_head(m.kspace, t.addr("IrpList"))
    if not system:
        teb = 0x000000E000000000 + tid * 0x2000
        t.set("Tcb.Teb", teb)
        write_teb(m, process.space, teb, process.pid, tid, process.peb, user_stack_top(tid))
    insert_tail_list(m.kspace, Struct(m.kspace, "_EPROCESS", process.eprocess).addr(
        "Pcb.ThreadListHead"), t.addr("Tcb.ThreadListEntry"))
    insert_tail_list(m.kspace, Struct(m.kspace, "_EPROCESS", process.eprocess).addr(
        "ThreadListHead"), t.addr("ThreadListEntry"))
    ep = Struct(m.kspace, "_EPROCESS", process.eprocess)
    ep.set("ActiveThreads", ep.get("ActiveThreads") + 1)
    reference(m, process.eprocess)  # a thread keeps its process's object alive
    rec = ThreadRec(et, tid, process, initial, priority=priority, ideal_processor=ideal,
                    idle=idle)
    # First switch-in starts at the start routine with an empty frame below it: a zero
    # return address where the stack walk ends.
    rsp = initial - 0x190 - 0x30
    m.kspace.write_u64(rsp, 0)
    rec.saved_regs[4] = rsp
    rec.saved_rip = start_addr
    rec.user_program = user_program
    process.threads.append(rec)
    m.threads.append(rec)
    m.thread_index[et] = rec
    if ready:
        m.make_ready(rec)
    return rec


def create_event(m, event_type: int = EVENT_SYNCHRONIZATION, signaled: bool = False) -> int:
    from machine.ke.wait import init_header

    size = m.catalog.get("_KEVENT").size
    body = create_object(m, "Event", size, "Even")
    init_header(m.kspace, body, event_type, size, int(signaled))
    return body
