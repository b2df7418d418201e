"""!apc layouts as kd prints them: `!apc thre` puts both queue heads of the thread at the
left margin (an empty queue too), with the KAPC four columns in; inside a process listing
the thread lines are indented by four and only queues holding APCs are shown.  A KAPC
shows Type (hex), KernelRoutine and RundownRoutine, each routine as `symbol+<offset>`."""

from __future__ import annotations

import pytest

from commands.session import Session
from kdsim.live import LiveTarget
from machine.machine import STEPS_PER_TICK
from machine.scenario import boot_scenario, parse_scenario
from machine.types.view import Struct
from tests.conftest import run
from tests.machine.probe import scenario_header

# A program queues three user APCs to itself; the last one, queued before a
# non-alertable sleep, stays on its user-mode APC list.
SCRIPT = scenario_header("apcs") + """
[[event]]
at_tick = 2
action = "start_process"
image = "sleeper.exe"
program = [
    { queue_apc = 7 },
    { test_alert = true },
    { queue_apc = 9 },
    { sleep_ms = 5000, alertable = true },
    { queue_apc = 11 },
    { sleep_ms = 40 },
]
"""


@pytest.fixture(scope="module")
def queued():
    m = boot_scenario(parse_scenario(SCRIPT, "apcs.toml"))
    m.run(STEPS_PER_TICK * 12)
    assert m.bugcheck is None
    proc = next(p for p in m.processes if p.image == "sleeper.exe")
    return m, proc, Session(LiveTarget(m), processor=0)


def _kapc_lines(m, s: Session, apc: int, indent: str) -> list[str]:
    a = Struct(m.kspace, "_KAPC", apc)
    kernel, rundown = a.get("KernelRoutine"), a.get("RundownRoutine")
    name = s.symbols.name_for(kernel)
    assert name is not None and "+" not in name  # an APC routine is a function's start
    rundown_text = f"+{rundown:x}" if s.symbols.name_for(rundown) is None else \
        s.symbols.name_for(rundown) + "+0"
    return [f"{indent}KAPC @ {apc:016x}",
            f"{indent}  Type           {a.get('Type'):x}",
            f"{indent}  KernelRoutine  {kernel:016x} {name}+0",
            f"{indent}  RundownRoutine {rundown:016x} {rundown_text}"]


def test_apc_thre_shows_both_queue_heads_at_the_margin(queued):
    m, proc, s = queued
    et = proc.threads[0].ethread
    kt = Struct(m.kspace, "_KTHREAD", et)
    head = kt.addr("ApcState.ApcListHead")
    apc = kt.get("ApcState.ApcListHead[1].Flink") - 0x10  # KAPC.ApcListEntry
    assert Struct(m.kspace, "_KAPC", apc).get("NormalContext") == 11
    index = kt.get("ApcStateIndex")
    out = run(s, f"!apc thre {et:x}")
    assert out == [
        f"Thread {et:016x} ApcStateIndex {index} ApcListHead {head:016x} [KERNEL]",
        f"Thread {et:016x} ApcStateIndex {index} ApcListHead {head + 0x10:016x} [USER]",
        *_kapc_lines(m, s, apc, "    ")]
    assert out[3] == "      Type           12"  # ApcObject (0x12), in hex
    assert not any("NormalRoutine" in line for line in out)


def test_apc_thre_on_threads_without_apcs_still_shows_the_heads(queued):
    m, _proc, s = queued
    for p in m.processes[:3]:
        for t in p.threads:
            head = Struct(m.kspace, "_KTHREAD", t.ethread).addr("ApcState.ApcListHead")
            out = run(s, f"!apc thre {t.ethread:x}")
            assert [line.split(" ApcListHead ")[1] for line in out] == [
                f"{head:016x} [KERNEL]", f"{head + 0x10:016x} [USER]"]
            assert all(line.startswith(f"Thread {t.ethread:016x} ApcStateIndex ")
                       for line in out)


def test_process_listings_indent_and_skip_empty_queues(queued):
    m, proc, s = queued
    et = proc.threads[0].ethread
    alone = run(s, f"!apc thre {et:x}")
    out = run(s, f"!apc proc {proc.eprocess:x}")
    assert out == [f"Process {proc.eprocess:016x} sleeper.exe", "    " + alone[1],
                   *["    " + line for line in alone[2:]]]
    every = run(s, "!apc")
    assert every[0] == "*** Enumerating APCs in all processes"
    names = [line for line in every if line.startswith("Process ")]
    assert names == [f"Process {p.eprocess:016x} {p.image}" for p in m.processes
                     if p.pid != 0]  # the Idle process is not on the active list
    at = every.index(out[0])
    assert every[at:at + len(out)] == out
    # every other process has no APC queued: its line stands alone
    assert len(every) == 1 + len(names) + len(out) - 1


def test_a_single_kapc_at_the_margin(queued):
    m, proc, s = queued
    kt = Struct(m.kspace, "_KTHREAD", proc.threads[0].ethread)
    apc = kt.get("ApcState.ApcListHead[1].Flink") - 0x10
    assert run(s, f"!apc {apc:x}") == _kapc_lines(m, s, apc, "")
