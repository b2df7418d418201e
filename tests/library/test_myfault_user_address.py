"""myfault-user-address: a METHOD_NEITHER caller's pointer written from a timer DPC, in
an idle thread's context, at DISPATCH_LEVEL (0xD1 with a user-mode Arg1)."""

from __future__ import annotations

from machine.events import OUTPUT_OFFSET
from machine.types.view import Struct
from tests.library import labkit

NAME = "myfault-user-address"
SOLUTION = ["!analyze -v", "k", "!process 0 0 notmyfault64.exe", "!irp poi(myfault!PendingIrp)",
            "!thread poi(poi(myfault!PendingIrp)+98)"]
RIGHT = ".submit bugcheck=0xD1 driver=myfault.sys routine=MyfaultCompletionDpc " \
        "cause=user-address process=notmyfault64.exe ioctl=0x222043"
WRONG = ".submit bugcheck=0xA driver=nt routine=KiPageFault cause=paged-at-dispatch " \
        "process=explorer.exe ioctl=0x222003"
IOCTL = 0x222043  # CTL_CODE(FILE_DEVICE_UNKNOWN, 0x810, METHOD_NEITHER, FILE_ANY_ACCESS)


def test_the_dpc_writes_the_callers_user_buffer_in_an_idle_threads_context():
    m = labkit.stopped(NAME).machine
    code, (address, irql, write, ip) = m.bugcheck.code, m.bugcheck.params
    assert code == 0xD1
    caller = next(p for p in m.processes if p.image == "notmyfault64.exe")
    assert address == caller.peb + OUTPUT_OFFSET < 0x7FFFFFFFFFFF  # the caller's buffer
    assert irql == 2 and write == 1  # DISPATCH_LEVEL, a write
    dpc = m.sym("myfault!MyfaultCompletionDpc")
    assert dpc < ip < dpc + 0x80  # the instruction that wrote it
    # The IRP the driver kept: still pending, sent by notmyfault64.exe's thread, whose
    # buffer is the address; the crashing processor runs its idle thread instead.
    irp = Struct(m.kspace, "_IRP", m.kspace.read_u64(m.sym("myfault!PendingIrp")))
    assert irp.get("UserBuffer") == address
    stack = Struct(m.kspace, "_IO_STACK_LOCATION", irp.get("Tail.Overlay.CurrentStackLocation"))
    assert stack.get("Parameters.DeviceIoControl.IoControlCode") == IOCTL
    thread = Struct(m.kspace, "_KTHREAD", irp.get("Tail.Overlay.Thread"))
    assert thread.get("Process") == caller.eprocess
    cpu = m.processors[m.bugcheck.processor]
    assert cpu.current is cpu.idle
    assert not caller.space.read_u64(address)  # never written: the fault came first


def test_the_solution_reveals_the_key_and_is_graded(tmp_path):
    out = labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path)
    parts = labkit.outputs(out)
    analyze, stack, process, irp, thread = parts[1:6]
    assert "DRIVER_IRQL_NOT_LESS_OR_EQUAL (d1)" in analyze
    assert "SYMBOL_NAME:  myfault!MyfaultCompletionDpc+" in analyze
    assert "IMAGE_NAME:  myfault.sys" in analyze
    assert "Arg2: 0000000000000002, IRQL" in analyze
    assert "PROCESS_NAME:  Idle" in analyze
    user = next(line.split()[1] for line in analyze.splitlines()
                if line.startswith("WRITE_ADDRESS:"))
    assert user.startswith("000000")  # a user-mode address
    assert "nt!KiRetireDpcList" in stack and "nt!KiIdleLoop" in stack  # a DPC, on idle
    peb = next(line.split("Peb: ")[1].split()[0] for line in process.splitlines()
               if "Peb:" in line)
    assert int(user, 16) & ~0xFFF == int(peb, 16)  # in notmyfault64.exe's PEB page
    assert "Image: notmyfault64.exe" in process
    assert "pending" in irp and "0x222043" in irp and "\\Driver\\myfault" in irp
    assert "Image:         notmyfault64.exe" in thread
    assert "nt!NtDeviceIoControlFile" in thread  # still waiting for the request
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(tmp_path):
    assert labkit.transcript(NAME, SOLUTION, tmp_path / "a") == \
        labkit.transcript(NAME, SOLUTION, tmp_path / "b")
