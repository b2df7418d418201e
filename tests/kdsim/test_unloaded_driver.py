"""A driver unloaded with its timer still set: the debugger reads nt!MmUnloadedDrivers to
list it under `lm`'s "Unloaded modules", to name addresses in it `<Unloaded_tmr.sys>+0x..`
and to blame it in `!analyze -v` for bug check 0xCE."""

from __future__ import annotations

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from machine.scenario import boot_scenario, parse_scenario
from tests.conftest import run
from tests.machine.test_driver_unload import scenario


@pytest.fixture(scope="module")
def crashed():
    m = boot_scenario(parse_scenario(scenario(cancel=False, in_pool=True), "unloader.toml"))
    image = next(i for i in m.modules if i.name == "tmr")
    base, end, dpc = image.base, image.base + image.size, m.sym("tmr!TmrDpc")
    m.run(2_000_000)
    assert m.bugcheck is not None and m.bugcheck.code == 0xCE
    return m, Session(LiveTarget(m)), base, end, dpc


def test_lm_lists_the_unloaded_driver(crashed):
    _m, s, base, end, _ = crashed
    out = run(s, "lm")
    assert out[-3:] == ["", "Unloaded modules:",
                        f"{base >> 32:08x}`{base & 0xFFFFFFFF:08x} "
                        f"{end >> 32:08x}`{end & 0xFFFFFFFF:08x}   tmr.sys"]
    assert not any("tmr" in line for line in out[:-3])  # no longer a loaded module
    assert "Unloaded modules:" not in run(s, "lm m nt")


def test_addresses_in_the_unloaded_image_are_named_by_it(crashed):
    _m, s, base, _end, dpc = crashed
    stack = run(s, "k")
    assert any(line.endswith(f"<Unloaded_tmr.sys>+0x{dpc - base:x}") for line in stack)
    out = run(s, f"u {dpc:x} L1")
    assert out[0] == f"<Unloaded_tmr.sys>+0x{dpc - base:x}:"
    assert out[1].startswith(f"{dpc >> 32:08x}`{dpc & 0xFFFFFFFF:08x} ??")  # unmapped now


def test_analyze_blames_the_unloaded_driver(crashed):
    _m, s, base, _end, dpc = crashed
    out = run(s, "!analyze -v")
    assert "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS (ce)" in out
    assert f"Arg1: {dpc:016x}, Memory address referenced" in out
    assert "IMAGE_NAME:  tmr.sys" in out and "MODULE_NAME: tmr" in out
    assert f"SYMBOL_NAME:  tmr+{dpc - base:x}" in out



def test_ln_names_an_address_in_the_unloaded_image(crashed):
    _m, s, base, _end, dpc = crashed
    assert run(s, f"ln {dpc:x}") == [f"({base >> 32:08x}`{base & 0xFFFFFFFF:08x})   "
                                     f"<Unloaded_tmr.sys>+0x{dpc - base:x}"]
