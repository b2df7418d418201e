"""Kernel-state commands (!pcr, !prcb, !irql, !idt, !dpcs, !timer, !running, !ready, !apc,
!cpuinfo) on the crashed default machine and on a 4-processor machine with a shared
device interrupt connected, timers set, DPCs queued, threads ready and APCs queued."""

from __future__ import annotations

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from machine.ke.dpc import queue_dpc
from machine.ke.idt import idt_table, read_gate
from machine.ke.interrupt import thunk
from machine.ps.create import create_thread
from machine.rtl.lists import insert_tail_list
from machine.types.view import Struct
from tests.conftest import run
from tests.machine.probe import boot_probe

CONNECT = """
    mov     qword ptr [rsp+50h], 0          ; FloatingSave
    mov     qword ptr [rsp+48h], 0          ; ProcessorEnableMask: all
    mov     qword ptr [rsp+40h], 1          ; ShareVector
    mov     qword ptr [rsp+38h], 1          ; Latched
    mov     qword ptr [rsp+30h], 8          ; SynchronizeIrql
    mov     qword ptr [rsp+28h], 8          ; Irql
    mov     qword ptr [rsp+20h], 80h        ; Vector
    xor     r9d, r9d
    xor     r8d, r8d
    lea     rdx, [{isr}]
    lea     rcx, [{obj}]
    call    nt!IoConnectInterrupt
"""
ROUTINES = {
    "DriverEntry": "    sub     rsp, 68h\n"
    + CONNECT.format(isr="Isr1", obj="Interrupt1") + CONNECT.format(isr="Isr2", obj="Interrupt2")
    + """
    lea     rcx, [Timer1]
    xor     edx, edx
    call    nt!KeInitializeTimerEx
    lea     rcx, [TimerDpc]
    lea     rdx, [TimerDpcRoutine]
    xor     r8d, r8d
    call    nt!KeInitializeDpc
    lea     r9, [TimerDpc]
    mov     r8d, 50
    mov     rdx, -1000000
    lea     rcx, [Timer1]
    call    nt!KeSetTimerEx
    lea     rcx, [Timer2]
    xor     edx, edx
    call    nt!KeInitializeTimerEx
    xor     r9d, r9d
    xor     r8d, r8d
    mov     rdx, -100000000
    lea     rcx, [Timer2]
    call    nt!KeSetTimerEx
    xor     eax, eax
    add     rsp, 68h
    ret
""",
    "Isr1": "    mov     al, 1\n    ret\n",
    "Isr2": "    mov     al, 1\n    ret\n",
    "TimerDpcRoutine": "    ret\n",
    "WorkDpcRoutine": "    ret\n",
    "KernelApcRoutine": "    ret\n",
}
GLOBALS = {"Interrupt1": 8, "Interrupt2": 8, "Timer1": 0x40, "Timer2": 0x40, "TimerDpc": 0x40,
           "WorkDpc1": 0x40, "WorkDpc2": 0x40, "Apc1": 0x58, "Apc2": 0x58}


@pytest.fixture(scope="module")
def rich():
    m = boot_probe("ks", ROUTINES, GLOBALS, cpus=4)
    for name in ("WorkDpc1", "WorkDpc2"):
        d = Struct(m.kspace, "_KDPC", m.sym(f"ks!{name}"))
        d.set("Type", 0x13)
        d.set("DeferredRoutine", m.sym("ks!WorkDpcRoutine"))
        queue_dpc(m, m.processors[2], d.address, 0, 0)
    system = next(p for p in m.processes if p.pid == 4)
    ready = [create_thread(m, system, 0x7000 + 4 * i, "nt!KiStartSystemThread", system=True,
                           priority=prio, ideal=ideal, routine=m.sym("ks!WorkDpcRoutine"))
             for i, (prio, ideal) in enumerate(((9, 1), (9, 1), (12, 1), (8, 3)))]
    for name, mode, thread in (("Apc1", 0, ready[0]), ("Apc2", 1, ready[0])):
        apc = Struct(m.kspace, "_KAPC", m.sym(f"ks!{name}"))
        apc.set("Type", 0x12)
        apc.set("Thread", thread.ethread)
        apc.set("KernelRoutine", m.sym("ks!KernelApcRoutine"))
        apc.set("ApcMode", mode)
        head = Struct(m.kspace, "_KTHREAD", thread.ethread).addr(f"ApcState.ApcListHead[{mode}]")
        insert_tail_list(m.kspace, head, apc.addr("ApcListEntry"))
    cpu3 = Struct(m.kspace, "_KPRCB", m.processors[3].prcb)
    m.kspace.write(cpu3.addr("VendorString"), b"GenuineIntel\0")
    cpu3.set("MHz", 2904)
    cpu3.set("CpuType", 6)
    cpu3.set("CpuModel", 0x9E)
    cpu3.set("CpuStepping", 10)
    return m, ready


def session_on(m, processor: int = 0) -> Session:
    return Session(LiveTarget(m), processor=processor)


def prcb(m, n: int) -> Struct:
    return Struct(m.kspace, "_KPRCB", m.processors[n].prcb)


# -- !pcr -------------------------------------------------------------------------------------

def _pcr_value(out: list[str], label: str) -> int:
    row = next(line for line in out if line.startswith("\t") and line.split(":")[0].strip()
               == label)
    assert row == f"\t{label:>19}: {row.split(': ')[1]}"  # label right-aligned to 19
    return int(row.split(": ")[1], 16)


def test_pcr_reads_each_processors_kpcr(rich):
    m, _ = rich
    s = session_on(m)
    for proc in m.processors:
        out = run(s, f"!pcr {proc.number}")
        assert out[0] == f"KPCR for Processor {proc.number} at {proc.pcr:016x}:"
        pcr = Struct(m.kspace, "_KPCR", proc.pcr)
        assert out[1] == f"    Major {pcr.get('MajorVersion')} Minor {pcr.get('MinorVersion')}"
        assert _pcr_value(out, "Prcb") == proc.prcb
        assert _pcr_value(out, "NtTib.SubSystemTib") == proc.pcr  # KPCR.Self overlays it
        assert _pcr_value(out, "Irql") == proc.irql
        assert _pcr_value(out, "CurrentThread") == proc.current.ethread
        assert _pcr_value(out, "IdleThread") == proc.idle.ethread
        assert _pcr_value(out, "IDT") == 0  # no such x64 field: kd shows zero
        assert out.count("") == 3
    assert run(s, "!pcr") == run(s, "!pcr 0")


def test_pcr_lists_the_dpc_queue(rich):
    m, _ = rich
    out = run(session_on(m), "!pcr 2")
    routine = m.sym("ks!WorkDpcRoutine")
    assert out[-2] == (f"\t          DpcQueue:  0x{m.sym('ks!WorkDpc1'):016x} 0x{routine:016x} "
                       "[Normal] ks!WorkDpcRoutine")
    assert out[-1] == ("\t" + " " * 21 + f"0x{m.sym('ks!WorkDpc2'):016x} 0x{routine:016x} "
                       "[Normal] ks!WorkDpcRoutine")
    assert run(session_on(m), "!pcr 1")[-1] == "\t          DpcQueue:"


def test_pcr_on_the_crashed_machine(session, app):
    proc = app.machine.processors[1]
    out = run(session, "!pcr 1")
    assert out[0] == f"KPCR for Processor 1 at {proc.pcr:016x}:"
    assert _pcr_value(out, "CurrentThread") == proc.current.ethread


# -- !prcb ------------------------------------------------------------------------------------

def test_prcb_summarises_each_processor(rich):
    m, _ = rich
    s = session_on(m)
    for proc in m.processors:
        p = prcb(m, proc.number)
        out = run(s, f"!prcb {proc.number}")
        assert out == [
            f"PRCB for Processor {proc.number} at {proc.prcb:016x}:",
            f"Current IRQL -- {proc.irql}",
            f"Threads--  Current {p.get('CurrentThread'):016x} Next {p.get('NextThread'):016x}"
            f" Idle {p.get('IdleThread'):016x}",
            f"Processor Index {proc.number} Number ({p.get('Group')}, {p.get('GroupIndex')}) "
            f"GroupSetMember {p.get('GroupSetMember'):x}",
            f"Interrupt Count -- {p.get('InterruptCount'):08x}",
            f"Times -- Dpc    {p.get('DpcTime'):08x} Interrupt {p.get('InterruptTime'):08x} ",
            f"         Kernel {p.get('KernelTime'):08x} User      {p.get('UserTime'):08x}"]


def test_prcb_on_the_crashed_machine_and_bad_processors(session, app):
    m = app.machine
    out = run(session, "!prcb")
    assert out[0] == f"PRCB for Processor 0 at {m.processors[0].prcb:016x}:"
    assert out[1] == "Current IRQL -- 15"  # KeBugCheckEx raised it
    assert run(session, "!prcb 2") == ["Cannot get PRCB address"]
    assert run(session, "!prcb zz") == ["Couldn't resolve error at 'zz'"]
    assert run(session, "!pcr 7") == ["Cannot get PRCB address"]


# -- !irql ------------------------------------------------------------------------------------

def test_irql_shows_the_saved_irql(session, app):
    m = app.machine
    assert run(session, "!irql") == ["Debugger saved IRQL for processor 0x0 -- 2 "
                                     "(DISPATCH_LEVEL)"]
    saved = prcb(m, 1).get("DebuggerSavedIRQL")
    assert run(session, "!irql 1")[0].startswith(
        f"Debugger saved IRQL for processor 0x1 -- {saved} ")
    assert run(session, "!irql 2") == ["Cannot get PRCB address"]


def test_irql_reads_memory(rich):
    m, _ = rich
    s = session_on(m)
    p = prcb(m, 3)
    for value, text in ((13, "13 (CLOCK_LEVEL)"), (1, "1 (APC_LEVEL)"), (7, "7")):
        p.set("DebuggerSavedIRQL", value)
        assert run(s, "!irql 3") == [f"Debugger saved IRQL for processor 0x3 -- {text}"]
    p.set("DebuggerSavedIRQL", 0)
    assert run(s, "!irql 3") == ["Debugger saved IRQL for processor 0x3 -- 0 (LOW_LEVEL)"]


# -- !idt -------------------------------------------------------------------------------------

def test_idt_lists_every_gate_with_its_handler(session, app):
    m = app.machine
    proc = m.processors[0]
    out = run(session, "!idt")
    assert out[:3] == ["", f"Dumping IDT: {proc.idt:016x}", ""]
    rows = {line[:2]: line for line in out[3:]}
    assert len(rows) == len(idt_table())
    for gate in idt_table():
        handler = read_gate(m.kspace, proc.idt, gate.vector)
        assert rows[f"{gate.vector:02x}"] == (f"{gate.vector:02x}:\t{handler:016x} "
                                              f"nt!{gate.handler}")


def test_idt_names_the_isrs_of_a_shared_device_vector(rich):
    m, _ = rich
    first1 = m.kspace.read_u64(m.sym("ks!Interrupt1"))
    first2 = m.kspace.read_u64(m.sym("ks!Interrupt2"))
    size = m.catalog.get("_KINTERRUPT").size
    for proc in m.processors:
        out = run(session_on(m, proc.number), "!idt 80")
        k1, k2 = first1 + proc.number * size, first2 + proc.number * size
        assert prcb(m, proc.number).get("InterruptObject[128]") == k1
        assert out == ["", f"Dumping IDT: {proc.idt:016x}", "",
                       f"80:\t{thunk(m, 0x80):016x} ks!Isr1 (KINTERRUPT {k1:016x})", "",
                       "\t" + " " * 17 + f"ks!Isr2 (KINTERRUPT {k2:016x})", ""]
    full = run(session_on(m, 2), "!idt")
    assert f"80:\t{thunk(m, 0x80):016x} ks!Isr1 (KINTERRUPT {first1 + 2 * size:016x})" in full
    # -a: every processor's table in turn, each with its own interrupt objects.
    every = run(session_on(m, 2), "!idt -a")
    heads = [i for i, line in enumerate(every) if line.startswith("Dumping IDT: ")]
    assert [every[i] for i in heads] == [f"Dumping IDT: {p.idt:016x}" for p in m.processors]
    for proc, start in zip(m.processors, heads, strict=True):
        table = every[start:heads[proc.number + 1] if proc.number + 1 < len(heads) else None]
        k1 = first1 + proc.number * size
        assert f"80:\t{thunk(m, 0x80):016x} ks!Isr1 (KINTERRUPT {k1:016x})" in table


def test_idt_options_and_errors(session, app):
    proc = app.machine.processors[0]
    assert run(session, "!idt 2f")[3:] == [
        f"2f:\t{read_gate(app.machine.kspace, proc.idt, 0x2F):016x} nt!KiDpcInterrupt"]
    assert run(session, "!idt 40")[3:] == []  # no gate there
    assert set(run(session, "!idt")) <= set(run(session, "!idt -a"))
    assert run(session, "!idt 100") == ["Invalid vector 100"]
    assert run(session, "!idt nosuch") == ["Couldn't resolve error at 'nosuch'"]


# -- !dpcs ------------------------------------------------------------------------------------

def test_dpcs_lists_each_queue(rich, session):
    m, _ = rich
    routine = m.sym("ks!WorkDpcRoutine")
    rows = [f" 2: Normal  : 0x{m.sym('ks!' + n):016x} 0x{routine:016x} ks!WorkDpcRoutine"
            for n in ("WorkDpc1", "WorkDpc2")]
    assert run(session_on(m), "!dpcs") == ["CPU Type      KDPC       Function"] + rows
    assert run(session_on(m), "!dpcs 2") == ["CPU Type      KDPC       Function"] + rows
    assert run(session_on(m), "!dpcs 1") == ["CPU Type      KDPC       Function"]
    assert run(session, "!dpcs") == ["CPU Type      KDPC       Function"]


# -- !timer -----------------------------------------------------------------------------------

def _timers_in_memory(m) -> int:
    count = 0
    for proc in m.processors:
        p = prcb(m, proc.number)
        for i in range(256):
            head = p.addr(f"TimerTable.TimerEntries[0][{i}].Entry")
            entry = m.kspace.read_u64(head)
            while entry != head:
                count += 1
                entry = m.kspace.read_u64(entry)
    return count


def test_timer_lists_the_timer_tables(rich):
    m, _ = rich
    out = run(session_on(m), "!timer")
    assert out[:4] == ["Dump system timers", "", out[2], ""]
    assert out[5] == ("List Timer             Interrupt Low/High Fire Time                  "
                      "DPC/thread")
    for proc in m.processors:
        table = prcb(m, proc.number).addr("TimerTable")
        assert (f"PROCESSOR {proc.number} (nt!_KTIMER_TABLE {table:016x} - Type 0 - "
                "High precision)") in out
    t1 = Struct(m.kspace, "_KTIMER", m.sym("ks!Timer1"))
    t2 = Struct(m.kspace, "_KTIMER", m.sym("ks!Timer2"))
    row1 = next(line for line in out if f"{t1.address:016x}" in line)
    due = t1.get("DueTime")
    assert row1[4:].startswith(f"{t1.address:016x} P  {due & 0xFFFFFFFF:08x} {due >> 32:08x} [")
    assert row1.endswith(f"]  ks!TimerDpcRoutine (DPC @ {m.sym('ks!TimerDpc'):016x}) ")
    row2 = next(line for line in out if f"{t2.address:016x}" in line)
    due = t2.get("DueTime")
    assert row2[4:].startswith(f"{t2.address:016x}    {due & 0xFFFFFFFF:08x} {due >> 32:08x} [")
    assert row2.endswith("]")
    rows = [line for line in out[4:-2] if line and not line.startswith(("PROCESSOR", "List "))]
    assert len(rows) == _timers_in_memory(m)
    assert out[-2:] == ["", f"Total Timers: {len(rows)}, Maximum List: 1"]


def test_timer_fire_times_follow_the_clock(rich):
    m, _ = rich
    out = run(session_on(m), "!timer")
    now = m.tick_count * 156250
    assert out[2].startswith(f"Interrupt time: {now & 0xFFFFFFFF:08x} {now >> 32:08x} [")
    t2 = Struct(m.kspace, "_KTIMER", m.sym("ks!Timer2"))
    row2 = next(line for line in out if f"{t2.address:016x}" in line)
    # due 10 s after it was set: the fire time's seconds are 10 s past the set time's
    fire = row2.split("[")[1].rstrip("]")
    assert len(fire) == 23 and fire[2] == "/" and fire[5] == "/"


# -- !running ---------------------------------------------------------------------------------

def test_running_on_the_crashed_machine(session, app):
    m = app.machine
    out = run(session, "!running")
    assert out[:4] == ["", "System Processors 3 (affinity mask)", "  Idle Processors 2", ""]
    assert out[4] == "     Prcb              Current           Next"
    p0 = m.processors[0]
    assert out[5] == (f"  0  {p0.prcb:016x}  {p0.current.ethread:016x}  {'':16}  "
                      "................")
    assert len(out) == 6
    out = run(session, "!running -i")
    p1 = m.processors[1]
    assert out[6] == f"  1  {p1.prcb:016x}  {p1.idle.ethread:016x}  {'':16}  " + "." * 16
    out = run(session, "!running -it")
    assert out[6:8] == ["", " # Child-SP          RetAddr               Call Site"]
    assert out[8].endswith("nt!KeBugCheckEx")
    assert any(line.endswith("nt!KiIdleLoop+0x2e") for line in out)
    assert run(session, "!running -q") == ["Invalid option -q"]


def test_running_on_an_idle_machine(rich):
    m, _ = rich
    out = run(session_on(m), "!running")
    assert out[1:4] == ["System Processors f (affinity mask)", "  Idle Processors f",
                        "All processors idle."]
    assert len(run(session_on(m), "!running -i")) == 6 + 4


# -- !ready -----------------------------------------------------------------------------------

def test_ready_lists_the_queues_by_processor_and_priority(rich):
    m, ready = rich
    s = session_on(m)
    out = run(s, "!ready")
    first = [run(s, f"!thread {t.ethread:x}")[0] for t in ready]
    assert out == ["Processor 1: Ready Threads at priority 12", first[2],
                   "Processor 1: Ready Threads at priority 9", first[0], first[1],
                   "Processor 3: Ready Threads at priority 8", first[3]]
    assert first[0].startswith(f"THREAD {ready[0].ethread:016x}  Cid 0004.7000  Teb: ")
    assert first[0].endswith("READY on processor 1")
    assert run(s, "!ready 3") == out[-2:]
    assert run(s, "!ready 2") == []


# -- !apc -------------------------------------------------------------------------------------

def test_apc_shows_a_threads_queues(rich):
    m, ready = rich
    s = session_on(m)
    et = ready[0].ethread
    head = Struct(m.kspace, "_KTHREAD", et).addr("ApcState.ApcListHead")
    routine = m.sym("ks!KernelApcRoutine")
    out = run(s, f"!apc thre {et:x}")
    kapc1 = [f"    KAPC @ {m.sym('ks!Apc1'):016x}", "      Type           12",
             f"      KernelRoutine  {routine:016x} ks!KernelApcRoutine+0",
             "      RundownRoutine 0000000000000000 +0"]
    kapc2 = [f"    KAPC @ {m.sym('ks!Apc2'):016x}", *kapc1[1:]]
    assert out == [
        f"Thread {et:016x} ApcStateIndex 0 ApcListHead {head:016x} [KERNEL]", *kapc1,
        f"Thread {et:016x} ApcStateIndex 0 ApcListHead {head + 0x10:016x} [USER]", *kapc2]
    every = run(s, "!apc")
    assert every[0] == "*** Enumerating APCs in all processes"
    system = next(p for p in m.processes if p.pid == 4)
    at = every.index(f"Process {system.eprocess:016x} System")
    indented = ["    " + line for line in out]
    assert every[at + 1:at + 1 + len(out)] == indented
    assert run(s, f"!apc proc {system.eprocess:x}")[1:] == indented
    assert run(s, f"!apc {m.sym('ks!Apc1'):x}") == [line[4:] for line in kapc1]
    other = ready[1].ethread
    assert [line.split(" [")[1] for line in run(s, f"!apc thre {other:x}")] == [
        "KERNEL]", "USER]"]
    assert run(s, "!apc 10") == ["Unable to read KAPC at 0000000000000010"]


# -- !cpuinfo ---------------------------------------------------------------------------------

def test_cpuinfo_reads_each_prcb(rich):
    m, _ = rich
    out = run(session_on(m), "!cpuinfo")
    assert out[0] == "CP F/M/S Manufacturer  MHz Update Signature Features "
    assert len(out) == 1 + len(m.processors)
    assert out[4] == " 3 6,158,10 GenuineIntel 2904 0000000000000000 00000000 "
    # Processor 0 as the machine booted it (the test wrote processor 3's values).
    assert out[1] == " 0 6,158,10 GenuineIntel 3000 0000000000000000 00000000 "
    assert run(session_on(m), "!cpuinfo 3") == [out[0], out[4]]
    assert run(session_on(m), "!cpuinfo 4") == ["Cannot get PRCB address"]


def test_idt_shows_an_unused_device_stub_only_with_a(rich):
    from machine.ke.idt import write_gate

    m, _ = rich
    proc = m.processors[0]
    write_gate(m.kspace, proc.idt, 0x90, thunk(m, 0x90))
    try:
        s = session_on(m)
        row = f"90:\t{thunk(m, 0x90):016x} nt!KiIsrThunk+0x480"
        assert row not in run(s, "!idt")
        assert row in run(s, "!idt -a")
        assert run(s, "!idt 90")[3:] == [row]
    finally:
        Struct(m.kspace, "_KIDTENTRY64", proc.idt + 0x90 * 0x10).set("Present", 0)


def test_dpcs_reports_an_unreadable_dpc(rich):
    m, _ = rich
    link = Struct(m.kspace, "_KDPC", m.sym("ks!WorkDpc1")).addr("DpcListEntry")
    good = m.kspace.read_u64(link)
    m.kspace.write_u64(link, 0xFFFF_F000_0000_0008)
    try:
        out = run(session_on(m), "!dpcs")
        assert out[2] == "Failed to read DPC at 0xfffff00000000000"
        assert len(out) == 3
        assert run(session_on(m), "!pcr 2")[-1] == ("\t" + " " * 21 + "Failed to read DPC at "
                                                    "0xfffff00000000000")
    finally:
        m.kspace.write_u64(link, good)
