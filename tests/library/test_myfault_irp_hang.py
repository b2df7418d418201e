"""myfault-irp-hang: an IOCTL IRP pended by myfault and never completed; the caller
waits forever (a live hang, no crash)."""

from __future__ import annotations

from machine.types.view import Struct
from tests.library import labkit

NAME = "myfault-irp-hang"
RIGHT = ".submit driver=myfault.sys routine=MyfaultDeviceControl cause=irp-not-completed " \
        "process=notmyfault64.exe ioctl=0x22201B"
WRONG = ".submit driver=nt routine=KeWaitForSingleObject cause=deadlock " \
        "process=explorer.exe ioctl=0x222007"
IOCTL = 0x22201B
SL_PENDING_RETURNED = 0x01
WAITING, EXECUTIVE = 5, 0


def _stopped():
    m = labkit.stopped(NAME).machine
    assert m.bugcheck is None
    return m


def _client(m):
    proc = next(p for p in m.processes if p.image == "notmyfault64.exe")
    return proc, proc.threads[0]


def _irp(m) -> Struct:
    """The one IRP on the client thread's IRP list."""
    _, thread = _client(m)
    et = Struct(m.kspace, "_ETHREAD", thread.ethread)
    entry = et.get("IrpList.Flink")
    assert entry != et.addr("IrpList")
    assert m.kspace.read_u64(entry) == et.addr("IrpList")  # only one
    offset = Struct(m.kspace, "_IRP", 0).addr("ThreadListEntry")
    return Struct(m.kspace, "_IRP", entry - offset)


def solution(m) -> list[str]:
    return ["!process 0 7 notmyfault64.exe", f"!irp {_irp(m).address:x}", "!irpfind",
            r"!drvobj \Driver\myfault 2", "uf myfault!MyfaultDeviceControl"]


def test_the_client_thread_still_waits_for_the_pended_irp_at_tick_300():
    m = _stopped()
    assert m.tick_count >= 300
    proc, thread = _client(m)
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    assert kt.get("State") == WAITING and kt.get("WaitReason") == EXECUTIVE
    assert m.tick_count - kt.get("WaitTime") > 250  # since just after tick 10
    irp = _irp(m)
    file_obj = Struct(m.kspace, "_FILE_OBJECT", irp.get("Tail.Overlay.OriginalFileObject"))
    block = Struct(m.kspace, "_KWAIT_BLOCK", kt.get("WaitBlockList"))
    assert block.get("Object") == file_obj.addr("Event")  # synchronous I/O: the file's event
    assert Struct(m.kspace, "_KEVENT", file_obj.addr("Event")).get("Header.SignalState") == 0
    sl = Struct(m.kspace, "_IO_STACK_LOCATION", irp.get("Tail.Overlay.CurrentStackLocation"))
    assert sl.get("MajorFunction") == 0x0E  # IRP_MJ_DEVICE_CONTROL
    assert sl.get("Parameters.DeviceIoControl.IoControlCode") == IOCTL
    assert sl.get("DeviceObject") == m.kspace.read_u64(m.sym("myfault!DeviceObject"))
    assert sl.get("Control") & SL_PENDING_RETURNED  # the driver returned STATUS_PENDING
    assert irp.get("CancelRoutine") == 0  # nothing could cancel it ...
    queue = m.sym("myfault!NotifyQueue")
    assert m.kspace.read_u64(queue) == queue  # ... nor complete it from a queue
    assert int.from_bytes(m.kspace.read(m.sym("myfault!PendedCount"), 4), "little") == 1


def test_the_solution_reveals_the_key_and_is_graded(tmp_path):
    m = _stopped()
    irp = _irp(m).address
    out = labkit.transcript(NAME, [*solution(m), RIGHT, WRONG], tmp_path)
    parts = labkit.outputs(out)
    assert "Break instruction exception - code 80000003 (first chance)" in parts[0]
    process = parts[1]
    assert "Image: notmyfault64.exe" in process
    assert "WAIT: (Executive) UserMode Non-Alertable" in process
    assert f"{irp:x}: (0006,0118)" in process  # the thread's IRP list
    assert "nt!IopSynchronousServiceTail+" in process and "nt!NtDeviceIoControlFile+" in process
    irp_out = parts[2]
    assert ">[IRP_MJ_DEVICE_CONTROL(e), N/A(0)]" in irp_out
    assert "pending" in irp_out and r"\Driver\myfault" in irp_out
    assert "0x22201b" in irp_out  # the IOCTL code in the stack location's Args
    assert f"{irp:016x} [" in parts[3] and r"[ \Driver\myfault]" in parts[3]  # !irpfind
    assert "IRP_MJ_DEVICE_CONTROL" in parts[4] and "myfault!MyfaultDeviceControl" in parts[4]
    assert "mov     eax,103h" in parts[5]  # uf: returns STATUS_PENDING ...
    assert "IofCompleteRequest" in parts[5]  # ... completing only the other path
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(tmp_path):
    commands = solution(_stopped())
    assert labkit.transcript(NAME, commands, tmp_path / "a") == \
        labkit.transcript(NAME, commands, tmp_path / "b")
