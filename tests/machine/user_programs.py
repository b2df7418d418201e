"""User processes for machine tests whose threads run Python programs (the way
machine.ps.usermode runs user code), each with a page of data for what they report."""

from __future__ import annotations

from machine.boot import start_user_thread
from machine.machine import STEPS_PER_TICK
from machine.ob.object import insert_handle
from machine.ps.create import create_process
from machine.types.view import Struct

DATA = 0x40000  # past the PEB: a page of the test programs' own data
UNSET = 0xFFFF  # what every quadword of that page holds until a program writes it


def user_process(m, image: str, programs: dict) -> tuple:
    """A process whose threads run the given programs (name -> factory(m, thread,
    handles, data)); `handles` maps each thread's name to a handle to it in the process's
    table, as CreateThread would have returned."""
    proc = create_process(m, image, m.cids.take(), 4, 1)
    data = proc.peb + DATA
    proc.space.map_new(data, 0x1000, user=True)
    proc.space.write(data, UNSET.to_bytes(8, "little") * 0x200)
    handles: dict[str, int] = {}
    threads = {name: start_user_thread(m, proc, m.cids.take(),
                                       lambda m, t, f=factory: f(m, t, handles, data))
               for name, factory in programs.items()}
    table = Struct(m.kspace, "_EPROCESS", proc.eprocess).get("ObjectTable")
    for name, thread in threads.items():
        handles[name] = insert_handle(m, table, thread.ethread)
    return proc, threads, data


def delay(space, at: int, ticks: int) -> int:
    """A relative interval of `ticks` clock ticks, written at `at` (a LARGE_INTEGER)."""
    space.write_u64(at, -(ticks * 156250) & 0xFFFFFFFFFFFFFFFF)
    return at


def run_until(m, done, limit: int = 40) -> None:
    """Run a quarter tick at a time until `done()` holds, at most `limit` times."""
    for _ in range(limit):
        if done():
            return
        m.run(STEPS_PER_TICK // 4)
    raise AssertionError("the condition never came")
