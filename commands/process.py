"""Processes and threads: !process and !thread, read from EPROCESS/ETHREAD in memory."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from commands import fmt
from commands.errors import KdError, KdSyntaxError
from commands.registry import Result, command
from commands.stack import call_site, frame_data
from commands.stackwalk import walk
from commands.target import MemoryAccessError

STATES = {0: "INITIALIZED", 1: "READY", 2: "RUNNING", 3: "STANDBY", 4: "TERMINATED",
          5: "WAIT", 6: "TRANSITION", 7: "DEFERREDREADY"}
TERMINATED = 4
OBJECT_TYPES = {0: "NotificationEvent", 1: "SynchronizationEvent", 2: "Mutant",
                3: "ProcessObject", 4: "QueueObject", 5: "Semaphore", 6: "ThreadObject",
                7: "Gate", 8: "NotificationTimer", 9: "SynchronizationTimer"}
HANDLE_ENTRY = 0x10
TICK_100NS = 156250  # fallback when nt!KeMaximumIncrement cannot be read
STACK_HEADER = ("Child-SP          RetAddr               : Args to Child"
                "                                                           : Call Site")
STACK_HEADER_NO_ARGS = "Child-SP          RetAddr               Call Site"
DETAIL_LINE, DETAIL_WAITS, DETAIL_FULL = "line", "waits", "full"
MIB = 1024 * 1024


@dataclass
class ProcessDetails:
    """What flag 1 adds to a process: its address space, token, times and quotas (times in
    milliseconds, memory sizes in bytes, page counts in pages)."""

    vad_root: int
    vads: int
    clone: int
    private_pages: int
    modified_pages: int
    locked_pages: int
    device_map: int
    token: int
    user_time_ms: int
    kernel_time_ms: int
    quota_paged_pool: int
    quota_nonpaged_pool: int
    virtual_size: int
    peak_virtual_size: int
    base_priority: int
    commit_charge: int


@dataclass
class ProcessInfo:
    address: int
    session_id: int | None  # None: the process has no session (kd's "none")
    cid: int
    peb: int
    parent_cid: int
    dirbase: int
    object_table: int
    handle_count: int | None  # None: the handle table could not be read
    image: str
    details: ProcessDetails | None = None  # None unless flag 1 asked for them
    threads: list[ThreadInfo] = field(default_factory=list)
    active_threads: int = 0


@dataclass
class WaitObject:
    address: int
    type_code: int  # _DISPATCHER_HEADER.Type
    type: str | None  # its name (None: a type kd does not name)
    owner_thread: int | None = None  # a mutant's owner
    limit: int | None = None  # a semaphore's limit


@dataclass
class IrpEntry:
    address: int
    type: int
    size: int
    flags: int
    mdl: int


@dataclass
class ThreadInfo:
    address: int
    pid: int
    tid: int
    teb: int
    win32thread: int
    state: str  # STATES' name, or "STATE n" for a value kd does not name
    state_code: int
    wait_reason: str | None  # these three only while the thread waits
    wait_mode: str | None
    alertable: bool | None
    processor: int | None  # the processor a ready or running thread is on
    wait_objects: list[WaitObject]
    irps: list[IrpEntry]
    device_map: int
    process: int
    process_image: str
    wait_tick: int
    ticks: int  # clock ticks since the thread's last state change
    elapsed_ms: int  # the same in milliseconds, at nt!KeMaximumIncrement per tick
    context_switches: int
    ideal_processor: int
    user_time_ms: int
    kernel_time_ms: int
    start_address: int
    start_symbol: str | None
    stack_init: int
    stack_current: int
    stack_base: int
    stack_limit: int
    priority: int
    base_priority: int
    io_priority: int
    page_priority: int
    attached: int | None = None  # the process whose address space the thread is attached to
    attached_image: str | None = None
    impersonating: bool = False
    stack: list[dict] | None = None  # None: not walked (not asked for, exited, not resident)
    kernel_stack_resident: bool | None = None  # None: not looked at


def ms_of(ticks: int, increment: int) -> int:
    """Clock ticks in milliseconds, at `increment` 100-ns units per tick."""
    return ticks * increment // 10_000


def duration_text(ms_total: int, days_field: bool = False) -> str:
    ms = ms_total % 1000
    s = ms_total // 1000
    h, m, sec = s // 3600, s // 60 % 60, s % 60
    if days_field:
        return f"{h // 24}:{h % 24:02}:{m:02}:{sec:02}.{ms:03}"
    return f"{h:02}:{m:02}:{sec:02}.{ms:03}"


def state_text(th: ThreadInfo) -> str:
    """kd's state column: `WAIT: (reason) mode alertability`, `RUNNING on processor n`."""
    if th.wait_reason is not None:
        alert = "Alertable" if th.alertable else "Non-Alertable"
        return f"{th.state}: ({th.wait_reason}) {th.wait_mode} {alert}"
    if th.processor is not None:
        return f"{th.state} on processor {th.processor}"
    return th.state


def wait_object_text(w: WaitObject) -> str:
    if w.owner_thread is not None:
        return f"Mutant - owning thread {w.owner_thread:016x}"
    if w.limit is not None:
        return f"Semaphore Limit 0x{w.limit:x}"
    return w.type if w.type is not None else f"Object type {w.type_code}"


class Kernel:
    """Reads processes and threads for one session."""

    def __init__(self, s) -> None:
        self.s = s
        self.r = s.reader
        try:
            self.increment = self.r.u64(s.nt("KeMaximumIncrement")) & 0xFFFFFFFF
        except (KdError, MemoryAccessError):
            self.increment = TICK_100NS

    def process_list(self) -> list[int]:
        off = self.r.offset("_EPROCESS", "ActiveProcessLinks")
        return [e - off for e in self.r.list_entries(self.s.nt("PsActiveProcessHead"))]

    def image(self, ep: int) -> str:
        """The image name: the last part of the full path the process was created from
        when it is readable, else the 15-byte ImageFileName."""
        try:
            info = self.r.field("_EPROCESS", ep, "SeAuditProcessCreationInfo.ImageFileName")
            if info:
                path = self.r.unicode_string(info)  # OBJECT_NAME_INFORMATION.Name
                if path:
                    return path.rsplit("\\", 1)[-1]
        except MemoryAccessError:
            pass
        return self.r.ascii_array(self.r.field_addr("_EPROCESS", ep, "ImageFileName"), 15)

    def handle_count(self, table: int) -> int | None:
        if not table:
            return None
        try:
            code = self.r.field("_HANDLE_TABLE", table, "TableCode")
            if code & 3:
                return None  # multi-level tables come with the complete machine
            page = self.r.read(code & ~7, 0x1000)
        except MemoryAccessError:
            return None
        count = 0
        for i in range(1, 0x1000 // HANDLE_ENTRY):
            low = int.from_bytes(page[i * HANDLE_ENTRY:i * HANDLE_ENTRY + 8], "little")
            if low >> 20:
                count += 1
        return count

    def process(self, ep: int, flags: int) -> ProcessInfo:
        r = self.r
        t = "_EPROCESS"
        peb = r.field(t, ep, "Peb")
        dirbase = r.field(t, ep, "Pcb.DirectoryTableBase")
        session: int | None = None
        if r.field(t, ep, "Session") and peb:
            try:
                session = int.from_bytes(self.s.target.read_virtual(
                    peb + r.offset("_PEB", "SessionId"), 4, dirbase), "little")
            except MemoryAccessError:
                session = None
        table = r.field(t, ep, "ObjectTable")
        # An exited process has no handle table any more: kd counts zero handles.
        count = self.handle_count(table) if table else 0
        info = ProcessInfo(ep, session, r.field(t, ep, "UniqueProcessId"), peb,
                           r.field(t, ep, "InheritedFromUniqueProcessId"), dirbase, table,
                           count, self.image(ep), active_threads=r.field(t, ep, "ActiveThreads"))
        if flags & 1:
            info.details = self.process_details(ep)
        if flags & 6:
            off = r.offset("_ETHREAD", "ThreadListEntry")
            for entry in r.list_entries(r.field_addr(t, ep, "ThreadListHead")):
                info.threads.append(self.thread(entry - off, with_stack=bool(flags & 4)))
        return info

    def tree_size(self, root: int, limit: int = 100_000) -> int:
        """Nodes in an `_RTL_BALANCED_NODE` tree (an `_RTL_AVL_TREE`)."""
        count, todo = 0, [root] if root else []
        while todo and count < limit:
            node = todo.pop()
            count += 1
            for side in ("Left", "Right"):
                child = self.r.field("_RTL_BALANCED_NODE", node, side)
                if child:
                    todo.append(child)
        return count

    def process_details(self, ep: int) -> ProcessDetails:
        r = self.r
        t = "_EPROCESS"
        return ProcessDetails(
            vad_root=r.field(t, ep, "VadRoot.Root"),
            vads=r.field(t, ep, "VadCount"),
            clone=self.tree_size(r.field(t, ep, "CloneRoot.Root")),
            private_pages=r.field(t, ep, "NumberOfPrivatePages"),
            modified_pages=r.field(t, ep, "ModifiedPageCount"),
            locked_pages=r.field(t, ep, "NumberOfLockedPages"),
            device_map=r.field(t, ep, "DeviceMap"),
            token=r.field(t, ep, "Token.Value") & ~0xF,
            user_time_ms=ms_of(r.field(t, ep, "Pcb.UserTime"), self.increment),
            kernel_time_ms=ms_of(r.field(t, ep, "Pcb.KernelTime"), self.increment),
            quota_paged_pool=r.field(t, ep, "ProcessQuotaUsage[1]"),
            quota_nonpaged_pool=r.field(t, ep, "ProcessQuotaUsage[0]"),
            virtual_size=r.field(t, ep, "VirtualSize"),
            peak_virtual_size=r.field(t, ep, "PeakVirtualSize"),
            base_priority=r.field(t, ep, "Pcb.BasePriority"),
            commit_charge=r.field(t, ep, "CommitCharge"),
        )

    def wait_object(self, obj: int) -> WaitObject:
        r = self.r
        otype = r.field("_DISPATCHER_HEADER", obj, "Type")
        w = WaitObject(obj, otype, OBJECT_TYPES.get(otype))
        if otype == 2:
            w.owner_thread = r.field("_KMUTANT", obj, "OwnerThread")
        elif otype == 5:  # kd shows a semaphore's limit
            w.limit = r.field("_KSEMAPHORE", obj, "Limit") & 0xFFFFFFFF
        return w

    def thread(self, et: int, with_stack: bool = True) -> ThreadInfo:
        r = self.r
        t = "_ETHREAD"
        state = r.field(t, et, "Tcb.State")
        ep = r.field(t, et, "Tcb.Process")
        if state == TERMINATED:
            with_stack = False  # kd shows an exited thread in one line
        reason_name = mode = alertable = processor = None
        waits: list[WaitObject] = []
        if state == 5:
            reason = r.field(t, et, "Tcb.WaitReason")
            reason_name = (self.s.target.types.get("_KWAIT_REASON").enum_name(reason)
                           or str(reason))
            mode = "UserMode" if r.field(t, et, "Tcb.WaitMode") else "KernelMode"
            alertable = bool(r.field(t, et, "Tcb.Alertable"))
            wb = r.field(t, et, "Tcb.WaitBlockList")
            if wb:
                waits.append(self.wait_object(r.field("_KWAIT_BLOCK", wb, "Object")))
        elif state in (1, 2):
            processor = r.field(t, et, "Tcb.NextProcessor")
        irps = []
        off = r.offset("_IRP", "ThreadListEntry")
        for e in r.list_entries(r.field_addr(t, et, "IrpList"), limit=64):
            irp = e - off
            irps.append(IrpEntry(irp, r.field("_IRP", irp, "Type"), r.field("_IRP", irp, "Size"),
                                 r.field("_IRP", irp, "Flags"),
                                 r.field("_IRP", irp, "MdlAddress")))
        now = r.u64(self.s.nt("KeTickCount"))
        wait_tick = r.field(t, et, "Tcb.WaitTime")
        ticks = (now - wait_tick) & 0xFFFFFFFF
        start = r.field(t, et, "Win32StartAddress")
        info = ThreadInfo(
            et, r.field(t, et, "Cid.UniqueProcess"), r.field(t, et, "Cid.UniqueThread"),
            r.field(t, et, "Tcb.Teb"), r.field(t, et, "Tcb.Win32Thread"),
            STATES.get(state, f"STATE {state}"), state, reason_name, mode, alertable,
            processor, waits, irps, r.field("_EPROCESS", ep, "DeviceMap"), ep, self.image(ep),
            wait_tick, ticks, ms_of(ticks, self.increment),
            r.field(t, et, "Tcb.ContextSwitches"),
            r.field(t, et, "Tcb.IdealProcessor"),
            ms_of(r.field(t, et, "Tcb.UserTime"), self.increment),
            ms_of(r.field(t, et, "Tcb.KernelTime"), self.increment),
            start, self.s.symbols.name_for(start),
            r.field(t, et, "Tcb.InitialStack"), r.field(t, et, "Tcb.KernelStack"),
            r.field(t, et, "Tcb.StackBase"), r.field(t, et, "Tcb.StackLimit"),
            r.field(t, et, "Tcb.Priority"), r.field(t, et, "Tcb.BasePriority"),
            r.field(t, et, "ThreadIoPriority"), r.field(t, et, "ThreadPagePriority"))
        apc_process = r.field(t, et, "Tcb.ApcState.Process")
        if apc_process and apc_process != ep:
            info.attached, info.attached_image = apc_process, self.image(apc_process)
        info.impersonating = bool(r.field(t, et, "ActiveImpersonationInfo"))
        if with_stack:
            self.fill_stack(info, state)
        return info

    def thread_context(self, et: int, state: int) -> dict[str, int] | None:
        """Where a thread's stack starts: the processor's context when it is running,
        else the switch frame its KernelStack points at."""
        r = self.r
        if state == 2:
            cpu = r.field("_ETHREAD", et, "Tcb.NextProcessor")
            if cpu < self.s.target.processor_count and self.s.current_thread(cpu) == et:
                return self.s.target.registers(cpu)
        ks = r.field("_ETHREAD", et, "Tcb.KernelStack")
        rip = r.try_u64(ks + 0x38)
        if rip is None:
            return None
        return {"rip": rip, "rsp": ks + 0x40}

    def fill_stack(self, info: ThreadInfo, state: int) -> None:
        ctx = self.thread_context(info.address, state)
        info.kernel_stack_resident = ctx is not None
        if ctx is None:
            return
        info.stack = [frame_data(f, call_site(self.s, f.ip))
                      for f in walk(self.s.target, self.s.symbols, ctx["rip"], ctx["rsp"])]


def render_process(p: ProcessInfo, indent: int = 0) -> list[str]:
    pad = " " * indent
    peb = f"{p.peb:x}" if p.peb else "00000000"
    hc = f"{p.handle_count}." if p.handle_count is not None else "<Data Not Accessible>"
    table = fmt.hex16(p.object_table) if p.object_table else "00000000"
    session = "none" if p.session_id is None else str(p.session_id)
    lines = [f"{pad}PROCESS {fmt.hex16(p.address)}",
             f"{pad}    SessionId: {session}  Cid: {p.cid:04x}    Peb: {peb}  "
             f"ParentCid: {p.parent_cid:04x}",
             f"{pad}    DirBase: {p.dirbase:08x}  ObjectTable: {table}  "
             f"HandleCount: {hc}",
             f"{pad}    Image: {p.image}"]
    d = p.details
    if d is not None:
        lines.append(f"    VadRoot {fmt.hex16(d.vad_root)} Vads {d.vads} Clone {d.clone} "
                     f"Private {d.private_pages}. Modified {d.modified_pages}. "
                     f"Locked {d.locked_pages}.")
        lines.append(f"    DeviceMap {fmt.hex16(d.device_map)}")
        rows = (("Token", fmt.hex16(d.token)), ("UserTime", duration_text(d.user_time_ms)),
                ("KernelTime", duration_text(d.kernel_time_ms)),
                ("QuotaPoolUsage[PagedPool]", d.quota_paged_pool),
                ("QuotaPoolUsage[NonPagedPool]", d.quota_nonpaged_pool),
                ("VirtualSize", f"{d.virtual_size // MIB} Mb"),
                ("PeakVirtualSize", f"{d.peak_virtual_size // MIB} Mb"),
                ("BasePriority", d.base_priority), ("CommitCharge", d.commit_charge))
        for label, value in rows:
            lines.append(f"    {label:<34}{value}")
    return lines


def render_thread(th: ThreadInfo, indent: int = 0, detail: str = DETAIL_FULL,
                  args: bool = True) -> list[str]:
    """kd's thread block: `detail` is DETAIL_LINE (the THREAD line), DETAIL_WAITS (and
    its wait objects) or DETAIL_FULL (everything and the stack); `args` False shows the
    stack without the argument columns (flag 0x8)."""
    pad = " " * indent
    if th.state == STATES[TERMINATED]:
        return [f"{pad}THREAD {fmt.hex16(th.address)}  Cid {th.pid:04x}.{th.tid:04x}  "
                f"{th.state}"]
    out = [f"{pad}THREAD {fmt.hex16(th.address)}  Cid {th.pid:04x}.{th.tid:04x}  "
           f"Teb: {fmt.hex16(th.teb)} Win32Thread: {fmt.hex16(th.win32thread)} "
           f"{state_text(th)}"]
    if detail == DETAIL_LINE:
        return out
    for w in th.wait_objects:
        out.append(f"{pad}    {fmt.hex16(w.address)}  {wait_object_text(w)}")
    if detail == DETAIL_WAITS:
        return out
    if th.irps:
        out.append(f"{pad}IRP List:")
        for irp in th.irps:
            out.append(f"{pad}    {fmt.hex16(irp.address)}: ({irp.type:04x},{irp.size:04x}) "
                       f"Flags: {irp.flags:08x}  Mdl: {irp.mdl:08x}")
    ticks = f"Ticks: {th.ticks}"
    if th.ticks:
        ticks += f" ({duration_text(th.elapsed_ms, days_field=True)})"
    start = (f"{th.start_symbol} (0x{th.start_address:016x})" if th.start_symbol
             else f"0x{th.start_address:016x}")
    attached = (f"{fmt.hex16(th.attached)}       Image:         {th.attached_image}"
                if th.attached else f"{'N/A':<15}Image:         N/A")
    out += [f"{pad}{'Impersonating' if th.impersonating else 'Not impersonating'}",
            f"{pad}{'DeviceMap':<26}{fmt.hex16(th.device_map)}",
            f"{pad}{'Owning Process':<26}{fmt.hex16(th.process)}       Image:         "
            f"{th.process_image}",
            f"{pad}{'Attached Process':<26}{attached}",
            f"{pad}{'Wait Start TickCount':<26}{th.wait_tick:<15}{ticks}",
            f"{pad}{'Context Switch Count':<26}{th.context_switches:<15}IdealProcessor: "
            f"{th.ideal_processor}             ",
            f"{pad}{'UserTime':<26}{duration_text(th.user_time_ms)}",
            f"{pad}{'KernelTime':<26}{duration_text(th.kernel_time_ms)}",
            f"{pad}Win32 Start Address {start}",
            f"{pad}Stack Init {th.stack_init:x} Current {th.stack_current:x}",
            f"{pad}Base {th.stack_base:x} Limit {th.stack_limit:x} Call 0000000000000000",
            f"{pad}Priority {th.priority}  BasePriority {th.base_priority}  IoPriority "
            f"{th.io_priority}  PagePriority {th.page_priority}"]
    if th.kernel_stack_resident is False:
        out.append(f"{pad}Kernel stack not resident.")
    if th.stack:
        out.append(f"{pad}{STACK_HEADER if args else STACK_HEADER_NO_ARGS}")
        for f in th.stack:
            row = f"{pad}{fmt.addr(f['child_sp'])} {fmt.addr(f['ret_addr'])}     "
            if args:
                row += ": " + " ".join(fmt.addr(a) for a in f["args"]) + " : "
            row += f["call_site"]
            if f["trap_frame"] is not None:
                row += f" (TrapFrame @ {fmt.addr(f['trap_frame'])})"
            out.append(row)
    return out


def _find_process(k: Kernel, value: int) -> int:
    for ep in k.process_list():
        if ep == value or k.r.field("_EPROCESS", ep, "UniqueProcessId") == value:
            return ep
    if value >= 0xFFFF800000000000:
        return value  # an EPROCESS address not on the active list (Idle, exited)
    raise KdError(f"Cannot find process {value:x}")


def thread_detail(flags: int) -> str:
    """What a thread block shows for !thread/!process flags: 0x2 the wait states, 0x4
    with 0x2 everything and the stack (0x4 alone adds nothing)."""
    if flags & 6 == 6:
        return DETAIL_FULL
    return DETAIL_WAITS if flags & 2 else DETAIL_LINE


@contextmanager
def process_context(s, process: int):
    """Reads go through `process`'s page tables for the duration (flag 0x10 of !thread
    and !process), then back to the implicit process's."""
    setter = getattr(s.target, "set_implicit_dtb", None)
    if setter is None:
        yield
        return
    setter(s.reader.field("_EPROCESS", process, "Pcb.DirectoryTableBase"))
    try:
        yield
    finally:
        s.current_process()  # lets a stale implicit process expire first
        keep = s.implicit_process
        setter(s.reader.field("_EPROCESS", keep, "Pcb.DirectoryTableBase")
               if keep is not None else None)


CURRENT = (1 << 64) - 1  # -1: the current process


@command("!process", syntax="!process [0 | address | pid] [flags] [image]",
         help="Show processes: `0 0` lists all, an address or pid shows one; flags 1 "
              "details, 2 threads (with their waits), 4 with 2 thread details and stacks, "
              "0x10 with 1 each process's own address space for its threads' stacks.")
def process_cmd(s, args: str) -> Result:
    k = Kernel(s)
    words = args.split()
    image = None
    if not words:
        targets = [s.current_process()]
        flags = 3
    else:
        value, rest = s.take(args)
        # kd's default detail: 3 for all processes or the current one (0, -1), 0xF for
        # one process named by address or id.
        flags = 3 if value in (0, CURRENT) else 0xF
        if rest.strip():
            flags, rest = s.take(rest)
        image = rest.strip() or None
        if value == 0:
            targets = k.process_list()
        elif value == CURRENT:
            targets = [s.current_process()]
        else:
            targets = [_find_process(k, value)]
    infos: list[ProcessInfo] = []
    lines: list[str] = []
    if words and s.evaluate(words[0]) == 0 and image is None:
        lines.append("**** NT ACTIVE PROCESS DUMP ****")
    for ep in targets:
        if image is not None and k.image(ep).lower() != image.lower():
            continue
        if flags & 0x11 == 0x11:
            with process_context(s, ep):
                p = k.process(ep, flags)
        else:
            p = k.process(ep, flags)
        infos.append(p)
        lines += render_process(p)
        detail = thread_detail(flags)
        if flags & 6 and not p.active_threads:
            lines.append("No active threads")  # it has exited; kd says so before them
            for th in p.threads:
                lines += render_thread(th, 8, detail)
                lines.append("")
            if not p.threads:
                lines.append("")
        elif p.threads:
            lines.append("")
            for th in p.threads:
                lines += render_thread(th, 8, detail)
                lines.append("")
        else:
            lines.append("")
    return Result(lines, {"flags": flags, "image_filter": image,
                          "processes": [asdict(p) for p in infos]})


def _thread_by_id(k: Kernel, tid: int) -> int:
    off = k.r.offset("_ETHREAD", "ThreadListEntry")
    for ep in k.process_list():
        for entry in k.r.list_entries(k.r.field_addr("_EPROCESS", ep, "ThreadListHead")):
            if k.r.field("_ETHREAD", entry - off, "Cid.UniqueThread") == tid:
                return entry - off
    raise KdError(f"Could not find thread with id {tid:x}")


@command("!thread", syntax="!thread [-p] [-t] [address | -1 [flags]]",
         help="Show a thread (default or -1: the implicit thread): state, waits, IRPs, "
              "stack.  Flags (default 6): 0x2 waits, 0x4 with 0x2 details and stack, 0x8 "
              "stack without arguments, 0x10 its process's address space; -p its process "
              "first, -t the address is a thread id.")
def thread_cmd(s, args: str) -> Result:
    k = Kernel(s)
    text = args.strip()
    options: set[str] = set()
    while text[:2].lower() in ("-p", "-t") and (len(text) == 2 or text[2] in " \t"):
        options.add(text[1].lower())
        text = text[2:].lstrip()
    flags = 6
    if text:
        value, rest = s.take(text)
        if rest.strip():
            flags, rest = s.take(rest)
            if rest.strip():
                raise KdSyntaxError(rest.strip())
        if value & fmt.MASK64 == fmt.MASK64:
            et = s.current_thread()
        elif "t" in options:
            et = _thread_by_id(k, value)
        else:
            et = value
    else:
        et = s.current_thread()
    lines: list[str] = []
    owner = k.r.field("_ETHREAD", et, "Tcb.Process")
    process = None
    if "p" in options:
        process = k.process(owner, 0)
        lines += render_process(process)
    detail = thread_detail(flags)
    if flags & 0x10:
        with process_context(s, owner):
            th = k.thread(et, with_stack=detail == DETAIL_FULL)
    else:
        th = k.thread(et, with_stack=detail == DETAIL_FULL)
    lines += render_thread(th, 0, detail, args=not flags & 8)
    return Result(lines, {"flags": flags, "thread": asdict(th),
                          "process": asdict(process) if process is not None else None})
