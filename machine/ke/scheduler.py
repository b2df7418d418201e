"""The dispatcher's ready queues: per processor, one list per priority (0..31) in
`_KPRCB.DispatcherReadyListHead`, threads linked through `_KTHREAD.WaitListEntry`, with
`ReadySummary` marking the non-empty priorities — so a debugger sees the queues in memory.

A thread is queued on its ideal processor when its affinity allows it, else on the
lowest allowed one.  A processor takes the highest-priority thread of its own queues and,
when they are empty, one from another processor's queues that may run on it.  A thread
made ready at a higher priority than the one running on its processor preempts it.
"""

from __future__ import annotations

from machine.ke.processor import DPC_VECTOR, Processor
from machine.ke.threads import READY, TERMINATED, ThreadRec
from machine.rtl.lists import insert_tail_list, remove_entry_list
from machine.types.view import Struct

PRIORITIES = 32


class Scheduler:
    def __init__(self, m) -> None:
        self.m = m
        self.ready_count = 0  # mirrors the ReadyThreadCount sum, for the run loop's checks

    def _prcb(self, proc: Processor) -> Struct:
        return Struct(self.m.kspace, "_KPRCB", proc.prcb)

    def _head(self, proc: Processor, priority: int) -> int:
        return self._prcb(proc).addr(f"DispatcherReadyListHead[{priority}]")

    def _affinity(self, thread: ThreadRec) -> int:
        mask = Struct(self.m.kspace, "_KTHREAD", thread.ethread).get("Affinity.Mask")
        return mask or (1 << len(self.m.processors)) - 1

    def processor_for(self, thread: ThreadRec) -> Processor:
        mask = self._affinity(thread)
        ideal = thread.ideal_processor % len(self.m.processors)
        if mask >> ideal & 1:
            return self.m.processors[ideal]
        return next(p for p in self.m.processors if mask >> p.number & 1)

    def make_ready(self, thread: ThreadRec) -> None:
        m = self.m
        proc = self.processor_for(thread)
        kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
        if kt.get("State") == TERMINATED:
            from machine.machine import MachineError

            # An exited thread never runs again: whoever readies it is a simulator bug.
            raise MachineError(f"thread {thread.ethread:#x} has terminated")
        kt.set("State", READY)
        priority = thread.priority
        insert_tail_list(m.kspace, self._head(proc, priority), kt.addr("WaitListEntry"))
        prcb = self._prcb(proc)
        prcb.set("ReadySummary", prcb.get("ReadySummary") | 1 << priority)
        prcb.set("ReadyThreadCount", prcb.get("ReadyThreadCount") + 1)
        self.ready_count += 1
        thread.ready_on = proc
        running = proc.current
        if running is not None and not running.idle and running.priority < priority:
            proc.preempt = True
            m.request_interrupt(proc, DPC_VECTOR)

    def _take(self, proc: Processor, thread: ThreadRec) -> None:
        m = self.m
        kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
        entry = kt.addr("WaitListEntry")
        remove_entry_list(m.kspace, entry)
        m.kspace.write_u64(entry, entry)
        m.kspace.write_u64(entry + 8, entry)
        prcb = self._prcb(proc)
        head = self._head(proc, thread.priority)
        if m.kspace.read_u64(head) == head:
            prcb.set("ReadySummary", prcb.get("ReadySummary") & ~(1 << thread.priority))
        prcb.set("ReadyThreadCount", prcb.get("ReadyThreadCount") - 1)
        self.ready_count -= 1
        thread.ready_on = None

    def _best(self, proc: Processor, owner: Processor, minimum: int) -> ThreadRec | None:
        summary = self._prcb(owner).get("ReadySummary")
        for priority in range(PRIORITIES - 1, minimum - 1, -1):
            if not summary >> priority & 1:
                continue
            head = self._head(owner, priority)
            entry = self.m.kspace.read_u64(head)
            while entry != head:
                ethread = entry - Struct(self.m.kspace, "_KTHREAD", 0).offset("WaitListEntry")
                thread = self.m.thread_at(ethread)
                if self._affinity(thread) >> proc.number & 1:
                    return thread
                entry = self.m.kspace.read_u64(entry)
        return None

    def next_ready(self, proc: Processor, minimum: int = 0) -> ThreadRec | None:
        """Dequeue the thread this processor should run next (priority >= minimum)."""
        owners = [proc] + [p for p in self.m.processors if p is not proc]
        for owner in owners:
            thread = self._best(proc, owner, minimum)
            if thread is not None:
                self._take(owner, thread)
                return thread
        return None

    def has_ready(self, proc: Processor, minimum: int = 0) -> bool:
        return any(self._best(proc, owner, minimum) is not None for owner in self.m.processors)

    def any_ready(self) -> bool:
        return self.ready_count > 0
