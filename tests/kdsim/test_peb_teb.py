"""!peb and !teb on the crashed default machine: values read back from the process's own
address space and compared with the kernel's view (EPROCESS, ETHREAD)."""

from __future__ import annotations

import re

from tests.conftest import run


def _field(session, line: str) -> int:
    return int(run(session, line)[0].split("=")[-1].replace("`", ""), 16)


def test_peb_of_the_current_process(session) -> None:
    out = run(session, "!peb")
    ep = session.current_process()
    peb = session.reader.field("_EPROCESS", ep, "Peb")
    assert out[0] == f"PEB at {peb:016x}"
    assert out[1] == "    InheritedAddressSpace:    No"
    name = bytes(session.target.read_virtual(
        ep + session.target.types.resolve("_EPROCESS", "ImageFileName")[0], 15)
    ).split(b"\0")[0].decode()
    rows = [line for line in out if re.match(r"^ {12}[0-9a-f]{12} [0-9a-f]{8} ", line)]
    assert len(rows) == 2
    image = rows[0].rsplit("\\", 1)[1]
    assert image.startswith(name)  # ImageFileName keeps 14 characters
    assert rows[1].endswith("\\ntdll.dll")
    assert any(line == f"    ImageFile:    'C:\\Windows\\System32\\{image}'" for line in out)
    base = int(rows[0].split()[0], 16)
    assert f"    ImageBaseAddress:         {base:016x}" in out
    assert "                    Base TimeStamp                     Module" in out


def test_peb_module_timestamps_come_from_the_image_headers(session) -> None:
    out = run(session, "!peb")
    row = next(line for line in out if line.endswith("ntdll.dll") and line.startswith(" " * 8))
    base, stamp = (int(x, 16) for x in row.split()[:2])
    ep = session.current_process()
    from commands.peb_teb import process_reader

    r = process_reader(session, ep)
    lfanew = r.int(base + 0x3C, 4)
    assert r.int(base + lfanew + 8, 4) == stamp


def test_peb_at_a_kernel_address_is_a_read_error(session) -> None:
    out = run(session, "!peb 10")
    assert out == ["error 1 InitTypeRead( nt!_PEB at 0000000000000010)"]


def test_teb_of_the_current_thread(session) -> None:
    out = run(session, "!teb")
    th = session.current_thread()
    teb = session.reader.field("_KTHREAD", th, "Teb")
    pid = session.reader.field("_ETHREAD", th, "Cid.UniqueProcess")
    tid = session.reader.field("_ETHREAD", th, "Cid.UniqueThread")
    peb = session.reader.field("_EPROCESS", session.current_process(), "Peb")
    assert out[0] == f"TEB at {teb:016x}"
    assert f"    Self:                 {teb:016x}" in out
    assert f"    ClientId:             {pid:016x} . {tid:016x}" in out
    assert f"    PEB Address:          {peb:016x}" in out
    labels = [line[4:].split(":")[0] for line in out[1:]]
    assert labels == ["ExceptionList", "StackBase", "StackLimit", "SubSystemTib", "FiberData",
                      "ArbitraryUserPointer", "Self", "EnvironmentPointer", "ClientId",
                      "RpcHandle", "Tls Storage", "PEB Address", "LastErrorValue",
                      "LastStatusValue", "Count Owned Locks", "HardErrorMode"]
    base = int(out[2].split()[-1], 16)
    limit = int(out[3].split()[-1], 16)
    assert base > limit and base % 0x1000 == 0


def test_teb_bad_input_is_a_kd_error(session) -> None:
    assert run(session, "!teb nosuchsymbol")[0].startswith("Couldn't resolve error")


def test_peb_and_teb_follow_the_implicit_process(session) -> None:
    """Book ch. 5: `.process /p <eprocess>; !peb` shows that process's PEB; every user
    process's PEB lists its own image, every thread's TEB its own client id."""
    procs = session.reader.list_entries(session.nt("PsActiveProcessHead"))
    off = session.reader.offset("_EPROCESS", "ActiveProcessLinks")
    seen = 0
    for link in procs:
        ep = link - off
        peb = session.reader.field("_EPROCESS", ep, "Peb")
        out = run(session, f".process /p {ep:x}; !peb")
        assert out[0] == f"Implicit process is now {ep >> 32:08x}`{ep & 0xFFFFFFFF:08x}"
        if not peb:
            assert out[-1] == "PEB NULL..."
            continue
        seen += 1
        assert out[1] == ".cache forcedecodeuser done"  # kd's note on a live target
        assert out[2] == f"PEB at {peb:016x}"
        base = session.reader.field("_EPROCESS", ep, "SectionBaseAddress")
        assert f"    ImageBaseAddress:         {base:016x}" in out
        threads = session.reader.list_entries(ep + session.reader.offset(
            "_EPROCESS", "ThreadListHead"))
        toff = session.reader.offset("_ETHREAD", "ThreadListEntry")
        for tlink in threads[:2]:
            et = tlink - toff
            teb = session.reader.field("_KTHREAD", et, "Teb")
            tid = session.reader.field("_ETHREAD", et, "Cid.UniqueThread")
            out = run(session, f"!teb {teb:x}")
            assert out[0] == f"TEB at {teb:016x}"
            assert out[9].endswith(f" . {tid:016x}")
            assert out[12] == f"    PEB Address:          {peb:016x}"
    assert seen >= 10
