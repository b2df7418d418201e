"""Scale benchmark: the default machine plus P processes of T threads each, every thread
run to its first wait.  Run: python bench/scale.py [processes] [threads_per_process] [cpus]

Prints the time to create them, the time to run them all to their waits, and the
physical frames in use.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine.boot import start_user_thread  # noqa: E402
from machine.ps.create import create_process  # noqa: E402
from machine.ps.usermode import idle_program  # noqa: E402
from machine.scenario import boot_scenario, builtin_scenario  # noqa: E402


def main(processes: int, threads: int, cpus: int) -> None:
    t0 = time.perf_counter()
    m = boot_scenario(builtin_scenario("myfault"), cpus=cpus)
    t1 = time.perf_counter()
    services = m.by_image["services.exe"]
    for _ in range(processes):
        p = create_process(m, "svchost.exe", m.cids.take(), services, 0)
        for j in range(threads):
            start_user_thread(m, p, m.cids.take(), idle_program, ideal=j % cpus)
    t2 = time.perf_counter()
    m.run(until_quiet=True)
    t3 = time.perf_counter()
    print(f"{cpus} CPUs, +{processes} processes x {threads} threads "
          f"({len(m.processes)} processes, {len(m.threads)} threads in all)")
    print(f"boot default machine: {t1 - t0:.3f} s")
    print(f"create processes and threads: {t2 - t1:.3f} s")
    print(f"run every new thread to its first wait: {t3 - t2:.3f} s")
    print(f"physical frames: {len(m.phys.frames)} ({len(m.phys.frames) * 4 // 1024} MiB)")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(*(args + [500, 10, 2][len(args):]))
