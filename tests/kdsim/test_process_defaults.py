"""!process's default detail (kd: 3 for all processes or the current one, 0xF for one
named process) and -1 for the current process."""

from __future__ import annotations

from tests.conftest import run


def _processes(session) -> list[int]:
    off = session.reader.offset("_EPROCESS", "ActiveProcessLinks")
    return [e - off for e in session.reader.list_entries(session.nt("PsActiveProcessHead"))]


def test_one_process_defaults_to_full_detail(session) -> None:
    for ep in _processes(session)[:6]:
        full = run(session, f"!process {ep:x}")
        assert full == run(session, f"!process {ep:x} f")
        assert full != run(session, f"!process {ep:x} 3")


def test_minus_one_is_the_current_process(session) -> None:
    ep = session.current_process()
    assert run(session, "!process -1 0") == run(session, f"!process {ep:x} 0")
    assert run(session, "!process -1") == run(session, f"!process {ep:x} 3")
    assert run(session, "!process") == run(session, "!process -1")
