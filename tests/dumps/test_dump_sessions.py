"""A dump opened in kdsim answers every inspection command exactly as the live crashed
machine did: the debugger reads only memory, registers, symbols and types.  Run
control is refused, as kd refuses it on a dump."""

from __future__ import annotations

import pytest

from commands.session import Session
from tests.dumps.dumpkit import SCENARIOS, crashed, dump_session, write
from tests.e2e.test_cli import kdsim

# 30 inspection commands (several print pages; some depend on the processor switched to).
TRANSCRIPT = [
    "!analyze -v", "k", "kv", "kn 5", "!process 0 7", "!thread", "dt nt!_KPRCB @$prcb",
    "!irp @$t0", "!idt -a", "!pool @rcx", "lm", "db @rsp L40", "r", "!pcr", "!prcb",
    "!running", "!stacks", "!locks", "!dpcs", "!timer", "!vm", "!pte @rip", "!poolused",
    "x myfault!*", "u @rip", "ub @rip", "!irql", "vertarget", ".bugcheck", "rdmsr c0000082",
    "~1s", "k", "!thread", "dq nt!PsActiveProcessHead L2", "!devstack \\Device\\Myfault",
    "!drvobj myfault 7", "dps @rsp L10", "!sysinfo cpuinfo",
]


def transcript(session: Session, commands: list[str]) -> list[str]:
    out = []
    for command in commands:
        out.append(f"{session.prompt}{command}")
        out += [line for res in session.execute(command) for line in res.lines]
    return out


@pytest.mark.parametrize("name", ["myfault", "worker-null", "power-irp", "spinlock-deadlock",
                                  "myfault-stack-overflow"])
@pytest.mark.parametrize("option", ["/f", "/ka"])
def test_a_dump_gives_the_live_machines_output(name, option, tmp_path):
    assert len(TRANSCRIPT) >= 30
    app = crashed(name)
    path = write(app, tmp_path / "memory.dmp", option)
    live = transcript(Session(app.target, processor=app.target.stop_processor), TRANSCRIPT)
    _, session = dump_session(path)
    assert transcript(session, TRANSCRIPT) == live
    assert sum("Memory access error" in line for line in live) < 5  # mostly real output


@pytest.mark.parametrize("command", ["g", "p", "t", "gu", "bp nt!KeBugCheckEx",
                                     "ba w8 nt!KiBugCheckData", "bu myfault!DriverEntry"])
def test_run_control_is_refused_on_a_dump(command, tmp_path):
    _, session = dump_session(write(crashed("myfault"), tmp_path / "m.dmp"))
    out = [line for res in session.execute(command) for line in res.lines]
    name = command.split()[0]
    assert out[0].endswith(f"^ No runnable debuggees error in '{command}'") \
        or out[0].endswith(f"^ No runnable debuggees error in '{name}'"), out
    assert [line for res in session.execute("bl") for line in res.lines] == []


def test_memory_and_registers_of_a_dump_cannot_be_edited(tmp_path):
    _, session = dump_session(write(crashed("myfault"), tmp_path / "m.dmp"))
    before = [line for res in session.execute("db @rsp L8; r rax") for line in res.lines]
    session.execute("eb @rsp 41; r rax=1")
    after = [line for res in session.execute("db @rsp L8; r rax") for line in res.lines]
    assert after == before


def test_kdsim_z_opens_a_dump_with_kds_banner(tmp_path):
    path = write(crashed("myfault"), tmp_path / "memory.dmp")
    res = kdsim("-z", str(path), stdin="k 1\ng\nq\n")
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[3] == f"Loading Dump File [{path}]"
    assert out[4] == "Kernel Complete Dump File: Full address space is available"
    assert out[5] == "Scenario myfault: High IRQL fault (kernel-mode) (seed 1)"
    assert "BugCheck D1, {ffff8001b0110000, 2, 0, fffff805738e115a}" in out
    assert "Probably caused by : myfault.sys ( myfault!MyfaultHighIrqlFault+1a )" in out
    assert "0: kd>        ^ No runnable debuggees error in 'g'" in out


def test_kdsim_run_writes_the_dump_a_crash_leaves(tmp_path):
    path = tmp_path / "MEMORY.DMP"
    res = kdsim("run", str(SCENARIOS / "myfault-double-free.toml"), "--dump", str(path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"BugCheck C2: dump written to {path}")
    _, session = dump_session(path)
    assert [line for res in session.execute(".bugcheck") for line in res.lines][0] == \
        "Bugcheck code 000000C2"
    hang = kdsim("run", str(SCENARIOS / "abba-deadlock.toml"), "--dump",
                 str(tmp_path / "x.dmp"))
    assert hang.returncode == 1 and "did not bug-check" in hang.stderr
    assert not (tmp_path / "x.dmp").exists()
