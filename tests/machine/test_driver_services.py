"""Small Ke services, observed in memory: spin locks taken and freed at DISPATCH_LEVEL
(the lock word, KPCR.Irql), critical regions (_KTHREAD.KernelApcDisable), the
processor stall (time moves on while the thread spins) and the tick count."""

from __future__ import annotations

from machine.types.view import Struct
from tests.machine.probe import boot_probe, start_system_thread

GLOBALS = {"TheLock": 8, "Go": 8, "Stage": 8, "Irql": 8, "Before": 8, "After": 8}


def wait_go(label: str, value: int) -> str:
    """Publish `value` in Stage, then spin until the test sets Go to it."""
    return f"""
    mov     qword ptr [Stage], {value}
{label}:
    pause
    cmp     qword ptr [Go], {value}
    jb      {label}
"""


ROUTINES = {
    # At DISPATCH_LEVEL: acquire, hold until Go 1, release, hold the IRQL until Go 2.
    "Holder": """
    sub     rsp, 28h
    call    nt!KeRaiseIrqlToDpcLevel
    lea     rcx, [TheLock]
    call    nt!KeAcquireSpinLockAtDpcLevel
""" + wait_go("held", 1) + """
    lea     rcx, [TheLock]
    call    nt!KeReleaseSpinLockFromDpcLevel
""" + wait_go("released", 2) + """
    xor     ecx, ecx
    call    nt!KeLowerIrql
park:
    pause
    jmp     park
""",
    # At DISPATCH_LEVEL too: waits for the lock the Holder has, then takes it.
    "Contender": """
    sub     rsp, 28h
    call    nt!KeRaiseIrqlToDpcLevel
    lea     rcx, [TheLock]
    call    nt!KeAcquireSpinLockAtDpcLevel
    mov     qword ptr [After], 1
    lea     rcx, [TheLock]
    call    nt!KeReleaseSpinLockFromDpcLevel
    xor     ecx, ecx
    call    nt!KeLowerIrql
c_park:
    pause
    jmp     c_park
""",
    # At PASSIVE_LEVEL, wrongly: the lock is taken and the IRQL stays where it was.
    "Passive": """
    sub     rsp, 28h
    lea     rcx, [TheLock]
    call    nt!KeAcquireSpinLockAtDpcLevel
    call    nt!KeGetCurrentIrql
    mov     qword ptr [Irql], rax
    mov     qword ptr [Stage], 1
p_park:
    pause
    jmp     p_park
""",
    "Critical": """
    sub     rsp, 28h
    call    nt!KeEnterCriticalRegion
    call    nt!KeEnterCriticalRegion
""" + wait_go("two", 1) + """
    call    nt!KeLeaveCriticalRegion
""" + wait_go("one", 2) + """
    call    nt!KeLeaveCriticalRegion
""" + wait_go("none", 3) + """
cr_park:
    pause
    jmp     cr_park
""",
    # Ticks before and after a stall of 32000 us (just over two ticks of 15625 us).
    "Staller": """
    sub     rsp, 28h
    lea     rcx, [Before]
    call    nt!KeQueryTickCount
    mov     ecx, 32000
    call    nt!KeStallExecutionProcessor
    lea     rcx, [After]
    call    nt!KeQueryTickCount
    mov     qword ptr [Stage], 1
s_park:
    pause
    jmp     s_park
""",
}


def boot():
    m = boot_probe("kesv", ROUTINES, GLOBALS)
    assert m.bugcheck is None
    return m


def g(m, name: str) -> int:
    return m.kspace.read_u64(m.sym(f"kesv!{name}"))


def go(m, value: int) -> None:
    m.kspace.write_u64(m.sym("kesv!Go"), value)


def pcr_irql(m, processor: int) -> int:
    return Struct(m.kspace, "_KPCR", m.processors[processor].pcr).get("Irql")


def run_to_stage(m, stage: int, limit: int = 20_000) -> None:
    for _ in range(limit // 100):
        if g(m, "Stage") >= stage:
            return
        m.run(100)
    raise AssertionError(f"stage {stage} not reached (at {g(m, 'Stage')})")


def in_routine(m, processor: int, name: str) -> bool:
    cpu = m.processors[processor].cpu
    entry = m.sym(f"nt!{name}")
    return entry <= cpu.rip < entry + m.natives[entry].size


def test_spin_lock_at_dpc_level_holds_the_word_and_leaves_the_irql_alone():
    m = boot()
    start_system_thread(m, 0x4000, m.sym("kesv!Holder"), ideal=0)
    run_to_stage(m, 1)
    assert g(m, "TheLock") == 1 and pcr_irql(m, 0) == 2
    start_system_thread(m, 0x4004, m.sym("kesv!Contender"), ideal=1)
    m.run(2000)
    # The contender spins inside the acquire on processor 1 while the lock is held.
    assert in_routine(m, 1, "KeAcquireSpinLockAtDpcLevel") and pcr_irql(m, 1) == 2
    assert g(m, "After") == 0
    go(m, 1)
    run_to_stage(m, 2)
    assert pcr_irql(m, 0) == 2  # released, still at DISPATCH_LEVEL
    m.run(2000)
    assert g(m, "After") == 1 and g(m, "TheLock") == 0  # the contender took it and freed it


def test_spin_lock_at_dpc_level_called_at_passive_level_does_not_raise():
    m = boot()
    start_system_thread(m, 0x4000, m.sym("kesv!Passive"))
    run_to_stage(m, 1)
    assert g(m, "TheLock") == 1 and g(m, "Irql") == 0


def test_critical_regions_count_kernel_apc_disable_down_and_up():
    m = boot()
    thread = start_system_thread(m, 0x4000, m.sym("kesv!Critical"))
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    assert kt.get("KernelApcDisable") == 0
    run_to_stage(m, 1)
    assert kt.get("KernelApcDisable") == -2 and kt.get("SpecialApcDisable") == 0
    go(m, 1)
    run_to_stage(m, 2)
    assert kt.get("KernelApcDisable") == -1
    go(m, 2)
    run_to_stage(m, 3)
    assert kt.get("KernelApcDisable") == 0


def test_stall_spins_in_place_while_the_clock_moves_on():
    m = boot()
    start_system_thread(m, 0x4000, m.sym("kesv!Staller"), ideal=0)
    m.run(20_000)
    assert g(m, "Stage") == 0 and in_routine(m, 0, "KeStallExecutionProcessor")
    run_to_stage(m, 1, limit=40_000)
    before, after = g(m, "Before"), g(m, "After")
    assert 2 <= after - before <= 3  # 32000 us: two or three clock ticks went by
    assert before <= after <= m.kspace.read_u64(m.sym("nt!KeTickCount"))
