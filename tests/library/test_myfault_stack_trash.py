"""myfault-stack-trash: a stack buffer overrun that returns into address 0 (0x3B)."""

from __future__ import annotations

from machine.types.view import Struct
from tests.library import labkit

NAME = "myfault-stack-trash"
RIGHT = ".submit bugcheck=0x3B driver=myfault.sys routine=MyfaultCopyRequestName " \
        "cause=stack-corruption"
WRONG = ".submit bugcheck=0x1E driver=nt routine=KiPageFault cause=null-deref"
STATUS_ACCESS_VIOLATION = 0xC0000005
COMMENT = b"caller: notmyfault64.exe, user session 1"  # the record's last 40 bytes


def _stopped():
    m = labkit.stopped(NAME).machine
    assert m.bugcheck is not None
    return m


def solution(m) -> list[str]:
    """The analysis; the exception's context record (Arg3); the raw stack above rsp; the
    intact caller's code; the routine it called."""
    return ["!analyze -v", f".cxr {m.bugcheck.params[2]:x}", "k", "dps @rsp L8",
            "db @rsp L30", "ln poi(@rsp+38)", "uf myfault!MyfaultDispatchIoctl",
            "u myfault!MyfaultCopyRequestName L0n12"]


def test_it_stops_with_0x3b_after_returning_to_address_0_over_a_trashed_stack():
    m = _stopped()
    code, (status, address, context, zero) = m.bugcheck.code, m.bugcheck.params
    assert code == 0x3B
    assert status == STATUS_ACCESS_VIOLATION  # the exception
    assert address == 0  # the instruction that caused it: rip had become 0
    assert zero == 0
    thread = m.processors[m.bugcheck.processor].current
    assert thread.process.image == "notmyfault64.exe"
    ctx = Struct(m.kspace, "_CONTEXT", context)  # the context record of the exception
    assert ctx.get("Rip") == 0
    rsp = ctx.get("Rsp")
    kt = Struct(m.kspace, "_KTHREAD", thread.ethread)
    assert kt.get("StackLimit") <= rsp < kt.get("StackBase")
    # Above rsp: the tail of the user's record (written by the overrun copy), then the
    # caller's untouched slots (its Input, its InputLength) and its return address.
    assert m.kspace.read(rsp, len(COMMENT)) == COMMENT
    assert m.kspace.read_u64(rsp + 0x30) == 0x58  # InputLength: 0x58 bytes were copied
    ret = m.kspace.read_u64(rsp + 0x38)
    caller = m.sym("myfault!MyfaultDeviceControl")
    assert caller < ret < caller + 0x80
    assert m.kspace.read(ret - 5, 1) == b"\xe8"  # after a call ...
    target = ret + int.from_bytes(m.kspace.read(ret - 4, 4), "little", signed=True)
    assert target == m.sym("myfault!MyfaultDispatchIoctl")  # ... to MyfaultDispatchIoctl
    hash_ = int.from_bytes(m.kspace.read(m.sym("myfault!LastNameHash"), 4), "little")
    assert hash_ != 0  # MyfaultCopyRequestName ran to its ret


def test_the_solution_reveals_the_key_and_is_graded(tmp_path):
    m = _stopped()
    out = labkit.transcript(NAME, [*solution(m), RIGHT, WRONG], tmp_path)
    parts = labkit.outputs(out)
    assert "SYSTEM_SERVICE_EXCEPTION (3b)" in out
    assert "Arg1: 00000000c0000005," in out  # STATUS_ACCESS_VIOLATION
    assert "Arg2: 0000000000000000," in out  # where: address 0
    assert "IMAGE_NAME:  myfault.sys" not in parts[1]  # !analyze cannot tell
    assert "rip=0000000000000000" in parts[2]  # .cxr: the faulting context
    assert "myfault" not in parts[3]  # k: nothing to walk from rip 0
    dps = parts[4].splitlines()
    assert dps[0].endswith("203a7265`6c6c6163")  # "caller: " as a quadword
    assert dps[7].endswith("myfault!MyfaultDeviceControl+0x5b")  # the first intact frame
    assert "caller: notmyfau" in parts[5]  # db: the record's text
    assert "myfault!MyfaultDeviceControl+0x5b" in parts[6]  # ln
    assert "call    myfault!MyfaultCopyRequestName" in parts[7]  # uf on the caller
    copy = parts[8]
    assert "lea     r8,[rsp+20h]" in copy and "cmp     eax,edx" in copy  # no bound of 20h
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(tmp_path):
    commands = solution(_stopped())
    assert labkit.transcript(NAME, commands, tmp_path / "a") == \
        labkit.transcript(NAME, commands, tmp_path / "b")
