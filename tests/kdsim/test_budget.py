"""The step budget: a scenario that neither bug-checks nor stops (a DriverEntry that never
returns, a driver allocating pool without end) is broken into at its budget with a
message, and the debugger opens there; the pool has a maximum past which allocations
fail."""

from __future__ import annotations

import pytest

from commands.runcontrol import BREAK_EXCEPTION
from kdsim.app import App
from machine.ex import pool as pool_module
from machine.scenario import ScenarioError, parse_scenario
from tests.conftest import run
from tests.machine.drvlang_util import lang_scenario

BUDGET = 20_000
MESSAGE = (f"kdsim: the scenario ran {BUDGET} steps without stopping (its step budget); "
           "breaking in")

SPIN = """
global Spins: u64;
routine DriverEntry(drv: ptr, reg: ptr): u32 {
    while (TRUE) { Spins += 1; }
    return 0;
}
"""

# Each pass asks for 1 MiB of nonpaged pool and keeps it: Allocated counts the blocks it
# got, Failed the NULLs, Last is the last block.
STORM = """
global Allocated: u64;
global Failed: u64;
global Last: u64;
routine DriverEntry(drv: ptr, reg: ptr): u32 {
    while (TRUE) {
        Last = ExAllocatePoolWithTag(NonPagedPool, 0x100000, 0x6D727453);
        if (Last == NULL) { Failed += 1; } else { Allocated += 1; }
    }
    return 0;
}
"""


def budgeted(name: str, source: str, budget: int = BUDGET) -> str:
    """One processor (the run is quicker) and the budget."""
    return lang_scenario(name, source, cpus=1).replace("seed = 1\n",
                                                       f"seed = 1\nstep_budget = {budget}\n")


def global_u64(app: App, name: str) -> int:
    m = app.machine
    return m.kspace.read_u64(m.sym(name))


def test_a_driver_entry_that_never_returns_is_broken_into_at_the_budget():
    app = App.start(parse_scenario(budgeted("spin", SPIN), "spin.toml"))
    m = app.machine
    assert m.bugcheck is None and app.broke_in and app.out_of_budget == BUDGET
    assert m.steps >= BUDGET
    banner = app.banner()
    assert MESSAGE in banner
    assert banner.index(MESSAGE) < banner.index(BREAK_EXCEPTION)
    assert global_u64(app, "spin!Spins") > 1000  # it ran, in memory
    # The debugger stops where the loop is: the processor running DriverEntry.
    entry = m.sym("spin!DriverEntry")
    stopped = [p for p in m.processors if entry <= p.cpu.rip < entry + 0x100]
    assert stopped, "no processor is in DriverEntry"
    out = run(app.session, "!thread")
    assert any("spin!DriverEntry+0x" in line for line in out)


def test_an_allocation_storm_meets_the_pool_maximum_and_then_the_budget(monkeypatch):
    plain = App.start(parse_scenario(budgeted("storm", "routine DriverEntry(drv: ptr, "
                                                       "reg: ptr): u32 { return 0; }\n"),
                                     "storm.toml"))
    booted = plain.machine.pool.regions[pool_module.NONPAGED_POOL].alloc
    # A maximum 8 MiB above what the boot itself uses keeps the test quick.
    maximum = booted.next - booted.base + 0x800000
    monkeypatch.setattr(pool_module, "POOL_MAXIMUM", maximum)
    app = App.start(parse_scenario(budgeted("storm", STORM), "storm.toml"))
    m = app.machine
    assert m.bugcheck is None and app.out_of_budget == BUDGET
    assert MESSAGE in app.banner()
    allocated, failed = global_u64(app, "storm!Allocated"), global_u64(app, "storm!Failed")
    assert allocated == 8 and failed > 0  # 8 MiB: eight blocks, then NULL
    assert global_u64(app, "storm!Last") == 0
    # The memory manager's counter, as !vm reads it, stays within the maximum.
    pages = global_u64(app, "nt!MmAllocatedNonPagedPool")
    assert pages * 0x1000 <= maximum


def test_a_scenario_that_crashes_within_its_budget_gets_no_message():
    app = App.start(parse_scenario(budgeted("crash", "routine DriverEntry(drv: ptr, reg: ptr)"
                                                     ": u32 {\n    breakpoint;\n    return 0;\n"
                                                     "}\n", budget=2_000_000), "crash.toml"))
    assert app.machine.bugcheck is not None and app.out_of_budget is None
    assert not any(line.startswith("kdsim: the scenario ran") for line in app.banner())


@pytest.mark.parametrize("value, message", [
    ("5", "`step_budget` must be from 10000 to 0x77359400, not 5"),
    ('"lots"', "`step_budget` must be a whole number from 10000 to 0x77359400"),
])
def test_the_budget_has_a_range(value, message):
    text = budgeted("spin", SPIN).replace(f"step_budget = {BUDGET}", f"step_budget = {value}")
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "spin.toml")
    assert info.value.message == message
    assert (info.value.line, info.value.column) == (6, 15)
