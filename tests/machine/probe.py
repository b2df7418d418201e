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
                  globals_: dict[str, int] | None = None, entry_tail: str = "") -> str:
    """TOML for a driver that creates \\Device\\<device> with a \\??\\<device> link and
    sets its MajorFunction entries; `entry_tail` runs at the end of DriverEntry (rbx =
    the DriverObject).  A routine named CreateClose defaults to completing with success."""
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


def client_program(device: str, steps: list[str], at_tick: int = 2) -> str:
    """A start_process event: client.exe opens \\\\.\\<device> and runs `steps` (TOML
    inline tables, `{device}` standing for the device path)."""
    path = f"'\\\\.\\{device}'"
    body = ",\n    ".join([f"{{ open = {path} }}"] + [s.replace("{device}", path)
                                                       for s in steps])
    return (f'[[event]]\nat_tick = {at_tick}\naction = "start_process"\n'
            f'image = "client.exe"\nprogram = [\n    {body},\n]\n')


def scenario_header(name: str, cpus: int = 2, seed: int = 1) -> str:
    return f'[scenario]\nname = "{name}"\n[machine]\ncpus = {cpus}\nseed = {seed}\n'
