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
