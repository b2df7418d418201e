"""!analyze -v on the crashes the scenario library produces: the exception's records and
context for 0x7E and 0x3B, the trap frame the stop came from (or none), a NULL
instruction pointer, the storming ISR, the one trap of 0x7F, 0x1E's exception
parameters, and an image-only culprit.  Each compares the analysis with the machine's
memory at the stop."""

from __future__ import annotations

from functools import cache

from commands.analyze import analyze
from commands.session import Session
from kdsim.live import LiveTarget
from machine.types.view import Struct
from tests.conftest import run
from tests.library import labkit


@cache
def _lab(name: str):
    """(machine at the lab's stop, its `!analyze -v` lines, the analysis), once per lab."""
    m = labkit.stopped(name).machine
    s = Session(LiveTarget(m))
    return m, run(s, "!analyze -v"), analyze(s)


def _value(out: list[str], label: str) -> str:
    return next(line for line in out if line.startswith(label)).removeprefix(label).strip()


def _trap_rip(m, out: list[str]) -> int:
    """The rip of the trap frame TRAP_FRAME names, read from its _KTRAP_FRAME."""
    tf = int(_value(out, "TRAP_FRAME:").split()[0], 16)
    return Struct(m.kspace, "_KTRAP_FRAME", tf).get("Rip")


def test_0x7e_shows_the_exception_record_and_context_and_walks_the_context():
    m, out, _ = _lab("worker-null")
    _, ip, record, context = m.bugcheck.params
    assert f"EXCEPTION_RECORD:  {record:016x} -- (.exr 0x{record:016x})" in out
    assert f"CONTEXT:  {context:016x} -- (.cxr 0x{context:016x})" in out
    i = out.index(f"CONTEXT:  {context:016x} -- (.cxr 0x{context:016x})")
    ctx = Struct(m.kspace, "_CONTEXT", context)
    assert f"rip={ctx.get('Rip'):016x} rsp={ctx.get('Rsp'):016x}" in out[i + 3]
    assert out[i + 8].startswith("cs=0010  ss=0018")  # .cxr's layout: the segment line
    code = Struct(m.kspace, "_EXCEPTION_RECORD", record).get("ExceptionCode") & 0xFFFFFFFF
    assert f"   ExceptionCode: {code:08x} (Access violation)" in out
    assert not any(line.startswith("TRAP_FRAME:") for line in out)
    assert f"STACK_COMMAND:  .cxr 0x{context:016x} ; kb" in out
    stack = out[out.index("STACK_TEXT:  ") + 1:]
    assert stack[0].startswith(f"{ctx.get('Rsp') >> 32:08x}`{ctx.get('Rsp') & 0xFFFFFFFF:08x}")
    assert stack[0].endswith("stortlm!StTmTakeSample+0x23")
    assert ctx.get("Rip") == ip
    assert "SYMBOL_NAME:  stortlm!StTmTakeSample+23" in out


def test_0x3b_shows_its_context_record_and_no_exception_record():
    m, out, _ = _lab("myfault-stack-trash")
    context = m.bugcheck.params[2]
    assert f"CONTEXT:  {context:016x} -- (.cxr 0x{context:016x})" in out
    assert not any(line.startswith(("EXCEPTION_RECORD:", "TRAP_FRAME:")) for line in out)
    assert f"STACK_COMMAND:  .cxr 0x{context:016x} ; kb" in out


def test_a_driver_that_bug_checks_through_exfreepool_has_no_trap_frame():
    m, out, _ = _lab("myfault-double-free")
    assert not any(line.startswith("TRAP_FRAME:") for line in out)
    assert "STACK_COMMAND:  kb" in out
    assert "SYMBOL_NAME:  myfault!MyfaultDoubleFree+e0" in out
    _, overrun, _ = _lab("myfault-overrun")  # a DPC's stop: not the DPC interrupt's frame
    assert not any(line.startswith("TRAP_FRAME:") for line in overrun)


def test_the_trap_frame_shown_is_the_page_fault_the_stop_came_from():
    m, out, _ = _lab("myfault")
    assert m.bugcheck.code == 0xD1
    assert _trap_rip(m, out) == m.bugcheck.params[3]  # Arg4: the faulting instruction
    tf = int(_value(out, "TRAP_FRAME:").split()[0], 16)
    assert f"STACK_COMMAND:  .trap 0x{tf:016x} ; kb" in out
    stack = out[out.index("STACK_TEXT:  ") + 1:]
    row = next(r for r in stack if r.startswith(f"{tf >> 32:08x}`{tf & 0xFFFFFFFF:08x}"))
    assert row.split(" : ")[-1].startswith("nt!KiPageFault+")


def test_an_exception_at_rip_0_reports_a_null_ip_not_kebugcheckex():
    m, out, a = _lab("myfault-stack-trash")
    assert Struct(m.kspace, "_CONTEXT", m.bugcheck.params[2]).get("Rip") == 0
    i = out.index("FAILED_INSTRUCTION_ADDRESS: ")
    assert out[i + 1:i + 3] == ["+0", "00000000`00000000 ??              ???"]
    assert "FAILURE_BUCKET_ID:  0x3B_c0000005_NULL_IP" in out
    assert "SYMBOL_NAME:  ANALYSIS_INCONCLUSIVE" in out
    assert "IMAGE_NAME:  Unknown_Image" in out
    assert not any("KeBugCheckEx" in line for line in out if line.startswith(
        ("SYMBOL_NAME", "FAILURE_BUCKET_ID")))
    assert a.image == "Unknown_Image" and not a.image_only


def test_an_interrupt_storm_blames_the_isr_of_arg1():
    m, out, _ = _lab("interrupt-storm")
    isr, _, interrupt, _ = m.bugcheck.params
    assert Struct(m.kspace, "_KINTERRUPT", interrupt).get("ServiceRoutine") == isr
    assert isr == m.sym("hdcap!HdcInterruptService")
    assert "SYMBOL_NAME:  hdcap!HdcInterruptService+0" in out
    assert "IMAGE_NAME:  hdcap.sys" in out and "MODULE_NAME: hdcap" in out
    assert "FAILURE_BUCKET_ID:  0xF2_hdcap!HdcInterruptService" in out


def test_0x7f_names_the_one_trap_that_happened():
    m, out, _ = _lab("myfault-stack-overflow")
    assert m.bugcheck.params[0] == 8
    args = out[out.index("Arguments:") + 1:out.index("Arguments:") + 5]
    assert args[0] == "Arg1: 0000000000000008, EXCEPTION_DOUBLE_FAULT"
    assert args[1:] == [f"Arg{i}: {m.bugcheck.params[i - 1]:016x}" for i in (2, 3, 4)]


def test_0x1e_describes_arg3_and_arg4_as_the_exceptions_parameters():
    m, out, _ = _lab("myfault-breakpoint")
    assert m.bugcheck.code == 0x1E
    p3, p4 = m.bugcheck.params[2:]
    assert f"Arg3: {p3:016x}, Parameter 0 of the exception" in out
    assert f"Arg4: {p4:016x}, Parameter 1 of the exception" in out
    assert not any("literally" in line for line in out)
    # the trap frame of the breakpoint the exception came from
    assert _trap_rip(m, out) == m.bugcheck.params[1]


def test_a_blocked_power_irp_blames_an_image_only():
    m, out, a = _lab("power-irp")
    irp = m.bugcheck.params[3]
    location = Struct(m.kspace, "_IRP", irp).get("Tail.Overlay.CurrentStackLocation")
    device = Struct(m.kspace, "_IO_STACK_LOCATION", location).get("DeviceObject")
    assert device == m.kspace.read_u64(m.sym("fabwlan!Fdo"))
    assert a.image == "fabwlan.sys" and a.image_only
    assert "IMAGE_NAME:  fabwlan.sys" in out
    assert not any(line.startswith("TRAP_FRAME:") for line in out)  # a DPC's stop
    _, _, worker = _lab("worker-null")
    assert not worker.image_only  # a routine is named there
