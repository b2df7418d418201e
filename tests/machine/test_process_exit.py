"""Process exit, observed in memory: every thread terminates, the handle table is run
down through the ordinary close path (a driver sees IRP_MJ_CLEANUP and IRP_MJ_CLOSE),
the process object is signaled with its exit status; a process someone still references
stays listed as a zombie without a handle table, and leaves PsActiveProcessHead with its
last reference.  A seeded run with processes exiting keeps every list consistent."""

from __future__ import annotations

import random

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from machine.boot import start_user_thread
from machine.machine import STEPS_PER_TICK
from machine.ob.object import OBJECT_HEADER_BODY, insert_handle, remove_handle
from machine.ps.create import create_process, image_base
from machine.ps.usermode import Syscall, UserRoutine, idle_program
from machine.rtl.lists import iterate_list
from machine.scenario import boot_scenario, parse_scenario
from machine.types.view import Struct
from tests.machine.probe import (
    LOG_MAJOR_AND_COMPLETE,
    MAJOR_LOG_GLOBALS,
    boot_probe,
    client_process,
    client_program,
    device_driver,
    major_log,
    scenario_header,
    start_system_thread,
)
from tests.machine.test_invariants import check_links, check_pool

READY, RUNNING, TERMINATED, WAITING = 1, 2, 4, 5
NT_CURRENT_PROCESS, NT_CURRENT_THREAD = 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFE

WAITER = """
    sub     rsp, 38h
    mov     qword ptr [rsp+20h], 0
    xor     r9d, r9d
    xor     r8d, r8d
    xor     edx, edx
    mov     rcx, qword ptr [Target]
    call    nt!KeWaitForSingleObject
    mov     qword ptr [WaitResult], rax
    xor     eax, eax
    add     rsp, 38h
    ret                                     ; the thread ends
"""
SCENARIO = (
    scenario_header("pexit")
    + device_driver("pexit", "Pexit", {0x0: "Logged", 0x2: "Logged", 0x12: "Logged"},
                    {"Logged": LOG_MAJOR_AND_COMPLETE, "Waiter": WAITER},
                    {**MAJOR_LOG_GLOBALS, "Target": 8, "WaitResult": 8})
    + client_program("Pexit", ["{ sleep_ms = 60 }", "{ exit_process = 0x1234 }"]))


def entries(m, head: int, type_name: str, field: str) -> list[int]:
    off = Struct(m.kspace, type_name, 0).offset(field)
    return [e - off for e in iterate_list(m.kspace, head)]


def test_process_exit_runs_down_handles_signals_and_leaves_a_zombie_until_released():
    m = boot_scenario(parse_scenario(SCENARIO, "pexit.toml"))
    m.run(STEPS_PER_TICK * 3)
    client = client_process(m)
    main = client.threads[0]
    assert m.kspace.read(m.sym("pexit!MajorLog"), 1) == b"\x00"  # the file is open
    # A second thread, idle in a user-mode wait; explorer holds handles to the process and
    # to that thread (as a parent that created them would); a driver thread waits on the
    # process object.
    second = start_user_thread(m, client, m.cids.take(), idle_program)
    explorer = next(p for p in m.processes if p.image == "explorer.exe")
    table = Struct(m.kspace, "_EPROCESS", explorer.eprocess).get("ObjectTable")
    process_handle = insert_handle(m, table, client.eprocess)
    thread_handle = insert_handle(m, table, second.ethread)
    m.kspace.write_u64(m.sym("pexit!Target"), client.eprocess)
    m.kspace.write_u64(m.sym("pexit!WaitResult"), 0xFFFF)
    start_system_thread(m, 0x9000, m.sym("pexit!Waiter"))
    process_type = Struct(m.kspace, "_OBJECT_TYPE", m.object_types["Process"])
    processes = process_type.get("TotalNumberOfObjects")
    m.run(STEPS_PER_TICK * 8)
    assert m.bugcheck is None
    ep = Struct(m.kspace, "_EPROCESS", client.eprocess)
    assert ep.get("ExitStatus") == 0x1234 and ep.get("ExitTime") > ep.get("CreateTime")
    assert ep.get("ObjectTable") == 0 and ep.get("ActiveThreads") == 0
    assert ep.get("ProcessExiting") == 1 and ep.get("Pcb.Header.SignalState") == 1
    assert m.kspace.read_u64(m.sym("pexit!WaitResult")) == 0  # the waiter woke
    # The open file went through IRP_MJ_CLEANUP then IRP_MJ_CLOSE.
    assert major_log(m, "pexit") == bytes([0x00, 0x12, 0x02])
    # Both threads ended with the process's status; the one nobody holds is gone, the
    # held one stays on the list, terminated.
    second_et = Struct(m.kspace, "_ETHREAD", second.ethread)
    assert second_et.get("Tcb.State") == TERMINATED and second_et.get("ExitStatus") == 0x1234
    assert entries(m, ep.addr("ThreadListHead"), "_ETHREAD", "ThreadListEntry") == \
        [second.ethread]
    assert main not in m.threads and client.threads == [second]
    assert entries(m, ep.addr("Pcb.ThreadListHead"), "_KTHREAD", "ThreadListEntry") == []
    # A zombie: still listed, no handle table.
    active = entries(m, m.sym("nt!PsActiveProcessHead"), "_EPROCESS", "ActiveProcessLinks")
    assert client.eprocess in active and client in m.processes
    text = "\n".join(line for res in Session(LiveTarget(m), processor=0).execute(
        f"!process {client.eprocess:x} 7") for line in res.lines)
    assert "ObjectTable: 00000000  HandleCount: 0." in text
    assert f"No active threads\n        THREAD {second.ethread:016x}  Cid " \
           f"{client.pid:04x}.{second.tid:04x}  TERMINATED\n" in text
    # The last references go: the thread, then (its thread no longer holding it) the
    # process, which leaves PsActiveProcessHead.
    remove_handle(m, table, thread_handle)
    assert second not in m.threads
    assert entries(m, ep.addr("ThreadListHead"), "_ETHREAD", "ThreadListEntry") == []
    header = Struct(m.kspace, "_OBJECT_HEADER", client.eprocess - OBJECT_HEADER_BODY)
    assert header.get("PointerCount") == 1 and header.get("HandleCount") == 1
    remove_handle(m, table, process_handle)
    active = entries(m, m.sym("nt!PsActiveProcessHead"), "_EPROCESS", "ActiveProcessLinks")
    assert client.eprocess not in active and client not in m.processes
    assert process_type.get("TotalNumberOfObjects") == processes - 1
    m.run(STEPS_PER_TICK)
    check_pool(m)


# -- invariants through a seeded run where processes exit ----------------------------------

def check(m) -> None:
    """Every thread is in one state and on the matching list (a terminated one on none),
    every list is doubly linked, and the process records match the lists in memory."""
    wlo = Struct(m.kspace, "_KTHREAD", 0).offset("WaitListEntry")
    ready_on: set[int] = set()
    running = {Struct(m.kspace, "_KPRCB", p.prcb).get("CurrentThread") for p in m.processors}
    assert len(running) == len(m.processors)
    for proc in m.processors:
        prcb = Struct(m.kspace, "_KPRCB", proc.prcb)
        count = 0
        for prio in range(32):
            found = check_links(m, prcb.addr(f"DispatcherReadyListHead[{prio}]"))
            assert bool(found) == bool(prcb.get("ReadySummary") >> prio & 1)
            for e in found:
                assert e - wlo not in ready_on
                ready_on.add(e - wlo)
                count += 1
        assert prcb.get("ReadyThreadCount") == count
    heads = check_links(m, m.sym("nt!PsActiveProcessHead"))
    off = Struct(m.kspace, "_EPROCESS", 0).offset("ActiveProcessLinks")
    assert {e - off for e in heads} == {p.eprocess for p in m.processes if p.pid}
    toff = Struct(m.kspace, "_ETHREAD", 0).offset("ThreadListEntry")
    koff = Struct(m.kspace, "_KTHREAD", 0).offset("ThreadListEntry")
    for p in m.processes:
        ep = Struct(m.kspace, "_EPROCESS", p.eprocess)
        assert [e - toff for e in check_links(m, ep.addr("ThreadListHead"))] == \
            [t.ethread for t in p.threads]
        states = {t.ethread: Struct(m.kspace, "_KTHREAD", t.ethread).get("State")
                  for t in p.threads}
        assert [e - koff for e in check_links(m, ep.addr("Pcb.ThreadListHead"))] == \
            [t.ethread for t in p.threads if states[t.ethread] != TERMINATED]
        if not ep.get("ObjectTable") and p.pid:  # exited
            assert ep.get("ActiveThreads") == 0 and ep.get("Pcb.Header.SignalState") == 1
            assert set(states.values()) <= {TERMINATED}
        for t in p.threads:
            kt = Struct(m.kspace, "_KTHREAD", t.ethread)
            state = states[t.ethread]
            if t.idle:
                continue
            assert (state == READY) == (t.ethread in ready_on)
            assert (state == RUNNING) == (t.ethread in running)
            if state == WAITING:
                block = kt.get("WaitBlockList")
                obj = Struct(m.kspace, "_KWAIT_BLOCK", block).get("Object")
                assert block in check_links(m, Struct(m.kspace, "_DISPATCHER_HEADER",
                                                      obj).addr("WaitListHead"))
            elif state == TERMINATED:
                assert kt.get("Header.SignalState") == 1 and kt.get("WaitBlockList") == 0
                assert kt.get("ApcState.ApcListHead[1].Flink") == \
                    kt.addr("ApcState.ApcListHead[1]")
            else:
                assert state in (READY, RUNNING), state
    check_pool(m)


def random_actions(rng: random.Random, me: int, threads: int) -> list[tuple]:
    """Sleeps (some alertable), APCs to itself or a peer, alert tests, alertable waits on a
    peer, now and then a peer killed; then, maybe, the thread or the process ends."""
    peers = [i for i in range(threads) if i != me]
    kinds = ["sleep", "sleep", "sleep", "apc", "alert"]
    if peers:
        kinds += ["apc_to", "apc_to", "wait_peer", "kill_peer"]
    actions: list[tuple] = []
    for _ in range(rng.randint(3, 7)):
        kind = rng.choice(kinds)
        if kind == "sleep":
            actions.append((kind, rng.randint(1, 3), rng.random() < 0.5))
        elif kind in ("apc_to", "wait_peer", "kill_peer"):
            actions.append((kind, rng.choice(peers)))
        else:
            actions.append((kind, rng.randrange(1, 0x100)))
    ending = rng.choice([None, None, "exit_thread", "exit_process"])
    if ending:
        actions.append((ending, rng.randrange(1, 0x100)))
    return actions


def scripted(actions: list[tuple], handles: list[int], data: int):
    """A thread's program that plays a list of actions."""

    def factory(m, thread):
        space = thread.process.space
        routine = image_base(thread.process.pid) + 0x3000

        def apc_routine(apc):
            space.write_u64(data, space.read_u64(data) + 1)  # how many APCs ran
            yield from ()

        yield UserRoutine(routine, apc_routine)
        interval = data + 0x10 + 8 * (thread.tid % 64)
        for kind, arg, *more in actions:
            if kind == "sleep":
                space.write_u64(interval, -(arg * 156250) & 0xFFFFFFFFFFFFFFFF)
                yield Syscall("NtDelayExecution", (int(more[0]), interval))
            elif kind == "apc":
                yield Syscall("NtQueueApcThread", (NT_CURRENT_THREAD, routine, arg, 0, 0))
            elif kind == "apc_to":
                yield Syscall("NtQueueApcThread", (handles[arg], routine, arg, 0, 0))
            elif kind == "alert":
                yield Syscall("NtTestAlert")
            elif kind == "wait_peer":
                yield Syscall("NtWaitForSingleObject", (handles[arg], 1, 0))
            elif kind == "kill_peer":
                yield Syscall("NtTerminateThread", (handles[arg], 0x600D))
            elif kind == "exit_thread":
                yield Syscall("NtTerminateThread", (NT_CURRENT_THREAD, arg))
            else:
                yield Syscall("NtTerminateProcess", (NT_CURRENT_PROCESS, arg))

    return factory


@pytest.mark.parametrize("cpus, seed", [(1, 21), (2, 22), (4, 23)])
def test_invariants_hold_while_processes_and_threads_exit(cpus, seed):
    m = boot_probe("pinv", {}, cpus=cpus, seed=seed)
    rng = random.Random(seed)
    created = []
    for n in range(6):
        proc = create_process(m, f"worker{n}.exe", m.cids.take(), 4, 1)
        data = proc.peb + 0x40000
        proc.space.map_new(data, 0x1000, user=True)
        count = rng.randint(1, 3)
        handles: list[int] = []
        for i in range(count):
            start_user_thread(m, proc, m.cids.take(),
                              scripted(random_actions(rng, i, count), handles, data),
                              ideal=rng.randrange(cpus))
        table = Struct(m.kspace, "_EPROCESS", proc.eprocess).get("ObjectTable")
        handles += [insert_handle(m, table, t.ethread) for t in proc.threads]
        created.append(proc)
    for _ in range(12):
        m.run(rng.randrange(STEPS_PER_TICK // 4, STEPS_PER_TICK))
        assert m.bugcheck is None
        check(m)
    assert any(p not in m.processes for p in created), "no process exited"
