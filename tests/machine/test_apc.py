"""Kernel APCs: queued on the target thread, delivered at APC_LEVEL, then the normal
routine at PASSIVE_LEVEL — observed through memory."""

from __future__ import annotations

from machine.types.view import Struct
from tests.machine.probe import boot_probe, start_system_thread

ROUTINES = {
    "Target": """
t_loop:
    lock inc qword ptr [Spins]
    jmp     t_loop
""",
    "Queuer": """
    sub     rsp, 48h
    mov     qword ptr [rsp+38h], 77h        ; NormalContext
    mov     qword ptr [rsp+30h], 0          ; KernelMode
    lea     rax, [NormalRoutine]
    mov     qword ptr [rsp+28h], rax        ; NormalRoutine
    mov     qword ptr [rsp+20h], 0          ; no RundownRoutine
    lea     r9, [KernelRoutine]
    xor     r8d, r8d                        ; OriginalApcEnvironment
    mov     rdx, qword ptr [TargetThread]
    lea     rcx, [Apc]
    call    nt!KeInitializeApc
    xor     r9d, r9d
    mov     r8d, 2
    mov     edx, 1
    lea     rcx, [Apc]
    call    nt!KeInsertQueueApc
    mov     qword ptr [Queued], rax
q_park:
    pause
    jmp     q_park
""",
    "KernelRoutine": """
    mov     rax, cr8
    mov     qword ptr [KernelIrql], rax
    lock inc qword ptr [KernelRan]
    ret
""",
    "NormalRoutine": """
    mov     rax, cr8
    mov     qword ptr [NormalIrql], rax
    mov     qword ptr [NormalArgs], rcx
    mov     qword ptr [NormalArgs+8], rdx
    mov     qword ptr [NormalArgs+10h], r8
    ret
""",
}
GLOBALS = {"Apc": 0x58, "TargetThread": 8, "Spins": 8, "Queued": 8, "KernelIrql": 8,
           "KernelRan": 8, "NormalIrql": 8, "NormalArgs": 0x18}


def test_a_kernel_apc_interrupts_its_thread_at_apc_level_then_runs_the_normal_routine():
    m = boot_probe("apc", ROUTINES, GLOBALS)
    target = start_system_thread(m, 0x9000, m.sym("apc!Target"))
    m.run(3000)
    spins_before = m.kspace.read_u64(m.sym("apc!Spins"))
    assert spins_before > 0
    m.kspace.write_u64(m.sym("apc!TargetThread"), target.ethread)
    start_system_thread(m, 0x9004, m.sym("apc!Queuer"))
    m.run(5000)
    read = lambda name: m.kspace.read_u64(m.sym(f"apc!{name}"))  # noqa: E731
    assert read("Queued") == 1
    assert read("KernelRan") == 1 and read("KernelIrql") == 1  # APC_LEVEL
    assert read("NormalIrql") == 0  # PASSIVE_LEVEL
    args = [m.kspace.read_u64(m.sym("apc!NormalArgs") + 8 * i) for i in range(3)]
    assert args == [0x77, 1, 2]
    kt = Struct(m.kspace, "_KTHREAD", target.ethread)
    head = kt.addr("ApcState.ApcListHead[0]")
    assert kt.get("ApcState.ApcListHead[0].Flink") == head  # delivered: list empty
    assert kt.get("ApcState.KernelApcPending") == 0
    assert read("Spins") > spins_before  # and the thread went on running
