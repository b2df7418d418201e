"""Invariants after seeded random runs on 1, 2 and 8 CPUs, checked through memory:
every thread is in one state and on the matching list, lists are doubly linked, a walk
of the pool agrees with its free lists and tag counters, and no DPC runs below
DISPATCH_LEVEL."""

from __future__ import annotations

import random

import pytest

from machine.ex.pool import (
    BLOCK_UNIT,
    NONPAGED_POOL,
    PAGE_UNITS,
    PAGED_POOL,
    POOL_HEADER_SIZE,
)
from machine.machine import STEPS_PER_TICK
from machine.ps.create import create_thread
from machine.types.view import Struct
from tests.machine.probe import boot_probe

ROUTINES = {
    "DriverEntry": """
    sub     rsp, 28h
    lea     rcx, [Event]
    mov     edx, 1
    xor     r8d, r8d
    call    nt!KeInitializeEvent
    lea     rcx, [Timer]
    xor     edx, edx
    call    nt!KeInitializeTimerEx
    lea     rcx, [TimerDpc]
    lea     rdx, [DpcRoutine]
    xor     r8d, r8d
    call    nt!KeInitializeDpc
    lea     r9, [TimerDpc]
    mov     r8d, 20
    mov     rdx, -200000
    lea     rcx, [Timer]
    call    nt!KeSetTimerEx
    xor     eax, eax
    add     rsp, 28h
    ret
""",
    "DpcRoutine": """
    mov     rax, cr8
    cmp     rax, 2
    je      dpc_ok
    lock inc qword ptr [BadDpcIrql]
dpc_ok:
    lock inc qword ptr [DpcRuns]
    sub     rsp, 28h
    xor     r8d, r8d
    xor     edx, edx
    lea     rcx, [Event]
    call    nt!KeSetEvent
    add     rsp, 28h
    ret
""",
    "Spinner": """
spin_top:
    mov     ecx, 500
spin_inner:
    dec     ecx
    jnz     spin_inner
    sub     rsp, 28h
    mov     edx, 40h
    xor     ecx, ecx
    mov     r8d, 6E697053h
    call    nt!ExAllocatePoolWithTag
    add     rsp, 28h
    jmp     spin_top
""",
    "Waiter": """
wait_top:
    sub     rsp, 38h
    mov     qword ptr [rsp+20h], 0
    xor     r9d, r9d
    xor     r8d, r8d
    xor     edx, edx
    lea     rcx, [Event]
    call    nt!KeWaitForSingleObject
    add     rsp, 38h
    lock inc qword ptr [Wakes]
    jmp     wait_top
""",
}
GLOBALS = {"Event": 0x18, "Timer": 0x40, "TimerDpc": 0x40, "DpcRuns": 8, "BadDpcIrql": 8,
           "Wakes": 8}
STATE_READY, STATE_RUNNING, STATE_WAITING = 1, 2, 5


def check_links(m, head: int) -> list[int]:
    entries, entry, seen = [], m.kspace.read_u64(head), 0
    assert m.kspace.read_u64(m.kspace.read_u64(head + 8)) == head
    while entry != head:
        assert m.kspace.read_u64(m.kspace.read_u64(entry + 8)) == entry  # Flink(Blink) == e
        assert m.kspace.read_u64(m.kspace.read_u64(entry) + 8) == entry  # Blink(Flink) == e
        entries.append(entry)
        entry = m.kspace.read_u64(entry)
        seen += 1
        assert seen < 200_000
    return entries


def check(m) -> None:
    wlo = Struct(m.kspace, "_KTHREAD", 0).offset("WaitListEntry")
    ready_on: dict[int, int] = {}
    running: dict[int, int] = {}
    for proc in m.processors:
        prcb = Struct(m.kspace, "_KPRCB", proc.prcb)
        running[prcb.get("CurrentThread")] = proc.number
        count = 0
        for prio in range(32):
            entries = check_links(m, prcb.addr(f"DispatcherReadyListHead[{prio}]"))
            assert bool(entries) == bool(prcb.get("ReadySummary") >> prio & 1)
            for e in entries:
                et = e - wlo
                assert et not in ready_on, "a thread on two ready lists"
                ready_on[et] = proc.number
                assert Struct(m.kspace, "_KTHREAD", et).get("Priority") == prio
                count += 1
        assert prcb.get("ReadyThreadCount") == count
    assert len(running) == len(m.processors)  # each processor runs a different thread
    for proc in check_processes(m):
        for t in proc.threads:
            kt = Struct(m.kspace, "_KTHREAD", t.ethread)
            state = kt.get("State")
            if t.idle:  # a processor's idle thread: running there, or ready off any list
                assert t.ethread not in ready_on
                assert state == (STATE_RUNNING if t.ethread in running else STATE_READY)
                continue
            assert (state == STATE_READY) == (t.ethread in ready_on)
            assert (state == STATE_RUNNING) == (t.ethread in running)
            if state == STATE_WAITING:
                block = kt.get("WaitBlockList")
                obj = Struct(m.kspace, "_KWAIT_BLOCK", block).get("Object")
                waiters = check_links(m, Struct(m.kspace, "_DISPATCHER_HEADER", obj).addr(
                    "WaitListHead"))
                assert block in waiters
            else:
                assert state in (STATE_READY, STATE_RUNNING), state
    check_pool(m)
    assert m.kspace.read_u64(m.sym("inv!BadDpcIrql")) == 0


def check_processes(m):
    heads = check_links(m, m.sym("nt!PsActiveProcessHead"))
    off = Struct(m.kspace, "_EPROCESS", 0).offset("ActiveProcessLinks")
    assert {e - off for e in heads} == {p.eprocess for p in m.processes if p.pid}
    for p in m.processes:
        ep = Struct(m.kspace, "_EPROCESS", p.eprocess)
        toff = Struct(m.kspace, "_ETHREAD", 0).offset("ThreadListEntry")
        assert [e - toff for e in check_links(m, ep.addr("ThreadListHead"))] == \
            [t.ethread for t in p.threads]
    return m.processes


def check_pool(m) -> None:
    """Walk the pool in memory: headers tile every page and agree with their neighbours,
    no two free blocks touch, the free blocks are exactly the entries of their size's
    free list, and each tag's counters in PoolTrackTable match the blocks in use (small
    ones found by the walk, big ones in PoolBigPageTable)."""
    used: dict[tuple[int, int], list[int]] = {}  # (tag, pool) -> [blocks, bytes]
    for pool in (NONPAGED_POOL, PAGED_POOL):
        heads, listed, free = m.pool.list_heads(pool), set(), set()
        for units in range(1, PAGE_UNITS + 1):
            for entry in check_links(m, heads + (units - 1) * 0x10):
                h = Struct(m.kspace, "_POOL_HEADER", entry - POOL_HEADER_SIZE)
                assert h.get("PoolType") == 0 and h.get("BlockSize") == units
                listed.add(entry)
        for page in m.pool.small_pages(pool):
            assert m.kspace.get_pte(page) & 1  # nothing is trimmed in these runs
            offset, previous, previous_free = 0, 0, False
            while offset < 0x1000:
                h = Struct(m.kspace, "_POOL_HEADER", page + offset)
                assert h.get("PreviousSize") == previous
                units = h.get("BlockSize")
                assert units > 0
                if h.get("PoolType") == 0:
                    assert not previous_free  # freeing merges free neighbours
                    if units >= 2:
                        free.add(page + offset + POOL_HEADER_SIZE)
                else:
                    assert h.get("PoolType") == pool + 1
                    count = used.setdefault((h.get("PoolTag"), pool), [0, 0])
                    count[0] += 1
                    count[1] += units * BLOCK_UNIT
                previous_free = h.get("PoolType") == 0
                offset += units * BLOCK_UNIT
                previous = units
            assert offset == 0x1000
        assert free == listed
    table = m.kspace.read_u64(m.sym("nt!PoolBigPageTable"))
    for i in range(m.kspace.read_u64(m.sym("nt!PoolBigPageTableSize"))):
        e = Struct(m.kspace, "_POOL_TRACKER_BIG_PAGES", table + i * 0x18)
        if not e.get("Va") & 1:
            pool = e.get("PoolType") & 1
            assert e.get("Va") & 0xFFF == 0 and m.pool.is_paged(e.get("Va")) == bool(pool)
            count = used.setdefault((e.get("Key"), pool), [0, 0])
            count[0] += 1
            count[1] += (e.get("NumberOfBytes") + 0xFFF) & ~0xFFF  # charged in whole pages
    table = m.kspace.read_u64(m.sym("nt!PoolTrackTable"))
    counted = {}
    for i in range(m.kspace.read_u64(m.sym("nt!PoolTrackTableSize"))):
        t = Struct(m.kspace, "_POOL_TRACKER_TABLE", table + i * 0x38)
        key = t.get("Key") & 0xFFFFFFFF
        if key:
            for pool, kind in ((NONPAGED_POOL, "NonPaged"), (PAGED_POOL, "Paged")):
                blocks = t.get(f"{kind}Allocs") - t.get(f"{kind}Frees")
                if blocks or t.get(f"{kind}Bytes"):
                    counted[(key, pool)] = [blocks, t.get(f"{kind}Bytes")]
    assert counted == used


@pytest.mark.parametrize("cpus, seed", [(1, 11), (2, 12), (8, 13)])
def test_invariants_hold_through_a_random_run(cpus, seed):
    m = boot_probe("inv", ROUTINES, GLOBALS, cpus=cpus, seed=seed)
    rng = random.Random(seed)
    system = next(p for p in m.processes if p.pid == 4)
    for i in range(3 * cpus):
        routine = rng.choice(["Spinner", "Waiter"])
        t = create_thread(m, system, 0xA000 + 4 * i, "nt!KiStartSystemThread", system=True,
                          priority=rng.choice([7, 8, 9, 12]), ideal=rng.randrange(cpus),
                          routine=m.sym(f"inv!{routine}"), ready=False)
        if rng.random() < 0.3:
            Struct(m.kspace, "_KTHREAD", t.ethread).set("Affinity.Mask",
                                                         1 << rng.randrange(cpus))
        m.make_ready(t)
    for _ in range(4):
        m.run(rng.randrange(1, STEPS_PER_TICK * 3))
        assert m.bugcheck is None
        check(m)
    assert m.kspace.read_u64(m.sym("inv!DpcRuns")) > 0
