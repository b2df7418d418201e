"""Checking a scenario without running it: `kdsim scenario check`.

Parsing checks the file's tables, keys, values and names and compiles driver-language
sources; this also assembles every driver at the address the loader would give it, on
a kernel that is built (nt's symbols, the loader's list) but never started, and looks
up what events name in nt.  Nothing of the scenario executes.
"""

from __future__ import annotations

from dataclasses import dataclass

from machine.machine import MachineConfig
from machine.scenario import Scenario, build_driver_images
from machine.scenario_schema import ScenarioError
from machine.tomlpos import Locator


@dataclass(frozen=True)
class ScenarioSummary:
    drivers: int
    routines: int
    events: int


def check_scenario(scen: Scenario) -> ScenarioSummary:
    """Raises ScenarioError for the first problem; else what the scenario holds."""
    from machine.boot import build_kernel

    m = build_kernel(MachineConfig(cpus=scen.cpus, seed=scen.seed))
    build_driver_images(m, scen)
    at = None
    for i, ev in enumerate(scen.events):
        target = ev.get("page_of")
        if isinstance(target, str) and target not in m.symbols:
            at = at or Locator(scen.text)
            line, column = at.value(("event", i, "page_of"))
            raise ScenarioError(scen.path, line, column, f"unknown symbol `{target}` in "
                                                         "`page_of`")
    return ScenarioSummary(len(scen.drivers), sum(len(d.routines) for d in scen.drivers),
                           len(scen.events))
