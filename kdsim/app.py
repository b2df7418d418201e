"""A debugging session on a booted scenario: the machine, its Target, the command
session, and the start-up text kd prints when it stops on a crashed target."""

from __future__ import annotations

from dataclasses import dataclass

from commands import fmt
from commands.analyze import analyze
from commands.disasm import disassemble_one
from commands.errors import KdError
from commands.session import Session
from kdsim.live import LiveTarget
from machine.machine import Machine
from machine.scenario import Scenario, boot_scenario

VERSION = "0.1.0"


@dataclass
class App:
    scenario: Scenario
    machine: Machine
    target: LiveTarget
    session: Session

    @classmethod
    def start(cls, scenario: Scenario, seed: int | None = None, cpus: int | None = None,
              max_steps: int = 20_000_000) -> App:
        m = boot_scenario(scenario, seed=seed, cpus=cpus)
        m.run(max_steps)
        target = LiveTarget(m)
        session = Session(target, processor=target.stop_processor)
        return cls(scenario, m, target, session)

    def banner(self) -> list[str]:
        s = self.session
        nt = s.symbols.module_named("nt")
        build = s.reader.u64(s.nt("NtBuildNumber")) & 0xFFFF
        ticks = s.reader.u64(s.nt("KeTickCount"))
        ms = ticks * 156250 // 10_000
        up = (f"{ms // 86_400_000} days {ms // 3_600_000 % 24}:{ms // 60_000 % 60:02}:"
              f"{ms // 1000 % 60:02}.{ms % 1000:03}")
        lines = [f"kdsim {VERSION}: simulated kernel debugger",
                 "",
                 f"Scenario: {self.scenario.name} - {self.scenario.title} "
                 f"(seed {self.machine.config.seed})",
                 f"Windows 10 Kernel Version {build} MP ({self.target.processor_count} procs)"
                 " Free x64",
                 f"Kernel base = 0x{fmt.addr(nt.base if nt else 0)} PsLoadedModuleList = "
                 f"0x{fmt.addr(s.nt('PsLoadedModuleList'))}",
                 f"System Uptime: {up}",
                 ""]
        if self.machine.bugcheck is not None:
            lines += self.crash_banner()
        regs = self.target.registers(s.processor)
        code, _ = disassemble_one(lambda a, n: self.target.read_virtual(a, n), s.symbols,
                                  regs["rip"])
        return lines + code

    def crash_banner(self) -> list[str]:
        s = self.session
        try:
            a = analyze(s)
        except KdError:
            return []
        params = ", ".join(f"{v:x}" for v, _ in a.args)
        lines = ["*" * 79, "*" + " " * 77 + "*",
                 "*" + " " * 24 + "Bugcheck Analysis" + " " * 36 + "*",
                 "*" + " " * 77 + "*", "*" * 79, "",
                 "Use !analyze -v to get detailed debugging information.", "",
                 f"BugCheck {a.code:X}, {{{params}}}", ""]
        if a.image:
            lines += [f"Probably caused by : {a.image} ( {a.symbol} )", ""]
        lines += ["Followup:     MachineOwner", "---------", ""]
        return lines
