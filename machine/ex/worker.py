"""System worker threads and work items.

The workers wait on one `_KQUEUE` in KeRemoveQueueEx (wait reason WrQueue).
KeInsertQueue hands an entry straight to a waiting worker, or queues it on
EntryListHead for the next one.  ExQueueWorkItem queues a `_WORK_QUEUE_ITEM`;
IoQueueWorkItem wraps an `_IO_WORKITEM` so its routine gets the device object.
"""

from __future__ import annotations

from machine.ke.native import Call, routine
from machine.ke.wait import begin_wait, init_header, unwait
from machine.rtl.lists import initialize_list_head, insert_tail_list, remove_entry_list
from machine.types.view import Struct

QUEUE_OBJECT = 4  # _KOBJECTS QueueObject
WR_QUEUE = 15  # _KWAIT_REASON WrQueue
KERNEL_MODE = 0


def create_work_queue(m) -> int:
    size = m.catalog.get("_KQUEUE").size
    queue = m.pool.allocate(0, size, "ExWq")
    init_header(m.kspace, queue, QUEUE_OBJECT, size, 0)
    q = Struct(m.kspace, "_KQUEUE", queue)
    initialize_list_head(m.kspace, q.addr("EntryListHead"))
    initialize_list_head(m.kspace, q.addr("ThreadListHead"))
    q.set("MaximumCount", len(m.processors))
    return queue


def insert_queue(m, queue: int, entry: int) -> int:
    """KeInsertQueue's core: the previous signal state."""
    q = Struct(m.kspace, "_KQUEUE", queue)
    previous = q.get("Header.SignalState")
    head = q.addr("Header.WaitListHead")
    waiter = m.kspace.read_u64(head)
    if waiter != head:  # a worker is waiting: the entry is its wait status
        thread = m.thread_at(Struct(m.kspace, "_KWAIT_BLOCK", waiter).get("Thread"))
        unwait(m, thread, entry)
    else:
        insert_tail_list(m.kspace, q.addr("EntryListHead"), entry)
        q.set("Header.SignalState", previous + 1)
    return previous


@routine("KeInsertQueue", frame=0x58, size=0x200)
def KeInsertQueue(m, proc, a):
    """(Queue, Entry) -> previous signal state."""
    return insert_queue(m, a[0], a[1])


@routine("KeRemoveQueueEx", frame=0x98, size=0x400)
def KeRemoveQueueEx(m, proc, a):
    """(Queue, WaitMode, Alertable, Timeout, EntryArray, Count) -> an entry."""
    queue = a[0]
    q = Struct(m.kspace, "_KQUEUE", queue)
    thread = proc.current
    if q.get("Header.SignalState") > 0:
        entry = q.get("EntryListHead.Flink")
        remove_entry_list(m.kspace, entry)
        q.set("Header.SignalState", q.get("Header.SignalState") - 1)
        return entry
    begin_wait(m, proc, thread, queue, WR_QUEUE, a[1] & 0xFF, a[2] & 0xFF)
    entry = yield Call(m.sym("KiCommitThreadWait"), (thread.ethread, 0, 0, 0), ret=0x1C4)
    m.set_irql(m.processor_of(thread), 0)
    return entry


@routine("ExQueueWorkItem", frame=0x38, size=0x100)
def ExQueueWorkItem(m, proc, a):
    """(WorkItem, QueueType)"""
    insert_queue(m, m.work_queue, a[0])
    return 0


@routine("ExpWorkerThread", frame=0x88, size=0x300)
def ExpWorkerThread(m, proc, a):
    """A system worker: load queued drivers (boot), then run work items forever."""
    thread = proc.current
    while m.pending_driver_loads:
        thread.work_item = m.pending_driver_loads.pop(0)
        yield Call(m.sym("IopLoadDriver"), (), ret=0x135)
    while True:
        item = yield Call(m.sym("KeRemoveQueueEx"), (m.work_queue, KERNEL_MODE, 0, 0, 0, 1),
                          ret=0x1DB)
        w = Struct(m.kspace, "_WORK_QUEUE_ITEM", item)
        yield Call(w.get("WorkerRoutine"), (w.get("Parameter"),), ret=0x216)


@routine("IoAllocateWorkItem", frame=0x38, size=0x100)
def IoAllocateWorkItem(m, proc, a):
    """(DeviceObject) -> an IO_WORKITEM."""
    size = m.catalog.get("_IO_WORKITEM").size
    item = m.pool.allocate(0, size, "IoWI")
    Struct(m.kspace, "_IO_WORKITEM", item).set("IoObject", a[0])
    return item


@routine("IoQueueWorkItem", frame=0x48, size=0x180)
def IoQueueWorkItem(m, proc, a):
    """(IoWorkItem, WorkerRoutine, QueueType, Context)"""
    w = Struct(m.kspace, "_IO_WORKITEM", a[0])
    w.set("Routine", a[1])
    w.set("Context", a[3])
    w.set("WorkItem.WorkerRoutine", m.sym("nt!IopProcessWorkItem"))
    w.set("WorkItem.Parameter", a[0])
    insert_queue(m, m.work_queue, w.addr("WorkItem"))
    return 0


@routine("IopProcessWorkItem", frame=0x38, size=0x100)
def IopProcessWorkItem(m, proc, a):
    w = Struct(m.kspace, "_IO_WORKITEM", a[0])
    yield Call(w.get("Routine"), (w.get("IoObject"), w.get("Context")), ret=0x4A)
    return 0


@routine("IoFreeWorkItem", frame=0x28, size=0x80)
def IoFreeWorkItem(m, proc, a):
    m.pool.free(a[0])
    return 0
