"""Build small probe drivers for machine tests: a scenario with one driver whose
globals and routines are given inline, and system threads that run its routines; device
drivers and the client programs that use them; and the pieces of driver code several
tests share (creating a thread, completing or pending an IRP, connecting an interrupt)."""

from __future__ import annotations

from iced_x86 import Decoder, Instruction

from machine.ps.create import create_thread
from machine.scenario import boot_scenario, parse_scenario

TRIVIAL_ENTRY = "    xor eax, eax\n    ret\n"

# A filter's dispatch tail (label `upper`, IRP in rdx): copy the stack location to the
# next one, set OnComplete (context 1234h, on success, error and cancel) and pass the IRP
# to the LowerDevice global.
PASS_DOWN_WITH_COMPLETION = """upper:
    push    rsi
    push    rdi
    sub     rsp, 28h
    mov     rsi, qword ptr [rdx+0B8h]       ; IoCopyCurrentIrpStackLocationToNext
    lea     rdi, [rsi-48h]
    mov     ecx, 38h
    rep     movsb
    mov     rax, qword ptr [rdx+0B8h]       ; IoSetCompletionRoutine on the next location
    lea     rcx, [OnComplete]
    mov     qword ptr [rax-10h], rcx
    mov     qword ptr [rax-8], 1234h
    mov     byte ptr [rax-45h], 0E0h        ; invoke on success, error and cancel
    mov     rcx, qword ptr [LowerDevice]
    call    nt!IofCallDriver
    add     rsp, 28h
    pop     rdi
    pop     rsi
    ret
"""


def probe_scenario(name: str, routines: dict[str, str], globals_: dict[str, int] | None = None,
                   cpus: int = 2, seed: int = 1, verified: bool = False) -> str:
    """The scenario's TOML; `verified` puts the driver under Driver Verifier (its pool
    allocations come from special pool)."""
    verifier = f'verifier = ["{name}"]\n' if verified else ""
    parts = [f'[scenario]\nname = "{name}"\n[machine]\ncpus = {cpus}\n{verifier}seed = {seed}\n',
             f'[[driver]]\nname = "{name}"\nentry = "DriverEntry"\n']
    for g, size in (globals_ or {}).items():
        parts.append(f'[[driver.global]]\nname = "{g}"\nsize = {size}\n')
    for r, code in {"DriverEntry": TRIVIAL_ENTRY, **routines}.items():
        parts.append(f'[[driver.routine]]\nname = "{r}"\ncode = """\n{code}"""\n')
    return "\n".join(parts)


def boot_probe(name: str, routines: dict[str, str], globals_: dict[str, int] | None = None,
               cpus: int = 2, seed: int = 1, verified: bool = False):
    text = probe_scenario(name, routines, globals_, cpus, seed, verified)
    return boot_scenario(parse_scenario(text, f"{name}.toml"))


def start_system_thread(m, tid: int, start: int, ideal: int = 0):
    """A System-process thread whose start routine is `start` (driver code), queued on
    processor `ideal`."""
    system = next(p for p in m.processes if p.pid == 4)
    return create_thread(m, system, tid, "nt!KiStartSystemThread", system=True,
                         routine=start, ideal=ideal)


def decoded(m, start: int, mnemonic: int, limit: int) -> list[Instruction]:
    """The instructions with `mnemonic` among those decoded from the `limit` bytes of
    memory at `start`, in order."""
    return [ins for ins in Decoder(64, m.kspace.read(start, limit), ip=start)
            if ins.mnemonic == mnemonic]


def create_system_thread_code(start: str, context: str = "0") -> str:
    """Driver code (in a frame of 38h bytes or more) for PsCreateSystemThread(
    &ThreadHandle, THREAD_ALL_ACCESS, NULL, NULL, NULL, start, context): the handle goes
    to the ThreadHandle global (8 bytes)."""
    return f"""
    mov     qword ptr [rsp+30h], {context}        ; StartContext
    lea     rax, [{start}]
    mov     qword ptr [rsp+28h], rax        ; StartRoutine
    mov     qword ptr [rsp+20h], 0          ; ClientId
    xor     r9d, r9d
    xor     r8d, r8d
    mov     edx, 1FFFFFh
    lea     rcx, [ThreadHandle]
    call    nt!PsCreateSystemThread
"""


DELAYED_THREAD_GLOBALS = {"Timer": 0x40, "ThreadHandle": 8}


def delayed_thread(start: str) -> dict[str, str]:
    """DriverEntry and the routine of the thread it starts (part of the scenario, so
    snapshots rebuild it), which waits 100 ms for the Timer global, letting the boot
    settle, then jumps to `start`.  The driver needs DELAYED_THREAD_GLOBALS."""
    entry = """
    sub     rsp, 48h
    lea     rcx, [Timer]
    call    nt!KeInitializeTimer
    xor     r8d, r8d
    mov     rdx, -1000000                   ; in 100 ms
    lea     rcx, [Timer]
    call    nt!KeSetTimer
""" + create_system_thread_code("Delayed") + """
    xor     eax, eax
    add     rsp, 48h
    ret
"""
    delayed = f"""
    sub     rsp, 38h
    mov     qword ptr [rsp+20h], 0
    xor     r9d, r9d
    xor     r8d, r8d
    xor     edx, edx
    lea     rcx, [Timer]
    call    nt!KeWaitForSingleObject
    add     rsp, 38h
    jmp     {start}
"""
    return {"DriverEntry": entry, "Delayed": delayed}


def complete_request(irp: str, information: int) -> str:
    """Dispatch code that completes the IRP (register `irp`) with STATUS_SUCCESS and
    `information` (IofCompleteRequest, no boost); it leaves eax = STATUS_SUCCESS."""
    return f"""
    mov     dword ptr [{irp}+30h], 0          ; Irp->IoStatus.Status = STATUS_SUCCESS
    mov     qword ptr [{irp}+38h], {information:X}h         ; Irp->IoStatus.Information
    mov     rcx, {irp}
    xor     edx, edx
    call    nt!IofCompleteRequest
    xor     eax, eax
"""


COMPLETE_SUCCESS = ("\n    sub     rsp, 28h" + complete_request("rdx", 0)
                    + "    add     rsp, 28h\n    ret\n")


def connect_interrupt_code(mask: int) -> str:
    """Driver code (in a frame of 58h bytes or more) for IoConnectInterrupt(&Interrupt,
    Isr, 1234h, NULL, vector 80h, IRQL 8, SynchronizeIrql 8, LevelSensitive, not shared,
    `mask`, no floating save): the status goes to the ConnectStatus global."""
    return f"""
    mov     qword ptr [rsp+50h], 0          ; FloatingSave
    mov     qword ptr [rsp+48h], {mask}     ; ProcessorEnableMask
    mov     qword ptr [rsp+40h], 0          ; ShareVector
    mov     qword ptr [rsp+38h], 0          ; LevelSensitive
    mov     qword ptr [rsp+30h], 8          ; SynchronizeIrql
    mov     qword ptr [rsp+28h], 8          ; Irql
    mov     qword ptr [rsp+20h], 80h        ; Vector
    xor     r9d, r9d                        ; SpinLock: the object's own
    mov     r8d, 1234h                      ; ServiceContext
    lea     rdx, [Isr]
    lea     rcx, [Interrupt]
    call    nt!IoConnectInterrupt
    mov     qword ptr [ConnectStatus], rax
"""


def device_driver(name: str, device: str, majors: dict[int, str], routines: dict[str, str],
                  globals_: dict[str, int] | None = None, entry_tail: str = "",
                  device_flags: int = 0) -> str:
    """TOML for a driver that creates \\Device\\<device> with a \\??\\<device> link and
    sets its MajorFunction entries; `entry_tail` runs at the end of DriverEntry (rbx =
    the DriverObject).  A routine named CreateClose defaults to completing with success.
    `device_flags` are or-ed into the device's Flags (DO_BUFFERED_IO, DO_DIRECT_IO)."""
    entry = ["    push    rbx", "    sub     rsp, 40h", "    mov     rbx, rcx"]
    for major, routine in sorted(majors.items()):
        entry += [f"    lea     rax, [{routine}]",
                  f"    mov     qword ptr [rbx+0{0x70 + 8 * major:X}h], rax"]
    entry += ["    lea     rax, [DeviceObject]", "    mov     qword ptr [rsp+30h], rax",
              "    mov     dword ptr [rsp+28h], 0", "    mov     dword ptr [rsp+20h], 0",
              "    mov     r9d, 22h", "    lea     r8, [DeviceName]", "    xor     edx, edx",
              "    mov     rcx, rbx", "    call    nt!IoCreateDevice",
              "    lea     rdx, [DeviceName]", "    lea     rcx, [LinkName]",
              "    call    nt!IoCreateSymbolicLink"]
    if device_flags:
        entry += ["    mov     rax, qword ptr [DeviceObject]",
                  f"    or      dword ptr [rax+30h], 0{device_flags:X}h"]
    text = "\n".join(entry) + "\n" + entry_tail + \
        "    xor     eax, eax\n    add     rsp, 40h\n    pop     rbx\n    ret\n"
    parts = [f'[[driver]]\nname = "{name}"\nentry = "DriverEntry"\n',
             '[[driver.global]]\nname = "DeviceObject"\n']
    for g, size in (globals_ or {}).items():
        parts.append(f'[[driver.global]]\nname = "{g}"\nsize = {size}\n')
    parts.append(f"[[driver.string]]\nname = \"DeviceName\"\nvalue = '\\Device\\{device}'\n")
    parts.append(f"[[driver.string]]\nname = \"LinkName\"\nvalue = '\\??\\{device}'\n")
    all_routines = {"DriverEntry": text, "CreateClose": COMPLETE_SUCCESS, **routines}
    for r, code in all_routines.items():
        parts.append(f'[[driver.routine]]\nname = "{r}"\ncode = """\n{code}"""\n')
    return "\n".join(parts)


def init_timer_dpc(dpc_routine: str) -> str:
    """DriverEntry code (an `entry_tail`) that initializes the Timer and Dpc globals
    (TIMER_DPC_GLOBALS), the DPC running `dpc_routine`."""
    return f"""
    lea     rcx, [Timer]
    xor     edx, edx
    call    nt!KeInitializeTimerEx
    lea     rcx, [Dpc]
    lea     rdx, [{dpc_routine}]
    xor     r8d, r8d
    call    nt!KeInitializeDpc
"""


TIMER_DPC_GLOBALS = {"Timer": 64, "Dpc": 64}


def pend_until_timer(irp: str, location: str) -> str:
    """Dispatch code that keeps the IRP (register `irp`) in the PendingIrp global, marks
    it pending (IoMarkIrpPending, on the stack location in register `location`) and sets
    Timer to queue Dpc in 100 ms; it leaves eax = STATUS_PENDING."""
    return f"""
    mov     qword ptr [PendingIrp], {irp}
    or      byte ptr [{location}+3], 1      ; IoMarkIrpPending
    lea     r8, [Dpc]
    mov     rdx, -1000000                   ; in 100 ms
    lea     rcx, [Timer]
    call    nt!KeSetTimer
    mov     eax, 103h                       ; STATUS_PENDING
"""


def complete_pending_irp(information: int) -> str:
    """A DPC routine (for init_timer_dpc) that completes the IRP in the PendingIrp global
    with STATUS_SUCCESS and `information`."""
    return f"""
    sub     rsp, 28h
    mov     rcx, qword ptr [PendingIrp]
    mov     dword ptr [rcx+30h], 0          ; IoStatus.Status
    mov     qword ptr [rcx+38h], {information:X}h        ; IoStatus.Information
    xor     edx, edx
    call    nt!IofCompleteRequest
    add     rsp, 28h
    ret
"""


# A dispatch routine that appends the request's MajorFunction to the MajorLog global
# (MAJOR_LOG_GLOBALS) and completes it with success.
LOG_MAJOR_AND_COMPLETE = """
    mov     rax, qword ptr [rdx+0B8h]
    movzx   ecx, byte ptr [rax]             ; MajorFunction
    mov     rax, qword ptr [MajorCount]
    lea     r8, [MajorLog]
    mov     byte ptr [r8+rax], cl
    inc     qword ptr [MajorCount]
""" + COMPLETE_SUCCESS
MAJOR_LOG_GLOBALS = {"MajorLog": 8, "MajorCount": 8}


def major_log(m, driver: str) -> bytes:
    """The MajorFunction codes LOG_MAJOR_AND_COMPLETE saw, in order, read from memory."""
    count = m.kspace.read_u64(m.sym(f"{driver}!MajorCount"))
    return m.kspace.read(m.sym(f"{driver}!MajorLog"), count)


def client_program(device: str, steps: list[str], at_tick: int = 2,
                   overlapped: bool = False) -> str:
    """A start_process event: client.exe opens \\\\.\\<device> (for asynchronous I/O if
    `overlapped`) and runs `steps` (TOML inline tables, `{device}` standing for the device
    path)."""
    path = f"'\\\\.\\{device}'"
    opening = f"{{ open = {path}, async = true }}" if overlapped else f"{{ open = {path} }}"
    body = ",\n    ".join([opening] + [s.replace("{device}", path) for s in steps])
    return (f'[[event]]\nat_tick = {at_tick}\naction = "start_process"\n'
            f'image = "client.exe"\nprogram = [\n    {body},\n]\n')


def client_process(m):
    """The process a client_program event started."""
    return next(p for p in m.processes if p.image == "client.exe")


def client_file(m, proc) -> int:
    """The file object behind the handle the client program's open left in its PEB
    (HANDLE_OFFSET), looked up in its process's handle table."""
    from machine.events import HANDLE_OFFSET
    from machine.ob.object import lookup_handle
    from machine.types.view import Struct

    table = Struct(m.kspace, "_EPROCESS", proc.eprocess).get("ObjectTable")
    return lookup_handle(m, table, proc.space.read_u64(proc.peb + HANDLE_OFFSET))


def scenario_header(name: str, cpus: int = 2, seed: int = 1) -> str:
    return f'[scenario]\nname = "{name}"\n[machine]\ncpus = {cpus}\nseed = {seed}\n'


def pool_in_use(m, tag: str) -> int:
    """Blocks of a tag allocated and not freed, from nt!PoolTrackTable (as !poolused
    reads it)."""
    from machine.ex.pool import tag_value
    from machine.ex.pooltrack import tag_hash
    from machine.types.view import Struct, sizeof

    key = tag_value(tag)
    table = m.kspace.read_u64(m.sym("nt!PoolTrackTable"))
    entries = m.kspace.read_u64(m.sym("nt!PoolTrackTableSize"))
    index = tag_hash(key, entries - 1)
    for _ in range(entries):
        e = Struct(m.kspace, "_POOL_TRACKER_TABLE", table + index * sizeof("_POOL_TRACKER_TABLE"))
        if e.get("Key") & 0xFFFFFFFF == key:
            return (e.get("NonPagedAllocs") - e.get("NonPagedFrees")
                    + e.get("PagedAllocs") - e.get("PagedFrees"))
        if e.get("Key") == 0:
            return 0
        index = (index + 1) & (entries - 1)
    return 0
