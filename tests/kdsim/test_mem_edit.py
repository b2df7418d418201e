"""e* commands write through the target: read back with d* and straight from memory; a
bad address or a dump-like target gives kd's caret error and writes nothing."""

from __future__ import annotations

import pytest

from commands.fmt import addr
from commands.session import Session
from commands.target import TargetNotLive
from kdsim.app import App
from kdsim.live import LiveTarget
from machine.scenario import builtin_scenario
from tests.conftest import run


@pytest.fixture(scope="module")
def own_app() -> App:
    """A machine of its own: these tests change memory."""
    return App.start(builtin_scenario("myfault"))


@pytest.fixture()
def s(own_app: App) -> Session:
    return Session(own_app.target, processor=own_app.target.stop_processor)


def test_numeric_edits_of_several_sizes(s):
    where = s.symbols.address_of("myfault!LastValue")
    assert run(s, "eb myfault!LastValue 41 42 43 44 45 46 47 48") == []
    assert s.target.read_virtual(where, 8) == b"ABCDEFGH"
    run(s, "ew myfault!LastValue 1234, 5678")
    assert s.target.read_virtual(where, 4) == bytes.fromhex("34127856")
    # `80000000 -1` is one expression (ffffffff`7fffffff): too big for a dword
    assert run(s, "ed myfault!LastValue 80000000 -1") == ["Overflow error at '80000000 -1'"]
    run(s, "ed myfault!LastValue 80000000 ffffffff")
    assert run(s, "dd myfault!LastValue L2") == [f"{addr(where)}  80000000 ffffffff"]
    run(s, "eq myfault!LastValue fffff805`12345678")
    assert s.reader.u64(where) == 0xFFFFF80512345678
    run(s, "ep myfault!LastValue myfault")
    assert s.reader.u64(where) == s.symbols.module_named("myfault").base
    assert run(s, "dps myfault!LastValue L1") == [
        f"{addr(where)}  {addr(s.reader.u64(where))} myfault"]


def test_edits_reach_every_kind_of_memory(s):
    """A kernel stack, a pool page, read-only nt code: kd writes through protection."""
    rsp = s.registers()["rsp"]
    pool = s.reader.u64(s.symbols.address_of("myfault!DeviceObject"))
    nt = s.symbols.module_named("nt").base
    for target in (rsp + 0x200, pool + 0x30, nt + 0x4E):
        old = s.reader.u64(target)
        run(s, f"eq {target:x} 1122334455667788")
        assert s.reader.u64(target) == 0x1122334455667788
        run(s, f"eq {target:x} {old:x}")
        assert s.reader.u64(target) == old


def test_string_edits(s):
    where = s.symbols.address_of("myfault!LastValue")
    run(s, "eq myfault!LastValue ffffffffffffffff ffffffffffffffff")
    run(s, 'ea myfault!LastValue "abc"')
    assert s.target.read_virtual(where, 4) == b"abc\xff"
    run(s, 'eza myfault!LastValue "xy"')
    assert s.target.read_virtual(where, 4) == b"xy\0\xff"
    assert run(s, "da myfault!LastValue") == [f'{addr(where)}  "xy"']
    run(s, 'ezu myfault!LastValue "Hi"')
    assert s.target.read_virtual(where, 6) == "Hi".encode("utf-16-le") + b"\0\0"
    run(s, 'eu myfault!LastValue "Q"')
    assert run(s, "du myfault!LastValue") == [f'{addr(where)}  "Qi"']


def test_bad_edits_write_nothing(s):
    where = s.symbols.address_of("myfault!LastValue")
    run(s, "eq myfault!LastValue 0")
    assert run(s, "eb 0 1 2") == [" " * 12 + "^ Memory access error in 'eb 0 1 2'"]
    paged = s.reader.u64(s.symbols.address_of("myfault!PagedBuffer"))
    assert run(s, f"ed {paged:x} 1")[0].endswith("^ Memory access error in "
                                                 f"'ed {paged:x} 1'")
    assert run(s, "eb myfault!LastValue 100") == ["Overflow error at '100'"]
    assert run(s, "eb myfault!LastValue") == ["Numeric expression missing from '<EOL>'"]
    assert run(s, "ea myfault!LastValue abc") == ["Syntax error at 'abc'"]
    assert run(s, "eb nosuch 1")[0].startswith("Couldn't resolve error at 'nosuch")
    assert s.reader.u64(where) == 0


class DumpLike(LiveTarget):
    @property
    def is_live(self) -> bool:
        return False

    def write_virtual(self, address: int, data: bytes, dtb: int | None = None) -> None:
        raise TargetNotLive()


def test_a_target_that_cannot_be_written_refuses(own_app):
    s = Session(DumpLike(own_app.machine), processor=own_app.target.stop_processor)
    where = s.symbols.address_of("myfault!LastValue")
    before = s.target.read_virtual(where, 8)
    assert run(s, "eb myfault!LastValue 1") == [
        " " * 28 + "^ Memory access error in 'eb myfault!LastValue 1'"]
    assert run(s, 'eza myfault!LastValue "x"')[0].endswith("^ Memory access error in "
                                                           "'eza myfault!LastValue \"x\"'")
    assert s.target.read_virtual(where, 8) == before
