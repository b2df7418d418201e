"""Booting the default machine: images, processors, the Idle and System processes, a
small realistic set of user processes, then the scenario's drivers."""

from __future__ import annotations

import random

from machine import routines as _routines  # noqa: F401  (fills the native registry)
from machine.ex.pool import POOL_DATA, init_pool
from machine.ex.worker import create_work_queue
from machine.io.unload import UNLOAD_DATA
from machine.ke.clock import init_watchdogs, publish_time
from machine.ke.idt import build_idt
from machine.ke.interrupt import install_thunks
from machine.ke.msr import init_msrs
from machine.ke.processor import Processor
from machine.ke.timer import init_timer_table
from machine.ldr.loader import (
    HAL_SIZE,
    NT_DATA,
    NT_DATA_RVA,
    NT_SIZE,
    NT_TEXT_RVA,
    add_data_symbols,
    build_native_image,
    link_loaded_module,
)
from machine.machine import Machine, MachineConfig
from machine.mm.counters import MM_DATA, install_counters
from machine.mm.layout import RegionAllocator
from machine.mm.physical import PAGE_SIZE
from machine.ob.object import init_object_manager
from machine.po.power import PO_DATA, init_power_manager
from machine.ps.create import create_process, create_thread, image_base
from machine.ps.usermode import idle_program
from machine.rtl.lists import initialize_list_head
from machine.types.view import Struct

KPCR_STRIDE = 0xC000
PCR_VERSION = 1  # PCR_MAJOR_VERSION and PCR_MINOR_VERSION on x64
CPU_FAMILY, CPU_MODEL, CPU_STEPPING, CPU_MHZ = 6, 0x9E, 0xA, 3000
POOL_REGION_SIZE = 0x100000000
NT_BUILD = 19045
NT_TIMESTAMP = 0x6456F5D1  # ntoskrnl 10.0.19045.2965 image timestamp
# What a 22H2 kernel publishes about itself for everyone (and for a debugger's vertarget):
# nt!NtBuildLab (19045 is an enablement package over the 19041 kernel branch), and
# SharedUserData's version, product type (NtProductWinNt) and suite (TerminalServer |
# SingleUserTS, a Pro edition).
NT_BUILD_LAB = "19041.1.amd64fre.vb_release.191206-1406"
VERSION_DATA = (("NtBuildLab", 0x40, ""),)
NT_MAJOR_VERSION, NT_MINOR_VERSION = 10, 0
NT_PRODUCT_WIN_NT = 1
SUITE_MASK = 0x110
# Uptime at which the simulated clock starts (ticks of 15.625 ms): about 15 minutes.
BOOT_TICKS = 58_000

# (image, parent, session, base priority, threads): the user processes of a fresh
# Windows 10 session, in creation order.
USER_PROCESSES = (
    ("smss.exe", "System", None, 11, 2),
    ("csrss.exe", "smss.exe", 0, 13, 3),
    ("wininit.exe", "smss.exe", 0, 13, 2),
    ("csrss.exe", "smss.exe", 1, 13, 3),
    ("winlogon.exe", "smss.exe", 1, 13, 2),
    ("services.exe", "wininit.exe", 0, 9, 3),
    ("lsass.exe", "wininit.exe", 0, 9, 4),
    ("svchost.exe", "services.exe", 0, 8, 3),
    ("svchost.exe", "services.exe", 0, 8, 4),
    ("svchost.exe", "services.exe", 0, 8, 2),
    ("svchost.exe", "services.exe", 0, 8, 3),
    ("explorer.exe", "winlogon.exe", 1, 8, 4),
    ("notepad.exe", "explorer.exe", 1, 8, 1),
)


class CidAllocator:
    """Process and thread ids come from one table: multiples of 4, increasing."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"cid:{seed}")
        self.next = 0x68

    def take(self) -> int:
        cid = self.next
        self.next += 4 * self.rng.randint(1, 24)
        return cid


def build_kernel(config: MachineConfig) -> Machine:
    m = Machine(config)
    lay = m.layout
    m.stacks = RegionAllocator(lay.kernel_stacks)
    nt = build_native_image(m, "nt", "ntoskrnl.exe", "ntkrnlmp.pdb", lay.nt_base, NT_SIZE,
                            "\\SystemRoot\\system32\\ntoskrnl.exe", NT_TEXT_RVA, "nt")
    nt.timestamp = NT_TIMESTAMP
    # New data goes at the end, so the symbols before it keep their addresses.
    add_data_symbols(m, nt, NT_DATA_RVA,
                     NT_DATA + POOL_DATA + VERSION_DATA + MM_DATA + UNLOAD_DATA + PO_DATA)
    install_counters(m, POOL_REGION_SIZE)  # the memory manager's counters, kept current
    m.kspace.write(m.sym("nt!NtBuildLab"), NT_BUILD_LAB.encode("ascii") + b"\0")
    init_pool(m)  # before the first allocation
    hal = build_native_image(m, "hal", "hal.dll", "hal.pdb", lay.nt_base + 0x1800000, HAL_SIZE,
                             "\\SystemRoot\\system32\\hal.dll", 0x1000, "hal")
    initialize_list_head(m.kspace, m.sym("nt!PsActiveProcessHead"))
    initialize_list_head(m.kspace, m.sym("nt!PsLoadedModuleList"))
    initialize_list_head(m.kspace, m.sym("nt!ExpSystemResourcesList"))
    init_power_manager(m)
    m.kspace.map_new(lay.user_shared_data, PAGE_SIZE)
    _publish_version(m)
    link_loaded_module(m, nt)
    link_loaded_module(m, hal)
    m.kspace.write_u64(m.sym("nt!NtBuildNumber"), 0xF0000000 | NT_BUILD)
    m.kspace.write_u64(m.sym("nt!KeMaximumIncrement"), 156250)
    for sym, value in (("MmPagedPoolStart", lay.paged_pool),
                       ("MmPagedPoolEnd", lay.paged_pool + POOL_REGION_SIZE),
                       ("MmNonPagedPoolStart", lay.nonpaged_pool),
                       ("MmNonPagedPoolEnd", lay.nonpaged_pool + POOL_REGION_SIZE)):
        m.kspace.write_u64(m.sym(f"nt!{sym}"), value)
    m.tick_count = BOOT_TICKS
    publish_time(m)
    m.session_space = m.pool.allocate(0, 0x100, "MmSt")
    init_object_manager(m)
    install_thunks(m)
    _processors(m)
    init_watchdogs(m)
    return m


def _publish_version(m: Machine) -> None:
    """SharedUserData's version and product fields, as the kernel fills them at boot."""
    shared = Struct(m.kspace, "_KUSER_SHARED_DATA", m.layout.user_shared_data)
    shared.set("NtMajorVersion", NT_MAJOR_VERSION)
    shared.set("NtMinorVersion", NT_MINOR_VERSION)
    shared.set("NtBuildNumber", NT_BUILD)
    shared.set("NtProductType", NT_PRODUCT_WIN_NT)
    shared.set("ProductTypeIsValid", 1)
    shared.set("SuiteMask", SUITE_MASK)
    shared.set_bytes("NtSystemRoot", "C:\\Windows".encode("utf-16-le") + b"\0\0")


def _processors(m: Machine) -> None:
    n = m.config.cpus
    m.kspace.write_u64(m.sym("nt!KeNumberProcessors"), n)
    Struct(m.kspace, "_KUSER_SHARED_DATA", m.layout.user_shared_data).set(
        "ActiveProcessorCount", n)
    for i in range(n):
        pcr = m.layout.pcr_area + i * KPCR_STRIDE
        m.kspace.map_new(pcr, m.catalog.get("_KPCR").size)
        k = Struct(m.kspace, "_KPCR", pcr)
        prcb = k.addr("Prcb")
        k.set("Self", pcr)
        k.set("CurrentPrcb", prcb)
        k.set("MajorVersion", PCR_VERSION)
        k.set("MinorVersion", PCR_VERSION)
        p = Struct(m.kspace, "_KPRCB", prcb)
        p.set("Number", i)
        p.set("LegacyNumber", i)
        p.set("GroupSetMember", 1 << i)
        p.set("GroupIndex", i)
        p.set("InitialApicId", i)
        # The simulated processor identifies as one model of a real family.
        p.set("CpuType", CPU_FAMILY)
        p.set("CpuID", 1)
        p.set("CpuModel", CPU_MODEL)
        p.set("CpuStepping", CPU_STEPPING)
        p.set("MHz", CPU_MHZ)
        p.set("CFlushSize", 64)
        p.set_bytes("VendorString", b"GenuineIntel\0")
        for priority in range(32):
            initialize_list_head(m.kspace, p.addr(f"DispatcherReadyListHead[{priority}]"))
        m.kspace.write_u64(m.sym("nt!KiProcessorBlock") + 8 * i, prcb)
        proc = m.add_processor(i, pcr, prcb)
        proc.cpu.gs_base = pcr
        proc.cpu.cr0 = 0x80050033
        proc.cpu.cr4 = 0x350EF8
        proc.cpu.cr3 = m.kspace.cr3
        build_idt(m, proc)
        init_timer_table(m, proc)
        init_msrs(m, proc)
        proc.double_fault_stack = m.stacks.take(0x6000, guard_pages=1) + 0x6000
        m.kspace.map_new(proc.double_fault_stack - 0x6000, 0x6000)


def boot(config: MachineConfig, load_drivers=None, events=(),
         settle_steps: int | None = None) -> Machine:
    """A running machine: every boot thread has run to its first wait.  load_drivers(m)
    maps the scenario's driver images; a system worker thread runs their DriverEntry.
    With settle_steps (a scenario's step budget), a boot still busy after that many steps
    is returned as it is (a DriverEntry that never returns), not an error."""
    m = build_kernel(config)
    cids = CidAllocator(config.seed)
    idle = create_process(m, "Idle", 0, 0, None, 0, kernel_only=True)
    m.kspace.write_u64(m.sym("nt!PsIdleProcess"), idle.eprocess)
    for proc in m.processors:
        t = create_thread(m, idle, 0, "nt!KiIdleLoop", system=True, priority=0,
                          ideal=proc.number, ready=False, idle=True)
        _start_idle(m, proc, t)
    system = create_process(m, "System", 4, 0, None, 8, kernel_only=True)
    m.kspace.write_u64(m.sym("nt!PsInitialSystemProcess"), system.eprocess)
    if load_drivers is not None:
        m.pending_driver_loads.extend(load_drivers(m))
    m.work_queue = create_work_queue(m)
    for i in range(4):  # system worker threads; the first one loads drivers
        create_thread(m, system, cids.take(), "nt!KiStartSystemThread", system=True,
                      priority=13, ideal=i % config.cpus, routine=m.sym("nt!ExpWorkerThread"))
    by_image: dict[str, int] = {"System": 4}
    for image, parent, session, prio, nthreads in USER_PROCESSES:
        pid = cids.take()
        proc_rec = create_process(m, image, pid, by_image[parent], session, prio)
        by_image.setdefault(image, pid)
        for j in range(nthreads):
            start_user_thread(m, proc_rec, cids.take(), idle_program, ideal=j % config.cpus)
    m.cids = cids
    m.by_image = by_image
    for tick, action in events:
        m.at_tick(m.tick_count + tick, action)
    result = m.run(settle_steps or 2_000_000, until_quiet=True)
    if result.reason != "quiet" and m.bugcheck is None and settle_steps is None:
        from machine.machine import MachineError

        raise MachineError(f"boot did not settle ({result.reason} after {result.steps} steps)")
    return m


def start_user_thread(m: Machine, process, tid: int, program_factory, ideal: int = 0):
    """A user thread: it starts in the kernel at KiStartUserThread and leaves for user mode,
    where it follows program_factory(m, thread)."""
    rtl_user_thread_start = m.layout.ntdll_base + 0x7D2F0
    t = create_thread(m, process, tid, "nt!KiStartUserThread", priority=8, ideal=ideal,
                      win32_start=image_base(process.pid) + 0x1A40,
                      ready=False)
    t.user_start = rtl_user_thread_start
    t.user_program = program_factory(m, t)
    m.make_ready(t)
    return t


def _start_idle(m: Machine, proc: Processor, t) -> None:
    proc.idle = t
    proc.current = t
    cpu = proc.cpu
    cpu.regs[:] = t.saved_regs
    cpu.rip = t.saved_rip
    kt = Struct(m.kspace, "_KTHREAD", t.ethread)
    kt.set("State", 2)
    kt.set("Running", 1)
    p = Struct(m.kspace, "_KPRCB", proc.prcb)
    p.set("IdleThread", t.ethread)
    p.set("CurrentThread", t.ethread)
