"""Scenario timeline events: what happens to the machine at a given tick."""

from __future__ import annotations

from machine.ps.usermode import Syscall


def event_action(ev: dict, scen):
    from machine.scenario import ScenarioError, _line_of

    kind = ev.get("action")
    if kind == "trim_paged_pool":
        target = ev.get("page_of")
        if target is None:
            return trim_paged_pool
        return lambda m: trim_page_of(m, target)
    if kind == "start_process":
        return lambda m: start_process(m, ev)
    if kind == "start_device":
        trigger = ev.get("trigger", "latched")
        if trigger not in ("latched", "level"):
            raise ScenarioError(scen.path, _line_of(scen.text, f'"{trigger}"'), 1,
                                f"device trigger must be \"latched\" or \"level\", "
                                f"not {trigger!r}")
        if int(ev.get("registers", 0)) & 0xFFF:
            raise ScenarioError(scen.path, _line_of(scen.text, "registers"), 1,
                                "device registers must be at a page-aligned physical address")
        return lambda m: start_scenario_device(m, ev)
    raise ScenarioError(scen.path, _line_of(scen.text, f'"{kind}"'), 1,
                        f"unknown event action {kind!r}")


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
        for step in steps:
            if "open" in step:
                oa = base + OBJECT_ATTRIBUTES_OFFSET
                write_object_attributes(space, oa, base + NAME_OFFSET, step["open"])
                status = yield Syscall("NtCreateFile", (
                    base + HANDLE_OFFSET, GENERIC_READ_WRITE, oa, iosb, 0, 0, 0, FILE_OPEN,
                    0, 0, 0))
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

    start_user_thread(m, proc, m.cids.take(), program)


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
