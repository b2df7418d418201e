"""irp-after-complete: ambsense.sys's sample DPC completes an IRP it already completed (and
the I/O manager freed), because it never clears PendingIrp: 0x44."""

from __future__ import annotations

from machine.events import IOSB_OFFSET, OUTPUT_OFFSET
from machine.types.view import Struct
from tests.library import labkit

NAME = "irp-after-complete"
IRP_TAG = int.from_bytes(b"Irp ", "little")
SOLUTION = [
    "!analyze -v",
    "!irp poi(nt!KiBugCheckData+8)",  # Arg1: not an IRP any more
    "!pool poi(nt!KiBugCheckData+8) 2",  # its block is free
    "s -q ambsense L3000 poi(nt!KiBugCheckData+8)",  # who still holds its address
    "ln ambsense!PendingIrp",
    "!timer",
    "uf ambsense!AmbSampleDpc",
]
RIGHT = ".submit bugcheck=0x44 driver=ambsense.sys routine=AmbSampleDpc cause=use-after-free"
WRONG = ".submit bugcheck=0xC2 driver=nt routine=IofCompleteRequest cause=irp-not-completed"


def test_it_stops_with_0x44_completing_the_freed_irp_again_from_the_dpc():
    m = labkit.stopped(NAME).machine
    assert m.bugcheck.code == 0x44
    irp, reserved2, reserved3, reserved4 = m.bugcheck.params
    assert (reserved2, reserved3, reserved4) == (0, 0, 0)
    # Arg1, the IRP, is the one the driver still keeps in PendingIrp ...
    assert irp == m.kspace.read_u64(m.sym("ambsense!PendingIrp"))
    # ... and its pool block was freed when the first completion reached the caller
    header = Struct(m.kspace, "_POOL_HEADER", irp - 0x10)
    assert header.get("PoolType") == 0 and header.get("PoolTag") == IRP_TAG
    assert Struct(m.kspace, "_IRP", irp).get("Type") != 6  # IO_TYPE_IRP no more
    # The first completion did reach lightmon.exe: status 0, 4 bytes, a sample in lux.
    proc = next(p for p in m.processes if p.image == "lightmon.exe")
    assert proc.space.read_u64(proc.peb + IOSB_OFFSET) == 0
    assert proc.space.read_u64(proc.peb + IOSB_OFFSET + 8) == 4
    assert 320 <= int.from_bytes(proc.space.read(proc.peb + OUTPUT_OFFSET, 4), "little") < 327
    # lightmon is asleep in its one-second wait: it sent nothing since
    kt = Struct(m.kspace, "_KTHREAD", proc.threads[0].ethread)
    assert kt.get("State") == 5 and kt.get("WaitReason") == 4  # Waiting, DelayExecution
    # The bug check came from the timer's DPC on a processor in a DPC, on the idle loop
    prcb = Struct(m.kspace, "_KPRCB", m.processors[m.bugcheck.processor].prcb)
    assert prcb.get("DpcRoutineActive")


def test_the_solution_reveals_the_key_and_is_graded(tmp_path):
    out = labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path)
    parts = labkit.outputs(out)
    analysis = parts[1]
    assert "MULTIPLE_IRP_COMPLETE_REQUESTS (44)" in analysis
    arg1 = next(line for line in analysis.splitlines() if line.startswith("Arg1: "))
    irp = arg1.split()[1].rstrip(",")
    assert arg1.endswith(", The address of the IRP")
    assert "SYMBOL_NAME:  ambsense!AmbSampleDpc+" in analysis
    assert "IMAGE_NAME:  ambsense.sys" in analysis
    stack = [line.split()[-1] for line in analysis.split("STACK_TEXT:")[1].splitlines()[1:5]]
    assert stack[:4] == ["nt!KeBugCheckEx", "nt!IofCompleteRequest+0x3c",
                         stack[2], "nt!KiRetireDpcList+0x51e"]
    assert stack[2].startswith("ambsense!AmbSampleDpc+0x")
    assert parts[2].strip() == "IRP signature does not match, probably not an IRP"
    pool = parts[3].splitlines()
    assert pool[1].startswith(f"*{int(irp, 16) - 0x10:016x} size:")
    assert pool[1].endswith("(Free)      *Irp ")
    hit = parts[4].split()
    assert hit[1] == f"{irp[:8]}`{irp[8:]}"  # the IRP's address, found in the driver's data
    assert f"({hit[0]})   ambsense!PendingIrp" in parts[5]
    assert "ambsense!AmbSampleDpc (DPC @ " in parts[6]  # a periodic timer
    listing = parts[7]
    assert "call    nt!IofCompleteRequest" in listing
    # PendingIrp is read once and never written back (cleared) after the completion
    uses = [line for line in listing.splitlines() if "ambsense!PendingIrp" in line]
    assert len(uses) == 1 and "mov     rax,qword ptr [ambsense!PendingIrp" in uses[0]
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(tmp_path):
    assert labkit.transcript(NAME, SOLUTION, tmp_path / "a") == \
        labkit.transcript(NAME, SOLUTION, tmp_path / "b")
