"""Scenario timeline events: what happens to the machine at a given tick."""

from __future__ import annotations

from collections.abc import Iterator

from machine.po.power import SYSTEM_STATES
from machine.ps.usermode import Syscall
from machine.scenario_schema import BOOL, TEXT, U32, U64, Int, Key


def event_action(ev: dict):
    """What an event does to the machine.  The event was checked against EVENT_KEYS (and
    the scenario's names) when the file was parsed, so here it only picks the action."""
    kind = ev["action"]
    if kind == "trim_paged_pool":
        target = ev.get("page_of")
        if target is None:
            return trim_paged_pool
        return lambda m: trim_page_of(m, target)
    if kind == "start_process":
        return lambda m: start_process(m, ev)
    if kind == "start_device":
        return lambda m: start_scenario_device(m, ev)
    if kind == "unload_driver":
        from machine.io.unload import queue_driver_unload

        return lambda m: queue_driver_unload(m, ev["driver"])
    if kind == "set_system_power":
        from machine.po import power

        timeout = int(ev.get("timeout_ticks", power.DEFAULT_TIMEOUT_TICKS))
        return lambda m: power.queue_system_power_transition(m, ev["state"], timeout)
    raise ValueError(f"unknown event action {kind!r}")  # the schema lets none through


def start_scenario_device(m, ev: dict) -> None:
    from machine.hal.devices import Device, start_device

    start_device(m, Device(ev.get("name", "device"), int(ev["vector"]),
                           int(ev.get("processor", 0)), int(ev.get("period_ticks", 1)),
                           int(ev.get("jitter_ticks", 0)),
                           trigger=ev.get("trigger", "latched"),
                           registers=int(ev.get("registers", 0))))


def trim_paged_pool(m) -> None:
    """MmTrimAllWorkingSets: every resident paged-pool page goes to the page file."""
    from machine.ex.pool import PAGED_POOL
    from machine.mm.paging import PTE_PRESENT

    for page in m.pool.regions[PAGED_POOL].pages:
        if m.kspace.get_pte(page) & PTE_PRESENT:
            m.pool.trim(page)


def trim_page_of(m, pointer_symbol: str) -> None:
    """Trim the paged-pool page that a pointer variable (`myfault!PagedBuffer`) points to:
    the memory manager chose that page to leave the working set."""
    from machine.mm.paging import PTE_PRESENT

    page = m.kspace.read_u64(m.sym(pointer_symbol)) & ~0xFFF
    if m.pool.is_paged(page) and m.kspace.get_pte(page) & PTE_PRESENT:
        m.pool.trim(page)


# Where a user program keeps what it passes to system calls, in its PEB page.
IOSB_OFFSET = 0x800
HANDLE_OFFSET = 0x810
OBJECT_ATTRIBUTES_OFFSET = 0x820
NAME_OFFSET = 0x860
INPUT_OFFSET = 0xA00  # an IOCTL's input buffer
OUTPUT_OFFSET = 0xD00  # and its output buffer
BUFFER_MAX = 0x300
FILE_OPEN = 1
GENERIC_READ_WRITE = 0xC0000000


def unrolled(steps: list[dict]) -> Iterator[dict]:
    """A program's steps in the order they run: a `repeat` step runs its `steps` that
    many times (lazily: a long loop costs no memory)."""
    for step in steps:
        if "repeat" in step:
            for _ in range(int(step["repeat"])):
                yield from unrolled(step["steps"])
        else:
            yield step


def start_process(m, ev: dict) -> None:
    from machine.boot import start_user_thread
    from machine.ps.create import create_process

    image = ev["image"]
    parent = m.by_image.get(ev.get("parent", "explorer.exe"), 4)
    pid = m.cids.take()
    proc = create_process(m, image, pid, parent, ev.get("session", 1))
    m.by_image.setdefault(image, pid)
    steps = list(ev.get("program", []))

    def program(m, thread):
        handles: dict[str, int] = {}
        space, base = proc.space, proc.peb
        iosb = base + IOSB_OFFSET
        for step in unrolled(steps):
            if "open" in step:
                oa = base + OBJECT_ATTRIBUTES_OFFSET
                write_object_attributes(space, oa, base + NAME_OFFSET, step["open"])
                status = yield Syscall("NtCreateFile", (
                    base + HANDLE_OFFSET, GENERIC_READ_WRITE, oa, iosb, 0, 0, 0, FILE_OPEN,
                    open_options(step), 0, 0))
                if status < 0x80000000:
                    handles[step["open"]] = space.read_u64(base + HANDLE_OFFSET)
            elif "close" in step:
                yield Syscall("NtClose", (handles.pop(step["close"], 0),))
            elif "ioctl" in step:
                handle = handles.get(step["device"], 0)
                data = bytes.fromhex(step.get("input", ""))[:BUFFER_MAX]
                out_len = min(int(step.get("output", 0)), BUFFER_MAX)
                space.write(base + INPUT_OFFSET, data)
                yield Syscall("NtDeviceIoControlFile",
                              (handle, 0, 0, 0, iosb, step["ioctl"], base + INPUT_OFFSET,
                               len(data), base + OUTPUT_OFFSET, out_len))
            elif "read" in step:
                yield from read_write_step(m, proc, handles.get(step["read"], 0), step,
                                           "NtReadFile")
            elif "write" in step:
                yield from read_write_step(m, proc, handles.get(step["write"], 0), step,
                                           "NtWriteFile")
            elif "cancel" in step:
                yield Syscall("NtCancelIoFile", (handles.get(step["cancel"], 0),
                                                 io_area(proc) + IO_CANCEL_IOSB))
            elif "exit_thread" in step:
                yield Syscall("NtTerminateThread", (NT_CURRENT_THREAD, int(step["exit_thread"])))
            elif "exit_process" in step:
                yield Syscall("NtTerminateProcess",
                              (NT_CURRENT_PROCESS, int(step["exit_process"])))
            elif "queue_apc" in step:
                yield from queue_apc_step(proc, int(step["queue_apc"]))
            elif "sleep_ms" in step:
                yield from sleep_step(proc, step)
            elif "test_alert" in step:
                yield Syscall("NtTestAlert")

    start_user_thread(m, proc, m.cids.take(), program)


# -- exiting, sleeping and user APCs -------------------------------------------------------

NT_CURRENT_PROCESS = 0xFFFFFFFFFFFFFFFF
NT_CURRENT_THREAD = 0xFFFFFFFFFFFFFFFE
# In the PEB page, after the _PEB (0x7C8 bytes): what the program's APC routine saw
# (how many times it ran, the last NormalContext) and a sleep's LARGE_INTEGER interval.
APC_COUNT_OFFSET = 0x7D0
APC_CONTEXT_OFFSET = 0x7D8
DELAY_OFFSET = 0x7E0
APC_ROUTINE_RVA = 0x1B00  # the program's APC routine, in its image


def queue_apc_step(proc, context: int):
    """A user APC to the program's own thread; its routine records what it was given
    (the thread runs it at its next alertable wait or NtTestAlert)."""
    from machine.ps.create import image_base
    from machine.ps.usermode import UserRoutine

    space, base = proc.space, proc.peb

    def apc_routine(apc):
        space.write_u64(base + APC_COUNT_OFFSET, space.read_u64(base + APC_COUNT_OFFSET) + 1)
        space.write_u64(base + APC_CONTEXT_OFFSET, apc.context)
        yield from ()

    routine = image_base(proc.pid) + APC_ROUTINE_RVA
    yield UserRoutine(routine, apc_routine)
    yield Syscall("NtQueueApcThread", (NT_CURRENT_THREAD, routine, context, 0, 0))


def sleep_step(proc, step: dict):
    """NtDelayExecution for `sleep_ms` milliseconds, alertable if `alertable = true`."""
    at = proc.peb + DELAY_OFFSET
    proc.space.write_u64(at, -int(step["sleep_ms"]) * 10_000 & 0xFFFFFFFFFFFFFFFF)
    yield Syscall("NtDelayExecution", (int(bool(step.get("alertable"))), at))


# -- reading, writing and cancelling on an open file -------------------------------------

FILE_SYNCHRONOUS_IO_NONALERT = 0x20
# A read's or write's parameters and data, in pages after the PEB page.
IO_AREA_OFFSET = 0x10000
IO_AREA_PAGES = 3
IO_BYTE_OFFSET = 0x0  # the LARGE_INTEGER ByteOffset
IO_CANCEL_IOSB = 0x10  # NtCancelIoFile's status block
IO_EVENT_HANDLE = 0x20  # the event of the last read or write with `event = true`
IO_STATUS = 0x28  # what the last read or write returned
IO_APC_COUNT = 0x30  # what the I/O completion APC routine saw: how often it ran,
IO_APC_CONTEXT = 0x38  # its ApcContext
IO_APC_IOSB = 0x40  # and its IoStatusBlock argument
IO_APC_ROUTINE_RVA = 0x1C00  # the program's I/O completion routine, in its image
IO_BUFFER = 0xF00  # the data: a transfer of more than 0x100 bytes spans two pages
IO_BUFFER_MAX = 0x1000


def open_options(step: dict) -> int:
    """CreateOptions as CreateFile passes them: synchronous I/O (a file pointer, each
    request waited for) unless the step opens with `async = true` (overlapped)."""
    return 0 if step.get("async") else FILE_SYNCHRONOUS_IO_NONALERT


def io_area(proc) -> int:
    area = proc.peb + IO_AREA_OFFSET
    if not proc.space.get_pte(area) & 1:  # first use: the program's data pages
        proc.space.map_new(area, IO_AREA_PAGES * 0x1000, user=True)
    return area


def read_write_step(m, proc, handle: int, step: dict, service: str):
    """NtReadFile / NtWriteFile of `length` bytes (a write: the hex `data`), at `offset`
    if given, signalling a fresh event if `event = true`, with the program's completion
    routine as the user APC if `apc` (its ApcContext) is given; the returned status is
    kept at IO_STATUS."""
    from machine.ob.object import insert_handle
    from machine.ps.create import create_event, image_base
    from machine.ps.usermode import UserRoutine
    from machine.types.view import Struct

    space = proc.space
    area = io_area(proc)
    length = int(step.get("length", 0))
    if service == "NtWriteFile":
        data = bytes.fromhex(step.get("data", ""))[:IO_BUFFER_MAX]
        space.write(area + IO_BUFFER, data)
        length = int(step.get("length", len(data)))
    length = min(length, IO_BUFFER_MAX)
    offset = 0
    if "offset" in step:
        space.write_u64(area + IO_BYTE_OFFSET, int(step["offset"]))
        offset = area + IO_BYTE_OFFSET
    event = 0
    if step.get("event"):
        table = Struct(m.kspace, "_EPROCESS", proc.eprocess).get("ObjectTable")
        event = insert_handle(m, table, create_event(m, event_type=0))
        space.write_u64(area + IO_EVENT_HANDLE, event)
    routine, context = 0, int(step.get("apc", 0))
    if "apc" in step:
        routine = image_base(proc.pid) + IO_APC_ROUTINE_RVA

        def completion_routine(apc):
            space.write_u64(area + IO_APC_COUNT, space.read_u64(area + IO_APC_COUNT) + 1)
            space.write_u64(area + IO_APC_CONTEXT, apc.context)
            space.write_u64(area + IO_APC_IOSB, apc.argument1)
            yield from ()

        yield UserRoutine(routine, completion_routine)
    status = yield Syscall(service, (handle, event, routine, context, proc.peb + IOSB_OFFSET,
                                     area + IO_BUFFER, length, offset, 0))
    space.write_u64(area + IO_STATUS, status)


def write_object_attributes(space, oa: int, name_at: int, path: str) -> None:
    """An OBJECT_ATTRIBUTES (wdm.h layout: Length, RootDirectory, ObjectName, ...) naming
    `path`, with its UNICODE_STRING and buffer right after, in user memory."""
    data = path.encode("utf-16-le")
    buf = name_at + 0x10
    space.write(buf, data + b"\0\0")
    space.write(name_at, len(data).to_bytes(2, "little") + (len(data) + 2).to_bytes(2, "little")
                + bytes(4) + buf.to_bytes(8, "little"))
    space.write(oa, (0x30).to_bytes(4, "little") + bytes(12) + name_at.to_bytes(8, "little")
                + bytes(0x18))


# -- the keys each action and each program step takes ------------------------------------
# (beside `at_tick` and `action`; machine.scenario_schema checks them before anything
# runs: an action is known when it is listed here, and event_action carries it out)

MAX_PERIOD_TICKS = 1_000_000
# A device's register page is device memory: above the machine's RAM, within the
# 52 bits of physical address.
DEVICE_MEMORY_START = 0x80000000
PHYSICAL_LIMIT = (1 << 52) - 1

EVENT_KEYS: dict[str, dict[str, Key]] = {
    "trim_paged_pool": {"page_of": Key("symbol")},
    "start_process": {"image": Key("text", True), "parent": TEXT, "session": Int(0, 0xFFFF),
                      "program": Key("steps")},
    "start_device": {"name": TEXT, "vector": Int(0x30, 0xFF, True),
                     "processor": Int(0, 63), "period_ticks": Int(1, MAX_PERIOD_TICKS),
                     "jitter_ticks": Int(0, MAX_PERIOD_TICKS),
                     "trigger": Key("choice", choices=("latched", "level")),
                     "registers": Int(DEVICE_MEMORY_START, PHYSICAL_LIMIT)},
    "unload_driver": {"driver": Key("driver", True)},
    "set_system_power": {"state": Key("choice", True, choices=tuple(SYSTEM_STATES)),
                         "timeout_ticks": Int(1, MAX_PERIOD_TICKS)},
}

# Each step has one of these keys (what it does), with the keys that go with it.
DEVICE = Key("device")
IO_KEYS = {"length": Int(0, IO_BUFFER_MAX), "offset": Int(0, (1 << 63) - 1),
           "event": BOOL, "apc": Int(0, U64)}
STEP_KEYS: dict[str, dict[str, Key]] = {
    "open": {"open": Key("text"), "async": BOOL},
    "close": {"close": DEVICE},
    "ioctl": {"ioctl": Int(0, U32), "device": Key("device", True),
              "input": Key("hex", hi=BUFFER_MAX), "output": Int(0, BUFFER_MAX)},
    "read": {"read": DEVICE, **IO_KEYS},
    "write": {"write": DEVICE, "data": Key("hex", hi=IO_BUFFER_MAX), **IO_KEYS},
    "cancel": {"cancel": DEVICE},
    "exit_thread": {"exit_thread": Int(0, U32)},
    "exit_process": {"exit_process": Int(0, U32)},
    "queue_apc": {"queue_apc": Int(0, U64)},
    "sleep_ms": {"sleep_ms": Int(0, 86_400_000), "alertable": BOOL},
    "test_alert": {"test_alert": BOOL},
    "repeat": {"repeat": Int(1, 100_000), "steps": Key("steps", True)},
}
