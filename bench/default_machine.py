"""Benchmarks of the default machine.  Run: python bench/default_machine.py [repeats]

Prints medians: booting the myfault scenario to its quiet point, running it on to the
bug check, opening the debugger session and `!analyze -v`, and the interpreter's
simulated instructions per second on a counted loop (cpu.step, one instruction a call).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from commands.session import Session  # noqa: E402
from kdsim.live import LiveTarget  # noqa: E402
from machine.cpu.harness import Harness, assemble  # noqa: E402
from machine.scenario import boot_scenario, builtin_scenario  # noqa: E402


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(repeats: int) -> None:
    scen = builtin_scenario("myfault")
    boots, crashes, analyses = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        m = boot_scenario(scen)
        t1 = time.perf_counter()
        m.run()
        t2 = time.perf_counter()
        s = Session(LiveTarget(m), processor=m.bugcheck.processor)
        out = s.execute("!analyze -v")[0].lines
        assert any("FAILURE_BUCKET_ID" in ln for ln in out)
        t3 = time.perf_counter()
        boots.append(t1 - t0)
        crashes.append(t2 - t1)
        analyses.append(t3 - t2)
    med = statistics.median
    print(f"boot default machine (2 CPUs):  median {med(boots):.4f} s")
    print(f"run on to the 0xD1 bug check:   median {med(crashes):.4f} s")
    print(f"session + !analyze -v:          median {med(analyses):.4f} s")
    rates = []
    for _ in range(repeats):
        h = Harness(assemble("48ffc0", "48ffc9", "75f8"))
        h.cpu.regs[1] = 200_000
        n = 3 * 200_000
        step = h.cpu.step
        elapsed = timed(lambda step=step, n=n: [step() for _ in range(n)])
        rates.append(n / elapsed)
    print(f"cpu.step, inc/dec/jnz loop:     median {med(rates) / 1e6:.2f} M instr/s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
