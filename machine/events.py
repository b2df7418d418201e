"""Scenario timeline events: what happens to the machine at a given tick."""

from __future__ import annotations

from machine.ps.usermode import Syscall

IOSB_OFFSET = 0x800  # the user program's IO_STATUS_BLOCK, inside its PEB page


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
    raise ScenarioError(scen.path, _line_of(scen.text, f'"{kind}"'), 1,
                        f"unknown event action {kind!r}")


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


def start_process(m, ev: dict) -> None:
    from machine.boot import start_user_thread
    from machine.io.iomgr import open_device
    from machine.ps.create import create_process

    image = ev["image"]
    parent = m.by_image.get(ev.get("parent", "explorer.exe"), 4)
    pid = m.cids.take()
    proc = create_process(m, image, pid, parent, ev.get("session", 1))
    m.by_image.setdefault(image, pid)
    steps = list(ev.get("program", []))

    def program(m, thread):
        handles: dict[str, int] = {}
        for step in steps:
            if "open" in step:
                handles[step["open"]] = open_device(m, proc, step["open"])
            elif "ioctl" in step:
                handle = handles[step["device"]]
                iosb = proc.peb + IOSB_OFFSET
                yield Syscall("NtDeviceIoControlFile",
                              (handle, 0, 0, 0, iosb, step["ioctl"], 0, 0, 0, 0))

    start_user_thread(m, proc, m.cids.take(), program)
