"""rdmsr reads each processor's MSRs through the target."""

from __future__ import annotations

from commands.fmt import addr
from commands.session import Session
from tests.conftest import run


def test_rdmsr_on_every_processor(app):
    for n, proc in enumerate(app.machine.processors):
        s = Session(app.target, processor=n)
        for msr, value in proc.msrs.items():
            assert run(s, f"rdmsr {msr:x}") == [f"msr[{msr:x}] = {addr(value)}"]
    s = Session(app.target, processor=0)
    lstar = s.symbols.address_of("nt!KiSystemCall64")
    assert run(s, "rdmsr c0000082") == [f"msr[c0000082] = {addr(lstar)}"]
    assert run(s, "rdmsr 0xC0000080") == ["msr[c0000080] = 00000000`00000d01"]


def test_rdmsr_errors(session):
    assert run(session, "rdmsr 10") == ["no such msr"]
    assert run(session, "rdmsr") == ["Numeric expression missing from '<EOL>'"]
    assert run(session, "rdmsr nosuch") == ["Couldn't resolve error at 'nosuch'"]
