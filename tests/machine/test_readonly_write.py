"""A driver that writes to its own code (read-only, executable pages) stops the machine
with ATTEMPTED_WRITE_TO_READONLY_MEMORY: P1 the address written, P2 its PTE (present,
not writable), P3 the trap frame of the faulting write."""

from __future__ import annotations

from machine.types.view import Struct
from tests.machine.probe import boot_probe, start_system_thread

ROUTINES = {
    "Patcher": """
    sub     rsp, 28h
    lea     rax, [Patcher]
    mov     byte ptr [rax+1], 0C3h
    add     rsp, 28h
    ret
""",
    "DataWriter": """
    sub     rsp, 28h
    mov     qword ptr [Value], 1234h
    add     rsp, 28h
    ret
""",
}


def crashed(routine: str):
    m = boot_probe("ro", ROUTINES, {"Value": 8})
    start_system_thread(m, 0x4000, m.sym(f"ro!{routine}"))
    m.run(200_000)
    return m


def test_a_write_to_driver_code_is_bugcheck_0xbe():
    m = crashed("Patcher")
    assert m.bugcheck is not None and m.bugcheck.code == 0xBE
    va, pte, tf, reserved = m.bugcheck.params
    assert va == m.sym("ro!Patcher") + 1
    assert pte == m.kspace.get_pte(va) and pte & 1 and not pte & 2  # present, read-only
    trap = Struct(m.kspace, "_KTRAP_FRAME", tf)
    assert m.sym("ro!Patcher") < trap.get("Rip") < m.sym("ro!Patcher") + 0x20
    assert reserved == 0
    assert m.kspace.read(va, 1) != b"\xc3"  # the write never happened


def test_a_write_to_driver_data_is_no_fault():
    m = crashed("DataWriter")
    assert m.bugcheck is None
    assert m.kspace.read_u64(m.sym("ro!Value")) == 0x1234
