"""Build small probe drivers for machine tests: a scenario with one driver whose
globals and routines are given inline, and system threads that run its routines."""

from __future__ import annotations

from machine.ps.create import create_thread
from machine.scenario import boot_scenario, parse_scenario

TRIVIAL_ENTRY = "    xor eax, eax\n    ret\n"


def probe_scenario(name: str, routines: dict[str, str], globals_: dict[str, int] | None = None,
                   cpus: int = 2, seed: int = 1) -> str:
    parts = [f'[scenario]\nname = "{name}"\n[machine]\ncpus = {cpus}\nseed = {seed}\n',
             f'[[driver]]\nname = "{name}"\nentry = "DriverEntry"\n']
    for g, size in (globals_ or {}).items():
        parts.append(f'[[driver.global]]\nname = "{g}"\nsize = {size}\n')
    for r, code in {"DriverEntry": TRIVIAL_ENTRY, **routines}.items():
        parts.append(f'[[driver.routine]]\nname = "{r}"\ncode = """\n{code}"""\n')
    return "\n".join(parts)


def boot_probe(name: str, routines: dict[str, str], globals_: dict[str, int] | None = None,
               cpus: int = 2, seed: int = 1):
    return boot_scenario(parse_scenario(probe_scenario(name, routines, globals_, cpus, seed),
                                        f"{name}.toml"))


def start_system_thread(m, tid: int, start: int):
    """A System-process thread whose start routine is `start` (driver code)."""
    system = next(p for p in m.processes if p.pid == 4)
    return create_thread(m, system, tid, "nt!KiStartSystemThread", system=True,
                         routine=start)


COMPLETE_SUCCESS = """
    sub     rsp, 28h
    mov     dword ptr [rdx+30h], 0          ; Irp->IoStatus.Status = STATUS_SUCCESS
    mov     qword ptr [rdx+38h], 0          ; Irp->IoStatus.Information
    mov     rcx, rdx
    xor     edx, edx
    call    nt!IofCompleteRequest
    xor     eax, eax
    add     rsp, 28h
    ret
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
