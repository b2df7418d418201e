"""DPCs, the clock and round-robin scheduling, observed through memory."""

from __future__ import annotations

from machine.ke.dpc import queue_dpc
from machine.machine import STEPS_PER_TICK
from machine.types.view import Struct
from tests.machine.probe import boot_probe, start_system_thread

ROUTINES = {
    "ProbeDpcRoutine": """
    mov rax, cr8
    mov qword ptr [DpcIrql], rax
    lock inc qword ptr [DpcCount]
    ret
""",
    "Spin": """
again:
    pause
    jmp again
""",
    "Recurse": """
    push    rbx
    sub     rsp, 200h
    call    Recurse
    add     rsp, 200h
    pop     rbx
    ret
""",
}
GLOBALS = {"Dpc": 64, "DpcCount": 8, "DpcIrql": 8}


def machine(cpus: int):
    return boot_probe("probe", ROUTINES, GLOBALS, cpus=cpus, seed=3)
def test_a_queued_dpc_sits_in_the_prcb_list_then_runs_at_dispatch_level():
    m = machine(2)
    proc = m.processors[1]
    dpc = m.sym("probe!Dpc")
    d = Struct(m.kspace, "_KDPC", dpc)
    d.set("Type", 0x13)
    d.set("DeferredRoutine", m.sym("probe!ProbeDpcRoutine"))
    assert queue_dpc(m, proc, dpc, 0, 0)
    prcb = Struct(m.kspace, "_KPRCB", proc.prcb)
    assert prcb.get("DpcData[0].DpcList.ListHead.Next") == dpc + 8
    assert prcb.get("DpcData[0].DpcQueueDepth") == 1
    other = Struct(m.kspace, "_KPRCB", m.processors[0].prcb)
    assert other.get("DpcData[0].DpcList.ListHead.Next") == 0
    for _ in range(200):  # step by step: no skipping ahead to the next clock tick
        m._global_step()
    assert m.kspace.read_u64(m.sym("probe!DpcCount")) == 1
    assert m.kspace.read_u64(m.sym("probe!DpcIrql")) == 2  # DISPATCH_LEVEL
    assert prcb.get("DpcData[0].DpcList.ListHead.Next") == 0
    assert prcb.get("DpcData[0].DpcQueueDepth") == 0
    assert proc.irql == 0  # back where the interrupted code was


def test_clock_ticks_and_round_robin_share_one_cpu_between_two_spinners():
    m = machine(1)
    threads = [start_system_thread(m, tid, m.sym("probe!Spin")) for tid in (0x2000, 0x2004)]
    start_tick = m.kspace.read_u64(m.sym("nt!KeTickCount"))
    m.run(STEPS_PER_TICK * 6)
    assert m.kspace.read_u64(m.sym("nt!KeTickCount")) - start_tick == 6
    for t in threads:
        kt = Struct(m.kspace, "_KTHREAD", t.ethread)
        assert kt.get("ContextSwitches") >= 2
        assert kt.get("KernelTime") >= 1
    states = sorted(Struct(m.kspace, "_KTHREAD", t.ethread).get("State") for t in threads)
    assert states == [1, 2]  # one Ready, one Running
    current = Struct(m.kspace, "_KPRCB", m.processors[0].prcb).get("CurrentThread")
    assert current in {t.ethread for t in threads}


def test_same_seed_same_memory_in_any_run():
    import hashlib

    def digest() -> str:
        m = machine(2)
        m.run(STEPS_PER_TICK * 2)
        h = hashlib.sha256()
        for pfn in sorted(m.phys.frames):
            h.update(pfn.to_bytes(8, "little") + bytes(m.phys.frames[pfn]))
        return h.hexdigest()

    assert digest() == digest()


def test_kernel_stack_overflow_into_the_guard_page_is_a_double_fault():
    m = machine(1)
    t = start_system_thread(m, 0x3000, m.sym("probe!Recurse"))
    result = m.run(STEPS_PER_TICK)
    assert result.reason == "bugcheck"
    assert m.bugcheck.code == 0x7F and m.bugcheck.params[0] == 8
    # The handler ran on the double-fault stack, not the exhausted thread stack.
    rsp = m.processors[0].cpu.regs[4]
    kt = Struct(m.kspace, "_KTHREAD", t.ethread)
    assert not kt.get("StackLimit") <= rsp < kt.get("StackBase")


def _spinner(m, tid: int, priority: int, ready: bool = True):
    from machine.ps.create import create_thread

    system = next(p for p in m.processes if p.pid == 4)
    return create_thread(m, system, tid, "nt!KiStartSystemThread", system=True,
                         priority=priority, routine=m.sym("probe!Spin"), ready=ready)


def test_higher_priority_runs_and_lower_waits_in_the_prcb_ready_list():
    m = machine(1)
    low = _spinner(m, 0x6000, 8)
    high = _spinner(m, 0x6004, 12)
    m.run(STEPS_PER_TICK * 4)
    prcb = Struct(m.kspace, "_KPRCB", m.processors[0].prcb)
    assert prcb.get("CurrentThread") == high.ethread
    assert prcb.get("ReadySummary") == 1 << 8
    low_entry = Struct(m.kspace, "_KTHREAD", low.ethread).addr("WaitListEntry")
    assert prcb.get("DispatcherReadyListHead[8].Flink") == low_entry
    assert Struct(m.kspace, "_KTHREAD", low.ethread).get("ContextSwitches") == 0


def test_a_higher_priority_thread_preempts_at_once():
    m = machine(1)
    low = _spinner(m, 0x6000, 8)
    m.run(2000)
    prcb = Struct(m.kspace, "_KPRCB", m.processors[0].prcb)
    assert prcb.get("CurrentThread") == low.ethread
    high = _spinner(m, 0x6004, 15)
    tick = m.tick_count
    m.run(200)
    assert m.tick_count == tick  # no clock interrupt was needed
    assert prcb.get("CurrentThread") == high.ethread
    assert Struct(m.kspace, "_KTHREAD", low.ethread).get("State") == 1  # Ready


def test_affinity_keeps_a_thread_on_its_processors():
    m = machine(2)
    t = _spinner(m, 0x6000, 8, ready=False)
    Struct(m.kspace, "_KTHREAD", t.ethread).set("Affinity.Mask", 0b10)
    m.make_ready(t)
    m.run(STEPS_PER_TICK * 3)
    assert Struct(m.kspace, "_KPRCB", m.processors[1].prcb).get("CurrentThread") == t.ethread
    assert Struct(m.kspace, "_KTHREAD", t.ethread).get("NextProcessor") == 1
