"""`n`: the default radix, shown as kd shows it and used by every later expression."""

from __future__ import annotations

from tests.conftest import run


def test_show_and_set_the_radix(session) -> None:
    assert run(session, "n") == ["base is 16"]
    assert run(session, "n 10") == []
    assert run(session, "n") == ["base is 10"]
    assert session.evaluate("10") == 10
    assert run(session, "n 8") == []
    assert session.evaluate("10") == 8
    assert run(session, "n 16") == []  # read in decimal whatever the current radix
    assert session.evaluate("10") == 0x10
    assert run(session, "n") == ["base is 16"]


def test_radix_applies_to_command_arguments(session, app) -> None:
    rsp = session.evaluate("rsp")
    run(session, "n 10")
    out = run(session, "dq rsp+16 L1")
    assert out[0].startswith(f"{rsp + 16 >> 32:08x}`{rsp + 16 & 0xFFFFFFFF:08x}")
    run(session, "n 16")


def test_bad_radix_values(session) -> None:
    assert run(session, "n 5") == ["Syntax error at '5'"]
    assert run(session, "n 0x10") == ["Syntax error at '0x10'"]
    assert run(session, "n") == ["base is 16"]
    assert run(session, "nonsense") == [" " * len(session.prompt) + "^ Syntax error in 'nonsense'"]
