"""Unloading a driver: IopUnloadDriver runs the driver's DriverUnload on a system worker
thread, then the image leaves the loaded-module list and its pages are unmapped.

The image's address range is remembered: a later access to it (a timer or DPC the driver
did not cancel firing into code that is gone) is what Windows reports as
DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS (see machine/ke/trap.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from machine.ke.native import Call, routine
from machine.mm.physical import PAGE_SIZE
from machine.rtl.lists import remove_entry_list
from machine.types.view import Struct

# nt's record of unloaded drivers, which kd reads for `lm`'s "Unloaded modules" and for
# naming addresses in them: a pointer to an array of MI_UNLOADED_DRIVERS
# `_UNLOADED_DRIVERS` (allocated at the first unload) and the count of entries used.
UNLOAD_DATA = (("MmUnloadedDrivers", 8, ""), ("MmLastUnloadedDriver", 8, ""))
MI_UNLOADED_DRIVERS = 50


@dataclass(frozen=True)
class UnloadedImage:
    name: str  # file name, e.g. myfault.sys
    base: int
    end: int


def unloaded_images(m) -> list[UnloadedImage]:
    """nt's record of unloaded drivers (nt!MmUnloadedDrivers), oldest first."""
    array = m.kspace.read_u64(m.sym("nt!MmUnloadedDrivers"))
    if not array:
        return []
    size = m.catalog.get("_UNLOADED_DRIVERS").size
    out = []
    for i in range(m.kspace.read_u64(m.sym("nt!MmLastUnloadedDriver"))):
        e = Struct(m.kspace, "_UNLOADED_DRIVERS", array + i * size)
        name = Struct(m.kspace, "_UNICODE_STRING", e.addr("Name"))
        text = m.kspace.read(name.get("Buffer"), name.get("Length")).decode("utf-16-le")
        out.append(UnloadedImage(text, e.get("StartAddress"), e.get("EndAddress")))
    return out


def unloaded_image_at(m, va: int) -> UnloadedImage | None:
    """The most recently unloaded image whose range held va."""
    return next((u for u in reversed(unloaded_images(m)) if u.base <= va < u.end), None)


def queue_driver_unload(m, name: str) -> None:
    """Ask a system worker thread to unload the driver (as the service control manager's
    NtUnloadDriver does).  A driver without a DriverUnload routine cannot be unloaded."""
    image = next((i for i in m.modules if i.name.lower() == name.lower()), None)
    if image is None or not image.driver_object:
        raise ValueError(f"no loaded driver named {name!r}")
    from machine.ex.worker import insert_queue

    item = m.pool.allocate(0, m.catalog.get("_WORK_QUEUE_ITEM").size, "IoWI")
    w = Struct(m.kspace, "_WORK_QUEUE_ITEM", item)
    w.set("WorkerRoutine", m.sym("nt!IopUnloadDriver"))
    w.set("Parameter", image.driver_object)
    insert_queue(m, m.work_queue, item)


def unload_image(m, image) -> None:
    """The image leaves PsLoadedModuleList and its pages are unmapped."""
    if image.ldr_entry:
        remove_entry_list(m.kspace, image.ldr_entry)
    m.modules.remove(image)
    for page in range(image.base, image.base + image.size, PAGE_SIZE):
        m.kspace.set_pte(page, 0)
    record_unloaded(m, image)


def record_unloaded(m, image) -> None:
    """Append the image to nt!MmUnloadedDrivers (the oldest entry goes when it is full)."""
    from machine.ke.timer import interrupt_time
    from machine.ldr.loader import write_unicode_string

    size = m.catalog.get("_UNLOADED_DRIVERS").size
    array = m.kspace.read_u64(m.sym("nt!MmUnloadedDrivers"))
    if not array:
        array = m.pool.allocate(0, size * MI_UNLOADED_DRIVERS, "MmDT")
        m.kspace.write(array, bytes(size * MI_UNLOADED_DRIVERS))
        m.kspace.write_u64(m.sym("nt!MmUnloadedDrivers"), array)
    count = m.kspace.read_u64(m.sym("nt!MmLastUnloadedDriver"))
    if count == MI_UNLOADED_DRIVERS:
        m.kspace.write(array, m.kspace.read(array + size, size * (count - 1)) + bytes(size))
        count -= 1
    e = Struct(m.kspace, "_UNLOADED_DRIVERS", array + count * size)
    write_unicode_string(m, e.addr("Name"), image.image, "MmDT")
    e.set("StartAddress", image.base)
    e.set("EndAddress", image.base + image.size)
    m.kspace.write_u64(e.addr("CurrentTime"), interrupt_time(m))
    m.kspace.write_u64(m.sym("nt!MmLastUnloadedDriver"), count + 1)


@routine("IopUnloadDriver", frame=0x48, size=0x180)
def IopUnloadDriver(m, proc, a):
    """(DriverObject): its DriverUnload, then the image goes."""
    drv = Struct(m.kspace, "_DRIVER_OBJECT", a[0])
    unload = drv.get("DriverUnload")
    if not unload:
        return 0  # such a driver stays loaded
    yield Call(unload, (a[0],), ret=0x5E)
    image = next((i for i in m.modules if i.driver_object == a[0]), None)
    if image is not None:
        unload_image(m, image)
    return 0
