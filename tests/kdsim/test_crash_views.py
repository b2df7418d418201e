"""The debugger's views of the crashed default machine agree with each other and with
what the scenario did."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import run

DATA = Path(__file__).resolve().parent.parent / "data"


def test_bugcheck_is_d1_with_documented_parameters(app, session):
    lines = run(session, ".bugcheck")
    assert lines[0] == "Bugcheck code 000000D1"
    halt = app.machine.bugcheck
    assert halt.code == 0xD1
    address, irql, access, ip = halt.params
    assert irql == 2 and access == 0
    myfault = session.symbols.module_named("myfault")
    assert myfault.base <= ip < myfault.end
    # P1 is the pageable buffer the driver read: its page is not resident.
    assert app.machine.pool.is_paged(address)
    row = run(session, f"db {address:x} L1")[0]
    assert row.split()[1] == "??" and row.endswith("?")


def test_analyze_names_the_culprit(session):
    text = "\n".join(run(session, "!analyze -v"))
    assert "DRIVER_IRQL_NOT_LESS_OR_EQUAL (d1)" in text
    assert re.search(r"^Arg2: 0000000000000002, ", text, re.M)
    assert re.search(r"^Arg3: 0000000000000000, ", text, re.M)
    assert re.search(r"myfault!MyfaultHighIrqlFault\+0x[0-9a-f]+:", text)
    assert "PROCESS_NAME:  notmyfault64.exe" in text
    assert "MODULE_NAME: myfault" in text and "IMAGE_NAME:  myfault.sys" in text
    stack = text.split("STACK_TEXT:  \n", 1)[1].split("\n\n", 1)[0].splitlines()
    sites = [row.rsplit(" : ", 1)[1] for row in stack]
    assert sites[0] == "nt!KeBugCheckEx"
    assert sites[1].startswith("nt!KiBugCheckDispatch+")
    assert sites[2].startswith("nt!KiPageFault+")
    assert sites[3].startswith("myfault!MyfaultHighIrqlFault+")
    assert any(s.startswith("nt!IofCallDriver+") for s in sites)


def test_every_listed_process_matches_dt(session):
    listing = run(session, "!process 0 0")
    blocks = [b for b in "\n".join(listing).split("\n\n") if b.startswith(("PROCESS", "**"))]
    procs = re.findall(r"PROCESS ([0-9a-f]{16})\n\s+SessionId: \S+  Cid: ([0-9a-f]{4}).*?"
                       r"Image: (\S+)", "\n".join(listing), re.S)
    assert len(procs) >= 14 and blocks
    images = {image for _, _, image in procs}
    for want in ("System", "smss.exe", "csrss.exe", "wininit.exe", "services.exe",
                 "lsass.exe", "svchost.exe", "explorer.exe", "notepad.exe"):
        assert want in images
    for addr, cid, image in procs:
        assert int(cid, 16) % 4 == 0
        dt = run(session, f"dt nt!_EPROCESS {addr} UniqueProcessId ImageFileName")
        pid = re.search(r"UniqueProcessId\s*: 0x([0-9a-f`]+)", "\n".join(dt))
        assert pid and int(pid.group(1).replace("`", ""), 16) == int(cid, 16), dt
        name = re.search(r'ImageFileName\s*: \[15\]  "([^"]*)"', "\n".join(dt))
        assert name and image.startswith(name.group(1)), dt


def test_stack_return_addresses_are_in_memory_where_k_found_them(session):
    from commands.stackwalk import walk

    regs = session.target.registers(session.processor)
    frames = walk(session.target, session.symbols, regs["rip"], regs["rsp"])
    k_rows = run(session, "k")[1:]
    assert len(k_rows) == len(frames) >= 10
    checked = 0
    for row, f in zip(k_rows, frames, strict=True):
        ret = row.split()[2]
        assert int(ret.replace("`", ""), 16) == f.ret_addr
        if f.slot is not None:
            dq = run(session, f"dq {f.slot:x} L1")[0]
            assert dq.split()[1] == ret
            checked += 1
    assert checked >= 8


def test_trap_then_u_shows_the_faulting_mov(session):
    tf = re.search(r"TRAP_FRAME:  ([0-9a-f]{16})", "\n".join(run(session, "!analyze -v")))
    trap = run(session, f".trap {tf.group(1)}")
    assert trap[0].startswith("NOTE: The trap frame does not contain all registers.")
    rbx = int(re.search(r"rbx=([0-9a-f]{16})", "\n".join(trap)).group(1), 16)
    u = run(session, "u @rip L1")
    assert u[0].startswith("myfault!MyfaultHighIrqlFault+0x")
    assert u[1].split()[1] == "8b03" and u[1].endswith("mov     eax,dword ptr [rbx]")
    assert rbx == session.target.registers(0)["rbx"] or rbx != 0
    bugcheck_p1 = int(run(session, ".bugcheck")[1].split()[1].replace("`", ""), 16)
    assert rbx == bugcheck_p1


def _golden_blocks() -> dict[str, list[str]]:
    out = {}
    for block in (DATA / "dt-golden.txt").read_text().strip().split("\n\n"):
        lines = block.splitlines()
        out[lines[0].split("!")[1]] = lines[1:]
    return out


def test_dt_types_match_the_reference_layouts(session):
    golden = _golden_blocks()
    assert set(golden) == {"_EPROCESS", "_KTHREAD", "_IRP", "_KPRCB"}
    for name, expected in golden.items():
        lines = run(session, f"dt nt!{name}")
        assert [ln.rstrip() for ln in lines] == [ln.rstrip() for ln in expected], name
