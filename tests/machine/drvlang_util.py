"""Scenarios whose driver is written in the driver language, for the drvlang tests."""

from __future__ import annotations

from machine.scenario import boot_scenario, parse_scenario


def lang_scenario(name: str, source: str, events: str = "", cpus: int = 2, seed: int = 1,
                  extra: str = "") -> str:
    """TOML for one driver whose `source` is given (a literal string, kept verbatim);
    `extra` adds TOML to the [[driver]] table (globals or routines in assembly)."""
    return (f'[scenario]\nname = "{name}"\n[machine]\ncpus = {cpus}\nseed = {seed}\n\n'
            f'[[driver]]\nname = "{name}"\nentry = "DriverEntry"\n'
            f"source = '''\n{source}'''\n{extra}\n{events}")


def boot_lang(name: str, source: str, events: str = "", **kw):
    return boot_scenario(parse_scenario(lang_scenario(name, source, events, **kw),
                                        f"{name}.toml"))


def u64(m, symbol: str, index: int = 0) -> int:
    return m.kspace.read_u64(m.sym(symbol) + 8 * index)
