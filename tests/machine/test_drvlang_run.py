"""Drivers written in the driver language, run on booted machines: the results in
memory are those of C (arithmetic), the catalog (field offsets) and nt (pool, IRQL,
DPCs), and a crash in compiled code unwinds through it in the debugger."""

from __future__ import annotations

import random
import re

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from machine.drvlang import compile_driver
from machine.events import IOSB_OFFSET
from machine.machine import STEPS_PER_TICK
from machine.types.catalog import load_catalog
from tests.conftest import run
from tests.machine.drvlang_util import boot_lang, u64
from tests.machine.probe import client_process, client_program, pool_in_use

MASK = (1 << 64) - 1
# name -> (bits, signed)
TYPES = {"i32": (32, True), "u32": (32, False), "i64": (64, True), "u64": (64, False),
         "u8": (8, False), "i8": (8, True), "u16": (16, False), "i16": (16, True)}
OPS = ["a + b", "a - b", "a * b", "a / b", "a % b", "a & b", "a | b", "a ^ b",
       "a << s", "a >> s", "a < b", "a <= b", "a == b", "a != b", "-a", "~a", "!a",
       "a > b && a != 0", "a < b || b == 1"]


def c_result(op: str, a: int, b: int, s: int, bits: int, signed: bool) -> int:
    """What C gives for `op` on two values of the type, stored to a u64."""
    pbits, psigned = (32, True) if bits < 32 else (bits, signed)  # integer promotion

    def wrap(v: int) -> int:
        v &= (1 << pbits) - 1
        return v - (1 << pbits) if psigned and v >> (pbits - 1) else v

    def trunc_div(x: int, y: int) -> int:
        q = abs(x) // abs(y)
        return q if (x < 0) == (y < 0) else -q

    value = {
        "a + b": lambda: wrap(a + b), "a - b": lambda: wrap(a - b),
        "a * b": lambda: wrap(a * b), "a / b": lambda: wrap(trunc_div(a, b)),
        "a % b": lambda: wrap(a - trunc_div(a, b) * b), "a & b": lambda: wrap(a & b),
        "a | b": lambda: wrap(a | b), "a ^ b": lambda: wrap(a ^ b),
        "a << s": lambda: wrap(a << s), "a >> s": lambda: wrap(a) >> s,
        "a < b": lambda: int(a < b), "a <= b": lambda: int(a <= b),
        "a == b": lambda: int(a == b), "a != b": lambda: int(a != b),
        "-a": lambda: wrap(-a), "~a": lambda: wrap(~a), "!a": lambda: int(a == 0),
        "a > b && a != 0": lambda: int(a > b and a != 0),
        "a < b || b == 1": lambda: int(a < b or b == 1),
    }[op]()
    return value & MASK


def pairs(bits: int, signed: bool, count: int) -> list[tuple[int, int, int]]:
    rng = random.Random(bits * 2 + signed)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    edge = [lo, hi, 0, 1, -1 if signed else 2, 7, 3]
    out = []
    while len(out) < count:
        a = edge[len(out)] if len(out) < len(edge) else rng.randint(lo, hi)
        b = rng.choice([rng.randint(lo, hi), rng.randint(1, 9), -3 if signed else 3, 1])
        if b == 0 or (signed and a == lo and b == -1):
            continue  # C leaves these undefined
        out.append((a, b, rng.randrange(bits if bits >= 32 else 31)))
    return out


@pytest.mark.parametrize("type_", sorted(TYPES))
def test_arithmetic_gives_cs_results_for_many_values(type_):
    bits, signed = TYPES[type_]
    cases = pairs(bits, signed, 14)
    body = "\n".join(f"    out[{i}] = {op};" for i, op in enumerate(OPS))
    calls = "\n".join(f"    Ops({a}, {b}, {s}, &Out[{i * len(OPS)}]);"
                      for i, (a, b, s) in enumerate(cases))
    source = f"""
global Out: u64[{len(cases) * len(OPS)}];
routine Ops(a: {type_}, b: {type_}, s: u32, out: *u64) {{
{body}
}}
routine DriverEntry(drv: ptr, reg: ptr) {{
{calls}
}}
"""
    m = boot_lang("arith", source)
    for i, (a, b, s) in enumerate(cases):
        for j, op in enumerate(OPS):
            got = u64(m, "arith!Out", i * len(OPS) + j)
            assert got == c_result(op, a, b, s, bits, signed), (op, a, b, s)


def test_mixed_signedness_and_widths_convert_as_c_does():
    source = """
global Out: u64[8];
routine Mixed(a: i32, b: u32, c: i64, d: u8) {
    Out[0] = a < b;           // both u32: -1 becomes 0xFFFFFFFF
    Out[1] = a + b;           // u32
    Out[2] = a + c;           // i64
    Out[3] = b + c;           // i64
    Out[4] = d - 10;          // i32: negative
    Out[5] = (u8)(d + 250);   // wraps at 8 bits
    Out[6] = (i16)0x18000;    // truncates and sign-extends
    Out[7] = b / (u32)a;      // unsigned division
}
routine DriverEntry(drv: ptr, reg: ptr) {
    Mixed(-1, 1, -5, 3);
}
"""
    m = boot_lang("mixed", source)
    got = [u64(m, "mixed!Out", i) for i in range(8)]
    assert got == [0, 0, -6 & MASK, -4 & MASK, -7 & MASK, (3 + 250) & 0xFF,
                   -0x8000 & MASK, 1 // 0xFFFFFFFF]


def test_loops_and_branches_run_as_written():
    source = """
global Sum: u64;
global Evens: u64;
global Kinds: u64[4];
global Steps: u64;
routine Kind(x: i32): u32 {
    if (x < 0) { return 1; } else if (x == 0) { return 2; } else if (x < 10) { return 3; }
    return 4;
}
routine DriverEntry(drv: ptr, reg: ptr) {
    for i in 0..10 {
        for j in i..10 {
            Sum += j;
        }
    }
    let n = 0;
    while (1) {
        n += 1;
        if (n > 100) { break; }
        if (n % 2) { continue; }
        Evens += n;
    }
    Kinds[0] = Kind(-5); Kinds[1] = Kind(0); Kinds[2] = Kind(7); Kinds[3] = Kind(1000);
    let k: u64 = 27;
    while (k != 1) {
        if (k & 1) { k = 3 * k + 1; } else { k = k >> 1; }
        Steps += 1;
    }
}
"""
    m = boot_lang("loops", source)
    assert u64(m, "loops!Sum") == sum(j for i in range(10) for j in range(i, 10))
    assert u64(m, "loops!Evens") == sum(range(2, 101, 2))
    assert [u64(m, "loops!Kinds", i) for i in range(4)] == [1, 2, 3, 4]
    assert u64(m, "loops!Steps") == 111  # the Collatz sequence of 27


def test_calls_with_more_than_four_arguments_direct_and_through_a_pointer():
    source = """
global Out: u64[4];
routine Sum8(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64, h: u32): u64 {
    return a + 2 * b + 3 * c + 4 * d + 5 * e + 6 * f + 7 * g + 8 * h;
}
routine Twice(x: u64): u64 { return x * 2; }
routine DriverEntry(drv: ptr, reg: ptr) {
    let x: u64 = 10;
    Out[0] = Sum8(1, 2, 3, 4, 5, 6, 7, 8);
    Out[1] = Sum8(x, x + 1, Twice(x), 4, Twice(Twice(x)), x * x, 0x100000000, x);
    Out[2] = call(&Sum8, 8, 7, 6, 5, 4, 3, 2, 1);
    let f = &Twice;
    Out[3] = call(f, Sum8(1, 1, 1, 1, 1, 1, 1, 1));
}
"""
    m = boot_lang("calls", source)

    def s8(*v):
        return sum((i + 1) * x for i, x in enumerate(v))

    assert [u64(m, "calls!Out", i) for i in range(4)] == [
        s8(1, 2, 3, 4, 5, 6, 7, 8), s8(10, 11, 20, 4, 40, 100, 0x100000000, 10),
        s8(8, 7, 6, 5, 4, 3, 2, 1), 2 * s8(*[1] * 8)]


DEVICE = """
global DeviceObject: *_DEVICE_OBJECT;
global LastCode: u32;
global StatusOffset: u64;
global StackOffset: u64;
global StatusBack: u64;
global Majors: u8[4];
global Count: u32;
string DeviceName = "\\Device\\Lang";
string LinkName = "\\??\\Lang";

routine DriverEntry(drv: *_DRIVER_OBJECT, reg: ptr): u32 {
    drv->MajorFunction[IRP_MJ_CREATE] = &Complete;
    drv->MajorFunction[IRP_MJ_CLOSE] = &Complete;
    drv->MajorFunction[IRP_MJ_DEVICE_CONTROL] = &Control;
    let status = IoCreateDevice(drv, 0, &DeviceName, FILE_DEVICE_UNKNOWN, 0, FALSE,
                                &DeviceObject);
    if (status != STATUS_SUCCESS) { return status; }
    return IoCreateSymbolicLink(&LinkName, &DeviceName);
}

routine Complete(dev: *_DEVICE_OBJECT, irp: *_IRP): u32 {
    let sl = irp->Tail.Overlay.CurrentStackLocation;
    Majors[Count] = sl->MajorFunction;
    Count += 1;
    irp->IoStatus.Status = STATUS_SUCCESS;
    irp->IoStatus.Information = 0;
    IofCompleteRequest(irp, IO_NO_INCREMENT);
    return STATUS_SUCCESS;
}

routine Control(dev: *_DEVICE_OBJECT, irp: *_IRP): u32 {
    let sl = irp->Tail.Overlay.CurrentStackLocation;
    LastCode = sl->Parameters.DeviceIoControl.IoControlCode;
    StatusOffset = (u64)&irp->IoStatus.Status - (u64)irp;
    StackOffset = (u64)&irp->Tail.Overlay.CurrentStackLocation - (u64)irp;
    Majors[Count] = sl->MajorFunction;
    Count += 1;
    irp->IoStatus.Status = STATUS_INVALID_DEVICE_REQUEST;
    StatusBack = irp->IoStatus.Status;            // an Int4B: read back sign-extended
    irp->IoStatus.Status = STATUS_SUCCESS;
    irp->IoStatus.Information = 0x1234;
    IofCompleteRequest(irp, IO_NO_INCREMENT);
    return STATUS_SUCCESS;
}
"""


def test_a_dispatch_routine_reads_and_writes_irp_fields_at_the_catalogs_offsets():
    code = 0x222007
    m = boot_lang("lang", DEVICE, client_program(
        "Lang", [f"{{ ioctl = {code:#x}, device = {{device}} }}"]))
    m.run(STEPS_PER_TICK * 6)
    catalog = load_catalog()
    assert m.bugcheck is None
    assert u64(m, "lang!LastCode") & 0xFFFFFFFF == code
    assert u64(m, "lang!StatusOffset") == catalog.resolve("_IRP", "IoStatus.Status")[0]
    assert u64(m, "lang!StackOffset") == catalog.resolve(
        "_IRP", "Tail.Overlay.CurrentStackLocation")[0]
    assert m.kspace.read(m.sym("lang!Majors"), 3) == bytes([0x00, 0x0E, 0x00])
    assert u64(m, "lang!StatusBack") == 0xFFFFFFFFC0000010
    proc = client_process(m)
    iosb = proc.space.read(proc.peb + IOSB_OFFSET, 16)
    assert int.from_bytes(iosb[:4], "little") == 0
    assert int.from_bytes(iosb[8:], "little") == 0x1234


def test_pool_allocations_with_a_tag_show_in_the_pool_tracker():
    source = """
global Blocks: u64[3];
routine DriverEntry(drv: ptr, reg: ptr) {
    for i in 0..3 {
        Blocks[i] = ExAllocatePoolWithTag(NonPagedPool, 0x40 + 0x10 * i, 'Lang');
    }
    ExFreePoolWithTag(Blocks[1], 'Lang');
    let p = (*u32)Blocks[0];
    *p = 0xfeedface;
    p[1] = 'Lang';
}
"""
    m = boot_lang("pool", source)
    blocks = [u64(m, "pool!Blocks", i) for i in range(3)]
    assert all(blocks) and len(set(blocks)) == 3
    assert pool_in_use(m, "Lang") == 2
    assert m.kspace.read(blocks[0], 8) == (0xFEEDFACE).to_bytes(4, "little") + b"Lang"


def test_a_spin_lock_raises_irql_to_dispatch_level_and_releasing_lowers_it():
    source = """
global SpinLock: _KSPIN_LOCK;
global Irql: u8[4];
global Held: u64;
routine DriverEntry(drv: ptr, reg: ptr) {
    Irql[0] = KeGetCurrentIrql();
    let old = KeAcquireSpinLockRaiseToDpc(&SpinLock);
    Irql[1] = KeGetCurrentIrql();
    Held = SpinLock;
    Irql[2] = old;
    KeReleaseSpinLock(&SpinLock, old);
    Irql[3] = KeGetCurrentIrql();
}
"""
    m = boot_lang("spin", source)
    assert list(m.kspace.read(m.sym("spin!Irql"), 4)) == [0, 2, 0, 0]
    assert u64(m, "spin!Held") & 1 and u64(m, "spin!SpinLock") == 0


def test_a_dpc_initialized_and_queued_runs_at_dispatch_level():
    source = """
global Dpc: _KDPC;
global Ran: u64;
global Seen: u64[3];
routine DriverEntry(drv: ptr, reg: ptr) {
    KeInitializeDpc(&Dpc, &DpcRoutine, 0x1234);
    KeInsertQueueDpc(&Dpc, 5, 6);
}
routine DpcRoutine(dpc: *_KDPC, context: u64, arg1: u64, arg2: u64) {
    Ran = context + arg1 + arg2;
    Seen[0] = KeGetCurrentIrql();
    Seen[1] = (u64)dpc->DeferredRoutine;
    Seen[2] = (u64)dpc == (u64)&Dpc;
}
"""
    m = boot_lang("dpc", source)
    m.run(200_000, until_quiet=True)
    assert u64(m, "dpc!Ran") == 0x1234 + 11
    assert [u64(m, "dpc!Seen", i) for i in range(3)] == [2, m.sym("dpc!DpcRoutine"), 1]


CRASHER = """
global ThreadHandle: u64;
routine DriverEntry(drv: ptr, reg: ptr): u32 {
    return PsCreateSystemThread(&ThreadHandle, 0x1FFFFF, NULL, NULL, NULL, &Worker, 0);
}
routine Worker(context: ptr) {
    Crash((*_IRP)context);
}
routine Crash(irp: *_IRP) {
    irp->IoStatus.Status = STATUS_UNSUCCESSFUL;   // irp is NULL
}
"""


def test_a_null_dereference_in_a_system_thread_is_0x7e_and_k_names_the_compiled_routines():
    m = boot_lang("crash", CRASHER)
    m.run(200_000)
    assert m.bugcheck is not None and m.bugcheck.code == 0x7E
    status, fault, _record, context = m.bugcheck.params
    assert status == 0xC0000005
    assert m.sym("crash!Crash") < fault < m.sym("crash!Crash") + 0x40
    target = LiveTarget(m)
    s = Session(target, processor=target.stop_processor)
    assert any(f"crash!Crash+0x{fault - m.sym('crash!Crash'):x}" in line
               for line in run(s, f"ln {fault:x}"))
    run(s, f".cxr {context:x}")
    frames = [line.split()[-1] for line in run(s, "k") if re.match(r"[0-9a-f]{2} ", line)]
    assert frames[0] == f"crash!Crash+0x{fault - m.sym('crash!Crash'):x}"
    assert frames[1].startswith("crash!Worker+0x")
    assert frames[2:] == ["nt!PspSystemThreadStartup+0x55", "nt!KiStartSystemThread+0x28"] \
        or all(f.startswith("nt!") for f in frames[2:])
    listing = run(s, "u crash!Crash L1")
    assert listing[0] == "crash!Crash:" and listing[1].split()[-2:] == ["sub", "rsp,38h"]


def test_a_runaway_loop_is_stopped_by_the_step_budget():
    source = """
global ThreadHandle: u64;
global Spins: u64;
global Interval: i64 = -1000000;    // 100 ms: the boot settles first
routine DriverEntry(drv: ptr, reg: ptr): u32 {
    return PsCreateSystemThread(&ThreadHandle, 0x1FFFFF, NULL, NULL, NULL, &Spin, 0);
}
routine Spin(context: ptr) {
    KeDelayExecutionThread(KernelMode, FALSE, &Interval);
    while (TRUE) { Spins += 1; }
}
"""
    m = boot_lang("spin", source)
    assert u64(m, "spin!Spins") == 0
    assert m.run(STEPS_PER_TICK * 20).reason == "budget"
    assert u64(m, "spin!Spins") > 1000


def test_the_same_source_gives_the_same_bytes():
    first = boot_lang("lang", DEVICE)
    second = boot_lang("lang", DEVICE)
    start = first.sym("lang!DriverEntry")
    assert start == second.sym("lang!DriverEntry")
    assert first.kspace.read(start, 0x200) == second.kspace.read(start, 0x200)
    assert compile_driver(DEVICE) == compile_driver(DEVICE)


def test_pointer_arithmetic_raw_memory_and_bit_fields():
    source = """
global Words: u32[8];
global Out: u64[8];
global Idt: _KIDTENTRY64;
global Push: _EX_PUSH_LOCK;
routine DriverEntry(drv: ptr, reg: ptr) {
    let p: *u32 = &Words[1];
    let q = p + 3;                  // four elements on
    *q = 0x11;
    q[1] = 0x22;                    // Words[5]
    q -= 2;                         // Words[2]
    *q += 5;
    Out[0] = q - &Words[0];         // elements, not bytes
    Out[1] = (u64)(p + 1) - (u64)p; // bytes
    u16[(u64)&Words[6]] = 0xBEEF;
    Out[2] = u8[(u64)&Words[6] + 1];
    Idt.IstIndex = 2;
    Idt.Type = 0xE;
    Idt.Dpl = 3;
    Idt.Present = 1;
    Out[3] = Idt.Dpl;
    Out[4] = u16[(u64)&Idt + 4];
    Push.Shared = 0x123456789ABCDEF;
    Push.Locked = 1;
    Out[5] = Push.Shared;
    Out[6] = Push.Value;
}
"""
    m = boot_lang("ptrs", source)
    words = [int.from_bytes(m.kspace.read(m.sym("ptrs!Words") + 4 * i, 4), "little")
             for i in range(8)]
    assert words == [0, 0, 5, 0, 0x11, 0x22, 0xBEEF, 0]
    out = [u64(m, "ptrs!Out", i) for i in range(7)]
    assert out[:3] == [2, 4, 0xBE]
    assert out[3] == 3
    assert out[4] == 2 | 0xE << 8 | 3 << 13 | 1 << 15
    assert out[5] == 0x123456789ABCDEF
    assert out[6] == 0x123456789ABCDEF << 4 | 1
