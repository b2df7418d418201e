"""myfault-code-overwrite: a jump stub copied over nt!NtReadFile, whose code page is
read-only (0xBE on the first byte written)."""

from __future__ import annotations

from machine.types.view import Struct
from tests.library import labkit

NAME = "myfault-code-overwrite"
P1, P3 = "poi(nt!KiBugCheckData+8)", "poi(nt!KiBugCheckData+18)"  # as kd reads them
SOLUTION = ["!analyze -v", f"ln {P1}", f"!pte {P1}", f"u {P1} l1", f".trap {P3}"]
RIGHT = ".submit bugcheck=0xBE driver=myfault.sys routine=MyfaultCodeOverwrite " \
        "cause=code-overwrite target=nt!NtReadFile"
WRONG = ".submit bugcheck=0xD1 driver=nt routine=KiPageFault cause=null-deref " \
        "target=nt!NtWriteFile"
PRESENT, WRITABLE = 1, 2


def test_it_stops_with_0xbe_on_the_first_byte_written_over_ntreadfile():
    m = labkit.stopped(NAME).machine
    code, (address, pte, trap_frame, reserved) = m.bugcheck.code, m.bugcheck.params
    assert code == 0xBE
    assert address == m.sym("nt!NtReadFile")  # the virtual address written
    assert pte == m.kspace.get_pte(address)  # its PTE: present, read-only
    assert pte & PRESENT and not pte & WRITABLE
    trap = Struct(m.kspace, "_KTRAP_FRAME", trap_frame)
    routine = m.sym("myfault!MyfaultCodeOverwrite")
    assert routine < trap.get("Rip") < routine + 0x40  # the faulting write, in myfault
    assert trap.get("Rax") == address
    assert reserved == 0
    assert m.kspace.read(address, 2) == b"\x48\x81"  # nt's code is intact: sub rsp, ...


def test_the_solution_reveals_the_key_and_is_graded(tmp_path):
    out = labkit.transcript(NAME, [*SOLUTION, RIGHT, WRONG], tmp_path)
    analyze, ln, pte, code, trap = labkit.outputs(out)[1:6]
    assert "ATTEMPTED_WRITE_TO_READONLY_MEMORY (be)" in analyze
    assert "SYMBOL_NAME:  myfault!MyfaultCodeOverwrite+" in analyze
    assert "IMAGE_NAME:  myfault.sys" in analyze
    assert "Exact matches:\n    nt!NtReadFile " in ln
    flags = pte.splitlines()[-1].split()[-1]
    assert flags[-4:] == "KREV"  # kernel, read-only, executable, valid
    assert code.startswith("nt!NtReadFile:")
    assert "myfault!MyfaultCodeOverwrite+" in trap and "mov     byte ptr [rax],cl" in trap
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(tmp_path):
    assert labkit.transcript(NAME, SOLUTION, tmp_path / "a") == \
        labkit.transcript(NAME, SOLUTION, tmp_path / "b")
