"""User-mode APCs: NtQueueApcThread puts a KAPC on the target's ApcListHead[1]; only an
alertable wait from user mode (or NtTestAlert) lets it in; it runs on the way back to user
mode, the trap frame sent to ntdll!KiUserApcDispatcher with the interrupted context saved
on the user stack, and NtContinue resumes the interrupted call — observed in memory."""

from __future__ import annotations

from machine.events import APC_CONTEXT_OFFSET, APC_COUNT_OFFSET
from machine.ke.userapc import KI_USER_APC_DISPATCHER_RVA
from machine.machine import STEPS_PER_TICK
from machine.ob.object import insert_handle, lookup_handle
from machine.ps.create import create_event, image_base
from machine.ps.usermode import Syscall, UserRoutine, stub_address, user_stack_top
from machine.scenario import boot_scenario, parse_scenario
from machine.types.view import Struct
from tests.machine.probe import boot_probe, scenario_header
from tests.machine.user_programs import UNSET, delay, run_until, user_process

WAITING, DELAY_EXECUTION, USER_REQUEST, USER_MODE = 5, 4, 6, 1
STATUS_USER_APC = 0xC0


def test_a_user_apc_waits_on_list_1_through_a_non_alertable_wait_and_runs_at_an_alertable_one():
    m = boot_probe("uapc", {})
    routine = image_base(0x1000) + 0x2000
    ran: list[tuple[int, int, int]] = []

    def target(m, thread, handles, data):
        def apc_routine(apc):
            ran.append((apc.context, apc.argument1, apc.argument2))
            yield from ()

        yield UserRoutine(routine, apc_routine)
        space = thread.process.space
        status = yield Syscall("NtDelayExecution", (0, delay(space, data + 0x100, 4)))
        space.write_u64(data, status)  # the non-alertable delay's status
        status = yield Syscall("NtDelayExecution", (1, delay(space, data + 0x108, 400)))
        space.write_u64(data + 8, status)  # the alertable one's

    def queuer(m, thread, handles, data):
        space = thread.process.space
        yield Syscall("NtDelayExecution", (0, delay(space, data + 0x110, 1)))
        status = yield Syscall("NtQueueApcThread", (handles["target"], routine, 0x11, 0x22,
                                                    0x33))
        space.write_u64(data + 0x10, status)

    proc, threads, data = user_process(m, "apcs.exe", {"target": target, "queuer": queuer})
    space = proc.space
    run_until(m, lambda: space.read_u64(data + 0x10) != UNSET)
    assert space.read_u64(data + 0x10) == 0  # STATUS_SUCCESS
    kt = Struct(m.kspace, "_KTHREAD", threads["target"].ethread)
    # Still in its non-alertable delay: the APC waits on the user-mode list.
    assert kt.get("State") == WAITING and kt.get("WaitReason") == DELAY_EXECUTION
    assert kt.get("WaitMode") == USER_MODE and kt.get("Alertable") == 0
    head = kt.addr("ApcState.ApcListHead[1]")
    entry = kt.get("ApcState.ApcListHead[1].Flink")
    assert entry != head and m.kspace.read_u64(entry) == head  # exactly one APC
    apc = Struct(m.kspace, "_KAPC", entry - 0x10)
    assert apc.get("ApcMode") == USER_MODE and apc.get("Inserted") == 1
    assert apc.get("Thread") == threads["target"].ethread
    assert apc.get("NormalRoutine") == routine and apc.get("NormalContext") == 0x11
    assert (apc.get("SystemArgument1"), apc.get("SystemArgument2")) == (0x22, 0x33)
    assert kt.get("ApcState.UserApcPending") == 0
    assert kt.get("ApcState.ApcListHead[0].Flink") == kt.addr("ApcState.ApcListHead[0]")
    run_until(m, lambda: space.read_u64(data + 8) != UNSET)
    assert space.read_u64(data) == 0  # the non-alertable delay ran its course
    assert space.read_u64(data + 8) == STATUS_USER_APC  # the alertable one ended at once
    assert ran == [(0x11, 0x22, 0x33)]
    assert kt.get("ApcState.ApcListHead[1].Flink") == head
    assert kt.get("ApcState.UserApcPending") == 0
    assert m.bugcheck is None


def test_an_alertable_wait_ends_with_user_apc_and_the_apc_runs_through_the_dispatcher():
    m = boot_probe("uapc", {})
    routine = image_base(0x1000) + 0x2100
    seen: dict[str, int] = {}

    def target(m, thread, handles, data):
        space = thread.process.space

        def apc_routine(apc):
            # What the dispatcher finds as it starts: read from memory at that moment.
            tf = Struct(m.kspace, "_KTRAP_FRAME",
                        Struct(m.kspace, "_KTHREAD", thread.ethread).get("TrapFrame"))
            seen.update(tf_rip=tf.get("Rip"), tf_rsp=tf.get("Rsp"),
                        record=apc.context_record)
            yield Syscall("NtDelayExecution", (0, delay(space, data + 0x120, 1)))

        yield UserRoutine(routine, apc_routine)
        table = Struct(m.kspace, "_EPROCESS", thread.process.eprocess).get("ObjectTable")
        event = insert_handle(m, table, create_event(m))  # never signaled
        status = yield Syscall("NtWaitForSingleObject", (event, 1, 0))
        space.write_u64(data, status)
        yield Syscall("NtDelayExecution", (0, delay(space, data + 0x128, 400)))

    def queuer(m, thread, handles, data):
        space = thread.process.space
        yield Syscall("NtDelayExecution", (0, delay(space, data + 0x110, 2)))
        yield Syscall("NtQueueApcThread", (handles["target"], routine, 0x44, 0x55, 0x66))

    proc, threads, data = user_process(m, "apcs.exe", {"target": target, "queuer": queuer})
    space = proc.space
    thread = threads["target"]
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    run_until(m, lambda: kt.get("State") == WAITING and kt.get("WaitReason") == USER_REQUEST)
    assert kt.get("Alertable") == 1 and kt.get("WaitMode") == USER_MODE
    run_until(m, lambda: space.read_u64(data) != UNSET)
    assert space.read_u64(data) == STATUS_USER_APC
    # At delivery the trap frame returned to ntdll!KiUserApcDispatcher, rsp at a CONTEXT.
    assert seen["tf_rip"] == m.layout.ntdll_base + KI_USER_APC_DISPATCHER_RVA
    record = seen["record"]
    assert seen["tf_rsp"] == record and record % 16 == 0
    ctx = Struct(space, "_CONTEXT", record)
    assert ctx.get("P4Home") == routine  # NormalRoutine
    assert (ctx.get("P1Home"), ctx.get("P2Home"), ctx.get("P3Home")) == (0x44, 0x55, 0x66)
    # ... and the context is the interrupted call's: its stub, its status, its stack.
    top = user_stack_top(thread.tid)
    assert ctx.get("Rip") == stub_address(m, "NtWaitForSingleObject")
    assert ctx.get("Rax") == STATUS_USER_APC and ctx.get("Rsp") == top
    frame = Struct(space, "_MACHINE_FRAME", record + m.catalog.get("_CONTEXT").size)
    assert frame.get("Rip") == ctx.get("Rip") and frame.get("Rsp") == top
    # NtContinue put the stack back: the program's next call starts from the old rsp.
    run_until(m, lambda: kt.get("State") == WAITING and kt.get("WaitReason") == DELAY_EXECUTION
              and Struct(m.kspace, "_KTRAP_FRAME", kt.get("TrapFrame")).get("Rip")
              == stub_address(m, "NtDelayExecution")
              and Struct(m.kspace, "_KTRAP_FRAME", kt.get("TrapFrame")).get("Rsp") == top)
    assert m.bugcheck is None


SCRIPT = scenario_header("uapcs") + """
[[event]]
at_tick = 2
action = "start_process"
image = "sleeper.exe"
program = [
    { queue_apc = 7 },
    { test_alert = true },
    { queue_apc = 9 },
    { sleep_ms = 5000, alertable = true },
    { queue_apc = 11 },
    { sleep_ms = 40 },
]
"""


def test_nt_test_alert_and_an_alertable_sleep_run_a_program_s_queued_apcs():
    m = boot_scenario(parse_scenario(SCRIPT, "uapcs.toml"))
    m.run(STEPS_PER_TICK * 12)
    proc = next(p for p in m.processes if p.image == "sleeper.exe")
    # 7 ran at NtTestAlert, 9 cut the five-second sleep short; 11, queued before a
    # non-alertable sleep, is still waiting on the list.
    assert proc.space.read_u64(proc.peb + APC_COUNT_OFFSET) == 2
    assert proc.space.read_u64(proc.peb + APC_CONTEXT_OFFSET) == 9
    thread = proc.threads[0]
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    apc = Struct(m.kspace, "_KAPC", kt.get("ApcState.ApcListHead[1].Flink") - 0x10)
    assert apc.get("NormalContext") == 11 and apc.get("Inserted") == 1
    assert m.bugcheck is None


def test_timed_waits_end_with_timeout_and_an_apc_ends_one_early_without_a_timer_left():
    m = boot_probe("uapc", {})
    routine = image_base(0x1000) + 0x2200

    def nothing(apc):
        yield from ()

    def target(m, thread, handles, data):
        space = thread.process.space
        yield UserRoutine(routine, nothing)
        table = Struct(m.kspace, "_EPROCESS", thread.process.eprocess).get("ObjectTable")
        event = insert_handle(m, table, create_event(m))  # never signaled
        space.write_u64(data + 0x30, event)
        space.write_u64(data + 0x100, 0)  # a zero timeout: only a test of the event
        space.write_u64(data, (yield Syscall("NtWaitForSingleObject", (event, 0, data + 0x100))))
        space.write_u64(data + 0x20, m.tick_count)
        timeout = delay(space, data + 0x108, 2)
        space.write_u64(data + 8, (yield Syscall("NtWaitForSingleObject", (event, 0, timeout))))
        space.write_u64(data + 0x28, m.tick_count)
        timeout = delay(space, data + 0x110, 400)
        space.write_u64(data + 0x10, (yield Syscall("NtWaitForSingleObject", (event, 1, timeout))))

    def queuer(m, thread, handles, data):
        space = thread.process.space
        yield Syscall("NtDelayExecution", (0, delay(space, data + 0x118, 6)))
        yield Syscall("NtQueueApcThread", (handles["target"], routine, 0, 0, 0))

    proc, threads, data = user_process(m, "timed.exe", {"target": target, "queuer": queuer})
    space = proc.space
    kt = Struct(m.kspace, "_KTHREAD", threads["target"].ethread)
    run_until(m, lambda: space.read_u64(data + 8) != UNSET)
    assert space.read_u64(data) == 0x102  # STATUS_TIMEOUT, without waiting
    assert space.read_u64(data + 8) == 0x102
    assert 2 <= space.read_u64(data + 0x28) - space.read_u64(data + 0x20) <= 3  # ticks
    run_until(m, lambda: kt.get("State") == WAITING and kt.get("Alertable") == 1)
    # A timed wait: the object's wait block, and the thread's timer's.
    timer = Struct(m.kspace, "_KTIMER", kt.addr("Timer"))
    assert timer.get("Header.WaitListHead.Flink") == kt.addr("WaitBlock[3]")
    assert timer.get("TimerListEntry.Flink") != timer.addr("TimerListEntry")  # set
    run_until(m, lambda: space.read_u64(data + 0x10) != UNSET)
    assert space.read_u64(data + 0x10) == STATUS_USER_APC
    assert timer.get("TimerListEntry.Flink") == timer.addr("TimerListEntry")  # cancelled
    assert timer.get("Header.WaitListHead.Flink") == timer.addr("Header.WaitListHead")
    table = Struct(m.kspace, "_EPROCESS", proc.eprocess).get("ObjectTable")
    event = Struct(m.kspace, "_DISPATCHER_HEADER",
                   lookup_handle(m, table, space.read_u64(data + 0x30)))
    assert event.get("WaitListHead.Flink") == event.addr("WaitListHead")
    assert m.bugcheck is None
