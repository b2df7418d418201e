"""worker-null: stortlm.sys's collector thread reads through a NULL context field (0x7E)."""

from __future__ import annotations

from machine.boot import BOOT_TICKS
from machine.types.view import Struct
from tests.library import labkit

NAME = "worker-null"
SOLUTION = [
    "!analyze -v",
    ".exr poi(nt!KiBugCheckData+0x18)",  # Arg3: the exception record
    ".cxr poi(nt!KiBugCheckData+0x20)",  # Arg4: the context record
    "k",
    "uf stortlm!StTmTakeSample",
    "dq poi(@rsp+0x20) L5",  # the routine's Context parameter, from its home slot
    "!pool poi(@rsp+0x20) 2",
]
RIGHT = ".submit bugcheck=0x7E driver=stortlm.sys routine=StTmTakeSample cause=null-deref"
WRONG = ".submit bugcheck=0x1E driver=nt routine=KiPageFault cause=use-after-free"


def test_it_stops_with_0x7e_reading_through_the_null_volume_counters():
    m = labkit.stopped(NAME).machine
    assert m.bugcheck.code == 0x7E
    status, ip, record, context = m.bugcheck.params
    assert status == 0xC0000005  # STATUS_ACCESS_VIOLATION
    take = m.sym("stortlm!StTmTakeSample")
    assert take < ip < take + 0x40  # the faulting instruction, in StTmTakeSample
    er = Struct(m.kspace, "_EXCEPTION_RECORD", record)
    assert er.get("ExceptionCode") & 0xFFFFFFFF == 0xC0000005
    assert er.get("ExceptionAddress") == ip
    # a read (Information[0] = 0) of address 0
    assert er.get("ExceptionInformation[0]") == 0 and er.get("ExceptionInformation[1]") == 0
    ctx = Struct(m.kspace, "_CONTEXT", context)
    assert ctx.get("Rip") == ip and ctx.get("Rax") == 0
    # the collector's context: signature 'StTm', VolumeCounters (+0x18) never set
    collector = m.kspace.read_u64(m.sym("stortlm!Collector"))
    assert m.kspace.read(collector, 4) == b"StTm"
    assert m.kspace.read_u64(collector + 0x18) == 0
    assert m.kspace.read_u64(collector + 0x10) == 0  # no sample was ever taken
    # in a System thread started on StTmCollectorThread, 16 ticks after the IOCTL
    thread = next(t for t in m.threads if Struct(m.kspace, "_ETHREAD", t.ethread)
                  .get("StartAddress") == m.sym("stortlm!StTmCollectorThread"))
    assert Struct(m.kspace, "_ETHREAD", thread.ethread).get("Cid.UniqueProcess") == 4
    assert m.tick_count - BOOT_TICKS == 36


def test_the_solution_reveals_the_key_and_is_graded(tmp_path):
    out = labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path)
    parts = labkit.outputs(out)
    analysis = parts[1]
    assert "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED (7e)" in analysis
    assert "Arg1: 00000000c0000005, The exception code that wasn't handled." in analysis
    assert "SYMBOL_NAME:  stortlm!StTmTakeSample+" in analysis
    assert "IMAGE_NAME:  stortlm.sys" in analysis
    exr = parts[2].splitlines()
    assert exr[0].startswith("ExceptionAddress: ") and "(stortlm!StTmTakeSample+" in exr[0]
    assert "   ExceptionCode: c0000005 (Access violation)" in exr
    assert exr[-1] == "Attempt to read from address 0000000000000000"
    cxr = parts[3]
    assert cxr.startswith("rax=0000000000000000 ")
    assert "mov     rax,qword ptr [rax] ds:002b:00000000`00000000=????????????????" in cxr
    frames = [line.split()[-1] for line in parts[4].splitlines()[2:]]
    assert frames[0].startswith("stortlm!StTmTakeSample+0x")
    assert frames[1].startswith("stortlm!StTmCollectorThread+0x")
    assert frames[2:] == ["nt!PspSystemThreadStartup+0x55", "nt!KiStartSystemThread+0x28"]
    assert "mov     ecx,18h" in parts[5]  # the field at +0x18 is what it dereferences
    words = parts[6].split()
    assert words[1:3] == ["00000000`6d547453", "00000000`000000fa"]  # 'StTm', 250 ms
    assert words[4:6] == ["00000000`00000000", "00000000`00000000"]  # Samples, +0x18: NULL
    assert parts[7].splitlines()[1].endswith("(Allocated) *StTm")
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(tmp_path):
    assert labkit.transcript(NAME, SOLUTION, tmp_path / "a") == \
        labkit.transcript(NAME, SOLUTION, tmp_path / "b")
