"""IRPs a driver pends and completes later: the issuing thread waits on the file
object's event, completion reaches it through the IRP's APC, the caller's status block
is filled in — or, if the driver never completes, the thread hangs there."""

from __future__ import annotations

from machine.events import IOSB_OFFSET
from machine.machine import STEPS_PER_TICK
from machine.scenario import boot_scenario, parse_scenario
from machine.types.view import Struct
from tests.machine.probe import (
    TIMER_DPC_GLOBALS,
    client_process,
    client_program,
    complete_pending_irp,
    device_driver,
    init_timer_dpc,
    scenario_header,
)

ROUTINES = {
    "PendDispatch": """
    sub     rsp, 28h
    mov     rax, qword ptr [rdx+0B8h]       ; current stack location
    or      byte ptr [rax+3], 1             ; IoMarkIrpPending
    mov     qword ptr [PendingIrp], rdx
    cmp     dword ptr [rax+18h], 222007h    ; IOCTL_PENDER_COMPLETE_LATER
    jne     pend_only
    lea     r8, [Dpc]
    mov     rdx, -1000000                   ; in 100 ms
    lea     rcx, [Timer]
    call    nt!KeSetTimer
pend_only:
    mov     eax, 103h                       ; STATUS_PENDING
    add     rsp, 28h
    ret
""",
    "CompleteDpc": complete_pending_irp(0x42),
}


def scenario(ioctl: int) -> str:
    return (scenario_header("pender", seed=5)
            + device_driver("pender", "Pender", {0x0: "CreateClose", 0xE: "PendDispatch"},
                            ROUTINES, {"PendingIrp": 8, **TIMER_DPC_GLOBALS},
                            init_timer_dpc("CompleteDpc"))
            + client_program("Pender", [f"{{ ioctl = {ioctl:#x}, device = {{device}} }}"],
                             at_tick=4))


def machine(ioctl: int):
    return boot_scenario(parse_scenario(scenario(ioctl), "pender.toml"))


def client(m):
    proc = client_process(m)
    return proc, proc.threads[0]


def test_a_pended_irp_completed_from_a_dpc_reaches_the_waiting_caller():
    m = machine(0x222007)
    m.run(STEPS_PER_TICK * 5)  # the client has sent the IOCTL; the timer has not fired
    proc, thread = client(m)
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    assert kt.get("State") == 5 and kt.get("WaitReason") == 0  # Waiting, Executive
    irp = m.kspace.read_u64(m.sym("pender!PendingIrp"))
    i = Struct(m.kspace, "_IRP", irp)
    file_obj = i.get("Tail.Overlay.OriginalFileObject")
    block = Struct(m.kspace, "_KWAIT_BLOCK", kt.get("WaitBlockList"))
    assert block.get("Object") == Struct(m.kspace, "_FILE_OBJECT", file_obj).addr("Event")
    et = Struct(m.kspace, "_ETHREAD", thread.ethread)
    assert et.get("IrpList.Flink") == i.addr("ThreadListEntry")
    sl = Struct(m.kspace, "_IO_STACK_LOCATION", i.get("Tail.Overlay.CurrentStackLocation"))
    assert sl.get("Control") & 1  # SL_PENDING_RETURNED
    m.run(STEPS_PER_TICK * 10)  # the timer's DPC completes it
    iosb = proc.peb + IOSB_OFFSET
    assert proc.space.read_u64(iosb) == 0 and proc.space.read_u64(iosb + 8) == 0x42
    assert et.get("IrpList.Flink") == et.addr("IrpList")  # no IRP left on the thread
    header = Struct(m.kspace, "_POOL_HEADER", irp - 0x10)  # freed, perhaps reused since
    assert header.get("PoolType") == 0 or header.get("PoolTag") != 0x20707249  # 'Irp '
    # the caller went on to its next system call: a UserRequest wait
    assert kt.get("State") == 5 and kt.get("WaitReason") == 6
    assert m.bugcheck is None


def test_an_irp_never_completed_leaves_its_thread_waiting_with_the_irp():
    m = machine(0x222003)
    m.run(STEPS_PER_TICK * 40)
    _, thread = client(m)
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    assert kt.get("State") == 5 and kt.get("WaitReason") == 0
    irp = m.kspace.read_u64(m.sym("pender!PendingIrp"))
    et = Struct(m.kspace, "_ETHREAD", thread.ethread)
    assert et.get("IrpList.Flink") == Struct(m.kspace, "_IRP", irp).addr("ThreadListEntry")
    assert m.bugcheck is None
