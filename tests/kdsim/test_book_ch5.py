"""Replays of the book's chapter 5 tutorials ("Debugging and Tracing"), typed as the book
types them: lower-case symbols, `;`-separated lines, hex without `0x`.

* T1 (user-mode basics), its kernel-mode parts, and T2 (local kernel debugging) on the
  crashed default machine: evaluation, registers, memory, disassembly, stacks,
  breakpoint bookkeeping, types, `!process`, `.process /p` + `!peb`.
* T4 (driver debugging) on a booted machine that loads a Booster driver while it runs and
  then starts boost.exe, which opens a missing device and writes to Booster: `bu` on the
  driver's entry before it loads, `bp /p` for explorer.exe not firing in boost.exe, a
  breakpoint inside the write routine, stepping, `!error` on a real failed NTSTATUS.

Machine images replace the book's (there is one explorer.exe; no notepad).  Every value
is compared with what the machine's memory or processors hold."""

from __future__ import annotations

import re

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from machine.events import start_process
from machine.scenario import (
    DRIVER_IMAGE_ALIGN,
    boot_scenario,
    build_driver_image,
    parse_scenario,
)
from machine.types.view import Struct
from tests.conftest import run
from tests.machine.probe import COMPLETE_SUCCESS, start_system_thread


def bt(value: int) -> str:
    """kd's 64-bit address form with the backtick."""
    return f"{value >> 32:08x}`{value & 0xFFFFFFFF:08x}"


K_HEADER = " # Child-SP          RetAddr               Call Site"
K_ROW = re.compile(r"^([0-9a-f]{2}) ([0-9a-f]{8}`[0-9a-f]{8}) ([0-9a-f]{8}`[0-9a-f]{8})     (\S+)$")
BL_ROW = re.compile(r"^     (\d+) ([ed]) (Disable|Enable) Clear  ([0-9a-f]{8}`[0-9a-f]{8})"
                    r"     (\d{4}) \((\d{4})\) (\S+)$")
CODE_ROW = re.compile(r"^([0-9a-f]{8}`[0-9a-f]{8}) ([0-9a-f]+) +(\S+)")


def db_rows(read, address: int, rows: int = 8) -> list[str]:
    """What `db` shows for memory read with `read(address, size)`."""
    out = []
    for i in range(rows):
        a = address + 16 * i
        data = read(a, 16)
        hexes = " ".join(f"{b:02x}" for b in data)
        hexes = hexes[:23] + "-" + hexes[24:]
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)
        out.append(f"{bt(a)}  {hexes}  {text}")
    return out


def du_rows(read, address: int) -> list[str]:
    """What `du` shows: up to 32 characters a line, to the terminating zero."""
    chars = []
    a = address
    while len(chars) < 0x800:
        c = int.from_bytes(read(a + 2 * len(chars), 2), "little")
        if c == 0:
            break
        chars.append(chr(c))
    return [f'{bt(a + 0x40 * i)}  "{"".join(chars[32 * i:32 * i + 32])}"'
            for i in range((len(chars) + 31) // 32)]


# ==== T1 (kernel-mode parts) and T2 on the crashed default machine ===========================

def test_t1_evaluate_forms_exactly(session):
    assert run(session, "? 874c") == ["Evaluate expression: 34636 = 00000000`0000874c"]
    assert run(session, "? 0n34636") == ["Evaluate expression: 34636 = 00000000`0000874c"]
    assert run(session, "? 0y1100") == ["Evaluate expression: 12 = 00000000`0000000c"]


def test_t1_registers_as_the_book_shows_them(app, session):
    cpu = app.machine.processors[session.processor].cpu
    rcx, rax = cpu.regs[1], cpu.regs[0]
    assert run(session, "r rcx") == [f"rcx={rcx:016x}"]
    assert run(session, "r eax") == [f"eax={rax & 0xFFFFFFFF:08x}"]
    # `!error @eax`: the register's value, as the book reads a status after a call
    out = run(session, "!error @eax")
    assert len(out) == 1 and re.match(
        rf"^Error code: \((Win32|NTSTATUS|HRESULT)\) 0x{rax & 0xFFFFFFFF:x} "
        rf"\({rax & 0xFFFFFFFF}\) - .+$", out[0])
    assert run(session, "!error c0000034") == [
        "Error code: (NTSTATUS) 0xc0000034 (3221225524) - Object Name not found."]


def test_t1_db_and_du_on_a_unicode_string(app, session):
    m = app.machine
    # the driver's \Device\MyFault name: the UNICODE_STRING's Buffer, as the book's rcx
    buffer = m.kspace.read_u64(m.sym("myfault!DeviceName") + 8)
    assert run(session, f"db {buffer:016x}") == db_rows(m.kspace.read, buffer)
    out = run(session, f"du {buffer:016x}")
    assert out == du_rows(m.kspace.read, buffer) == [f'{bt(buffer)}  "\\Device\\MyFault"']
    # the backtick form of the address is the same
    assert run(session, f"du {bt(buffer)}") == out


def test_t1_u_disassembles_eight_instructions_from_memory(app, session):
    m = app.machine
    rip = m.processors[session.processor].cpu.rip
    out = run(session, "u")
    name = session.symbols.name_for(rip)
    assert out[0] == f"{name}:"
    rows = [CODE_ROW.match(line) for line in out[1:]]
    assert len(rows) == 8 and all(rows)
    address = rip
    for row in rows:
        assert row.group(1) == bt(address)
        size = len(row.group(2)) // 2
        assert bytes.fromhex(row.group(2)) == m.kspace.read(address, size)
        address += size


def test_t1_k_frames_are_two_digit_hex_and_unwind_from_rsp(app, session):
    cpu = app.machine.processors[session.processor].cpu
    out = run(session, "k")
    assert out[0] == K_HEADER
    rows = [K_ROW.match(line) for line in out[1:]]
    assert all(rows), out
    assert [int(r.group(1), 16) for r in rows] == list(range(len(rows)))
    assert rows[0].group(2) == bt(cpu.regs[4])
    assert rows[0].group(4) == session.symbols.name_for(cpu.rip)
    # frame 0 is at a function's first instruction: its return address is at rsp
    assert int(rows[0].group(3).replace("`", ""), 16) == app.machine.kspace.read_u64(cpu.regs[4])
    # each frame's return address is the next frame's call site
    for row, below in zip(rows, rows[1:], strict=False):
        ret = int(row.group(3).replace("`", ""), 16)
        assert below.group(4) == (session.symbols.name_for(ret) or f"0x{bt(ret)}")


def test_t1_breakpoint_bookkeeping_with_lower_case_symbols(app, session):
    m = app.machine
    assert run(session, "bp nt!kebugcheckex") == []
    assert run(session, "bp myfault!myfaultdevicecontrol") == []
    out = run(session, "bl")
    rows = [BL_ROW.match(line) for line in out]
    assert all(rows), out
    assert [(r.group(1), r.group(2), r.group(4), r.group(5), r.group(6), r.group(7))
            for r in rows] == [
        ("0", "e", bt(m.sym("nt!KeBugCheckEx")), "0001", "0001", "nt!KeBugCheckEx"),
        ("1", "e", bt(m.sym("myfault!MyfaultDeviceControl")), "0001", "0001",
         "myfault!MyfaultDeviceControl")]
    assert run(session, "bd *") == []
    assert [BL_ROW.match(line).group(2, 3) for line in run(session, "bl")] == \
        [("d", "Enable")] * 2
    assert run(session, "bc 0") == []
    assert [BL_ROW.match(line).group(7) for line in run(session, "bl")] == \
        ["myfault!MyfaultDeviceControl"]
    assert run(session, "bc *") == [] and run(session, "bl") == []


def test_t1_lm_and_reload_of_one_module(app, session):
    out = run(session, "lm")
    assert out[0] == "start             end                 module name"
    listed = {line.split()[2]: line for line in out[1:]}
    for img in app.machine.modules:
        name = "nt" if img.name.lower() in ("nt", "ntoskrnl") else img.name
        line = listed[name]
        assert line.startswith(f"{bt(img.base)} {bt(img.base + img.size)}   ")
        assert re.search(r"\((deferred|pdb symbols|private pdb symbols|export symbols|"
                         r"no symbols)\)", line)
    assert run(session, ".reload /f myfault.sys") == []
    assert run(session, "lm") == out
    assert run(session, ".reload /f notepad.exe") == ["Unable to find module 'notepad.exe'"]


def test_t1_setup_commands_are_accepted(session):
    assert run(session, ".symfix") == []
    assert run(session, "!sym noisy") == ["noisy mode - symbol prompts on"]
    assert run(session, ".prefer_dml 1") == ["DML versions of commands on by default"]


def explorer(m):
    procs = [p for p in m.processes if p.image == "explorer.exe"]
    assert procs
    return procs


def test_t1_teb_types_and_dx_in_an_explorer_thread(app, session):
    m = app.machine
    proc = explorer(m)[0]
    thread = proc.threads[0]
    teb = Struct(m.kspace, "_KTHREAD", thread.ethread).get("Teb")
    out = run(session, "dt nt!_teb")
    assert out[0] == "   +0x000 NtTib            : _NT_TIB"
    out = run(session, f".process /p {proc.eprocess:x}; dt nt!_teb {teb:x}")
    assert out[0] == f"Implicit process is now {bt(proc.eprocess)}"
    peb = proc.space.read_u64(teb + 0x60)
    assert peb == proc.peb
    assert f"   +0x060 ProcessEnvironmentBlock : 0x{bt(peb)} _PEB" in out
    out = run(session, f"dx -r1 (*((nt!_NT_TIB *)0x{teb:x}))")
    assert out[0].startswith(f"(*((nt!_NT_TIB *)0x{teb:x}))")
    assert out[0].endswith("[Type: _NT_TIB]")
    fields = {"ExceptionList": 0, "StackBase": 8, "StackLimit": 0x10, "Self": 0x30}
    for name, off in fields.items():
        value = proc.space.read_u64(teb + off)
        assert any(re.match(rf"^    \[\+0x{off:03x}\] {name} +: 0x{value:x} \[Type: ", line)
                   for line in out), (name, out)


def test_t2_process_list(app, session):
    out = run(session, "!process 0 0")
    assert out[0] == "**** NT ACTIVE PROCESS DUMP ****"
    blocks = [out[i:i + 4] for i, line in enumerate(out) if line.startswith("PROCESS ")]
    system = blocks[0]
    assert system[-1] == "    Image: System" and "Cid: 0004" in system[1]
    shape = [re.compile(r"^PROCESS [0-9a-f]{16}$"),
             re.compile(r"^    SessionId: (none|\d+)  Cid: [0-9a-f]{4}    Peb: [0-9a-f]+  "
                        r"ParentCid: [0-9a-f]{4}$"),
             re.compile(r"^    DirBase: [0-9a-f]+  ObjectTable: [0-9a-f]{16}  "
                        r"HandleCount: +\d+\.$"),
             re.compile(r"^    Image: .+$")]
    for block in blocks:
        assert all(p.match(line) for p, line in zip(shape, block, strict=True)), block
    # every process of the machine's active list, with its own EPROCESS and pid
    shown = {int(b[0].split()[1], 16): b for b in blocks}
    for proc in app.machine.processes:
        if proc.pid == 0:
            continue  # the Idle process is not on PsActiveProcessHead
        assert f"Cid: {proc.pid:04x} " in shown[proc.eprocess][1]


def test_t2_process_by_image_and_the_peb_click(app, session):
    m = app.machine
    procs = explorer(m)
    out = run(session, "!process 0 0 explorer.exe")
    assert "**** NT ACTIVE PROCESS DUMP ****" not in out
    assert [line for line in out if line.startswith("PROCESS ")] == \
        [f"PROCESS {p.eprocess:016x}" for p in procs]
    assert all(line in ("    Image: explorer.exe",) for line in out if "Image:" in line)
    proc = procs[0]
    out = run(session, f"!process {proc.eprocess:x} 1")
    assert out[0] == f"PROCESS {proc.eprocess:016x}"
    assert any(line.startswith("    VadRoot ") for line in out)
    # what clicking Peb runs
    out = run(session, f".process /p {proc.eprocess:x}; !peb {proc.peb:x}")
    assert out[0] == f"Implicit process is now {bt(proc.eprocess)}"
    assert f"PEB at {proc.peb:016x}" in out
    header = out.index("                    Base TimeStamp                     Module")
    assert re.match(r"^ {12}[0-9a-f]+ [0-9a-f]{8} .+ C:\\.*explorer\.exe$", out[header + 1],
                    re.IGNORECASE)


def test_t2_process_threads_with_waits(app, session):
    proc = explorer(app.machine)[0]
    out = run(session, f"!process {proc.eprocess:x} 2")
    threads = [line for line in out if line.startswith("        THREAD ")]
    assert [line.split()[1] for line in threads] == [f"{t.ethread:016x}" for t in proc.threads]
    for t, line in zip(proc.threads, threads, strict=True):
        assert f"  Cid {proc.pid:04x}.{t.tid:04x}  " in line
        assert re.search(r" WAIT: \(\w+\) (KernelMode|UserMode) (Alertable|Non-Alertable)$",
                         line)
        following = out[out.index(line) + 1]
        assert re.match(r"^            [0-9a-f]{16}  \w+$", following)


# ==== T4 on a booted machine that loads Booster while it runs ==================================

BOOSTER_ENTRY = """
    push    rbx
    push    rsi
    sub     rsp, 48h
    mov     rbx, rcx                        ; DriverObject
    mov     rsi, rdx                        ; RegistryPath
    lea     rax, [BoosterCreateClose]
    mov     qword ptr [rbx+70h], rax        ; MajorFunction[IRP_MJ_CREATE]
    mov     qword ptr [rbx+80h], rax        ; MajorFunction[IRP_MJ_CLOSE]
    lea     rax, [BoosterWrite]
    mov     qword ptr [rbx+90h], rax        ; MajorFunction[IRP_MJ_WRITE]
    mov     rcx, qword ptr [rsi+8]          ; RegistryPath->Buffer
    call    BoosterLogPath
    lea     rax, [DeviceObject]
    mov     qword ptr [rsp+30h], rax
    mov     dword ptr [rsp+28h], 0
    mov     dword ptr [rsp+20h], 0
    mov     r9d, 22h                        ; FILE_DEVICE_UNKNOWN
    lea     r8, [DeviceName]
    xor     edx, edx
    mov     rcx, rbx
    call    nt!IoCreateDevice
    lea     rdx, [DeviceName]
    lea     rcx, [LinkName]
    call    nt!IoCreateSymbolicLink
    xor     eax, eax
    add     rsp, 48h
    pop     rsi
    pop     rbx
    ret
"""
BOOSTER_LOG_PATH = """
    xor     eax, eax
count:
    cmp     word ptr [rcx+rax*2], 0
    je      counted
    inc     rax
    jmp     count
counted:
    mov     qword ptr [PathLength], rax
    ret
"""
BOOSTER_WRITE = """
    push    rbx
    sub     rsp, 20h
    mov     rbx, rdx                        ; Irp
    lock inc qword ptr [Writes]
    mov     rdx, rbx
    add     rsp, 20h
    pop     rbx
""" + COMPLETE_SUCCESS
LOAD_TICK = 3  # ticks after boot: the service starts (sc start booster)
CLIENT_TICK = 6  # boost.exe starts


def booster_toml() -> str:
    parts = ['[scenario]\nname = "booster"\n',
             '[[driver]]\nname = "Booster"\nimage = "Booster.sys"\nentry = "DriverEntry"\n']
    parts += [f'[[driver.global]]\nname = "{g}"\n' for g in ("DeviceObject", "PathLength",
                                                                "Writes")]
    parts.append("[[driver.string]]\nname = \"DeviceName\"\nvalue = '\\Device\\Booster'\n")
    parts.append("[[driver.string]]\nname = \"LinkName\"\nvalue = '\\??\\Booster'\n")
    for name, code in (("DriverEntry", BOOSTER_ENTRY), ("BoosterLogPath", BOOSTER_LOG_PATH),
                       ("BoosterCreateClose", COMPLETE_SUCCESS), ("BoosterWrite", BOOSTER_WRITE)):
        parts.append(f'[[driver.routine]]\nname = "{name}"\ncode = """\n{code}"""\n')
    return "\n".join(parts)


def start_booster(m, driver_scenario) -> None:
    """The service starts: the image is mapped and put on PsLoadedModuleList, and a new
    system worker thread calls its DriverEntry through nt!IopLoadDriver."""
    top = max(img.base + img.size for img in m.modules)
    base = max(m.layout.driver_base, (top + DRIVER_IMAGE_ALIGN - 1) & ~(DRIVER_IMAGE_ALIGN - 1))
    img = build_driver_image(m, driver_scenario.drivers[0], driver_scenario, base)
    m.pending_driver_loads.append(img)
    start_system_thread(m, m.cids.take(), m.sym("nt!ExpWorkerThread"))


BOOST_PROGRAM = {"image": "boost.exe", "program": [
    {"open": "\\\\.\\NoSuch"},  # a typo: STATUS_OBJECT_NAME_NOT_FOUND
    {"open": "\\\\.\\Booster"},
    {"write": "\\\\.\\Booster", "data": "0123"},
    {"close": "\\\\.\\Booster"}]}


@pytest.fixture()
def t4():
    """A booted (not crashed) machine, and a session on it, before Booster loads."""
    m = boot_scenario(parse_scenario('[scenario]\nname = "book"\n[machine]\ncpus = 2\n'
                                     'seed = 1\n', "book.toml"))
    driver = parse_scenario(booster_toml(), "booster.toml")
    m.at_tick(m.tick_count + LOAD_TICK, lambda m: start_booster(m, driver))
    m.at_tick(m.tick_count + CLIENT_TICK, lambda m: start_process(m, BOOST_PROGRAM))
    target = LiveTarget(m)
    s = Session(target, processor=target.stop_processor)
    s.run_budget = 2_000_000
    return m, s


def current_image(m, s) -> str:
    thread = Struct(m.kspace, "_KPRCB", m.processors[s.processor].prcb).get("CurrentThread")
    process = Struct(m.kspace, "_KTHREAD", thread).get("ApcState.Process")
    return next(p.image for p in m.processes if p.eprocess == process)


def load_and_stop_in_driver_entry(m, s) -> None:
    """T4 steps 1-4: `bu` before the driver exists, then the hit when it loads.  kdsim
    re-reads the module list only when the target stops, so a stop in nt!IopLoadDriver
    (after the image is mapped, before DriverEntry runs) lets the `bu` resolve."""
    assert run(s, "bu booster!driverentry") == []
    assert run(s, "bl") == ["     0 eu             0001 (0001) (booster!driverentry)"]
    assert run(s, "bp nt!ioploaddriver") == []
    out = run(s, "g")
    assert out[:2] == ["Breakpoint 1 hit", "nt!IopLoadDriver:"]
    assert run(s, "bc 1") == []
    out = run(s, "g")
    entry = m.sym("Booster!DriverEntry")
    assert out[:2] == ["Breakpoint 0 hit", "Booster!DriverEntry:"]
    assert out[2].startswith(f"{bt(entry)} {m.kspace.read(entry, 1).hex()} ")
    assert m.processors[s.processor].cpu.rip == entry
    assert s.prompt == f"{s.processor}: kd> "


def test_t4_bu_resolves_when_the_driver_loads_and_k_shows_the_load_stack(t4):
    m, s = t4
    load_and_stop_in_driver_entry(m, s)
    rows = [K_ROW.match(line) for line in run(s, "k")[1:]]
    assert all(rows)
    sites = [r.group(4) for r in rows]
    assert sites[0] == "Booster!DriverEntry"
    assert [site.split("+")[0] for site in sites[1:]] == [
        "nt!IopLoadDriver", "nt!ExpWorkerThread", "nt!PspSystemThreadStartup",
        "nt!KiStartSystemThread"]
    assert rows[-1].group(3) == "00000000`00000000"
    # DriverEntry runs on a system worker thread in the System process
    assert current_image(m, s) == "System"
    assert run(s, "bl")[0] == f"     0 e Disable Clear  {bt(m.sym('Booster!DriverEntry'))}" \
                              "     0001 (0001) Booster!DriverEntry"


def test_t4_bu_hits_at_load_with_no_other_stop(t4):
    """T4 steps 2-4 as typed: `bu` before the driver loads, `g`, and the hit in
    DriverEntry (the deferred breakpoint resolves when the image loads)."""
    m, s = t4
    run(s, "bu booster!driverentry")
    assert run(s, "bl")[0].split()[1] == "eu"
    out = run(s, "g")
    assert out[:2] == ["Breakpoint 0 hit", "Booster!DriverEntry:"]
    assert s.registers()["rip"] == m.sym("Booster!DriverEntry")
    # resolved now: `bl` shows the address and the symbol
    row = run(s, "bl")[0]
    assert row.split()[1] == "e" and row.endswith(" Booster!DriverEntry")


def test_t4_registers_memory_and_stepping_in_the_driver(t4):
    m, s = t4
    load_and_stop_in_driver_entry(m, s)
    assert run(s, "bp booster!boosterlogpath") == []
    # breakpoint 1 was cleared: kd gives the new one the lowest free number
    assert run(s, "g")[:2] == ["Breakpoint 1 hit", "Booster!BoosterLogPath:"]
    cpu = m.processors[s.processor].cpu
    rcx = cpu.regs[1]
    assert run(s, "r rcx") == [f"rcx={rcx:016x}"]
    assert run(s, f"db {rcx:016x}") == db_rows(m.kspace.read, rcx)
    path = "\\REGISTRY\\MACHINE\\SYSTEM\\ControlSet001\\Services\\Booster"
    assert run(s, f"du {rcx:016x}") == run(s, "du @rcx") == du_rows(m.kspace.read, rcx) == [
        f'{bt(rcx)}  "{path[:32]}"', f'{bt(rcx + 0x40)}  "{path[32:]}"']
    out = run(s, "u")
    assert out[0] == "Booster!BoosterLogPath:" and len(out) == 9
    assert [CODE_ROW.match(line).group(3) for line in out[1:7]] == \
        ["xor", "cmp", "je", "inc", "jmp", "mov"]
    start = m.sym("Booster!BoosterLogPath")
    labels = []
    for _ in range(4):
        step = run(s, "p")
        labels.append(step[0])
        assert step[1].startswith(bt(cpu.rip) + " ")
    assert labels == ["Booster!BoosterLogPath+0x2:", "Booster!BoosterLogPath+0x7:",
                      "Booster!BoosterLogPath+0x9:", "Booster!BoosterLogPath+0xc:"]
    assert cpu.rip == start + 0xC and cpu.regs[0] == 1  # one character counted
    assert run(s, "r eax") == ["eax=00000001"]


def test_t4_process_filter_and_a_breakpoint_inside_the_write_routine(t4):
    m, s = t4
    load_and_stop_in_driver_entry(m, s)
    proc = explorer(m)[0]
    out = run(s, "!process 0 0 explorer.exe")
    assert out[0] == f"PROCESS {proc.eprocess:016x}"
    assert run(s, f"bp /p {proc.eprocess:x} booster!boosterwrite") == []
    write = m.sym("Booster!BoosterWrite")
    inside = write + 5  # after the prologue: `mov rbx, rdx`, the book's line 65
    assert run(s, "bp booster!boosterwrite+0x5") == []
    assert run(s, "bl")[1:] == [
        f"     1 e Disable Clear  {bt(write)}     0001 (0001) Booster!BoosterWrite",
        f"     Match process data {bt(proc.eprocess)}",
        f"     2 e Disable Clear  {bt(inside)}     0001 (0001) Booster!BoosterWrite+0x5"]
    out = run(s, "g")
    # boost.exe's write ran through BoosterWrite's entry: breakpoint 1 (explorer only)
    # did not stop it, breakpoint 2 did
    assert out[:2] == ["Breakpoint 2 hit", "Booster!BoosterWrite+0x5:"]
    assert m.processors[s.processor].cpu.rip == inside
    assert current_image(m, s) == "boost.exe"
    assert run(s, "bl")[1].split()[5:7] == ["0001", "(0001)"]  # no pass counted for it
    sites = [K_ROW.match(line).group(4).split("+")[0] for line in run(s, "k")[1:5]]
    assert sites == ["Booster!BoosterWrite", "nt!IofCallDriver", "nt!IopSynchronousServiceTail",
                     "nt!NtWriteFile"]
    assert run(s, ".detach") == []
    assert s.execute(".detach")[0].data == "quit"


def test_t4_error_of_a_failed_open(t4):
    """The book reads eax after NtCreateFile failed and asks !error; here boost.exe opens
    a device that does not exist."""
    m, s = t4
    assert run(s, "bp nt!ntcreatefile") == []
    assert run(s, "g")[:2] == ["Breakpoint 0 hit", "nt!NtCreateFile:"]
    assert current_image(m, s) == "boost.exe"
    run(s, "gu")
    assert m.processors[s.processor].cpu.regs[0] & 0xFFFFFFFF == 0xC0000034
    assert run(s, "r eax") == ["eax=c0000034"]
    assert run(s, "!error @eax") == [
        "Error code: (NTSTATUS) 0xc0000034 (3221225524) - Object Name not found."]
    assert run(s, "bd *") == []
    assert run(s, "bl")[0].startswith("     0 d Enable Clear  ")
