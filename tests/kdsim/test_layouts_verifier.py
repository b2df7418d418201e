"""!verifier's log flags as kd prints them: flag 4 alone is the ruled `Fault injection
trace log` section with kd's line for an empty log (the machine never injects faults),
flag 8 alone the ruled `Track irql trace log` title (the target keeps no IRQL log, so no
entries and no log size), the other log flags print nothing; a larger value with bits 4
or 8 set appends those sections after the driver list, as kd does."""

from __future__ import annotations

from tests.conftest import run

RULE = "----------------------------------------------- "
FAULTS = [RULE, "Fault injection trace log                       ", RULE, "",
          "Driver Verifier didn't inject any faults."]
IRQL = [RULE, "Track irql trace log                            ", RULE, ""]


def test_fault_injection_and_irql_log_sections(session):
    assert run(session, "!verifier 4") == FAULTS
    assert run(session, "!verifier 4 10") == FAULTS  # with a quantity of records
    assert run(session, "!verifier 8") == IRQL
    assert all(len(line) == 48 for line in FAULTS[:3] + IRQL[:3])


def test_other_log_flags_print_no_invented_text(session):
    for flags in ("0x20", "0x40", "0x80", "0x100", "0x200", "0x400"):
        assert run(session, f"!verifier {flags}") == []


def test_combined_flags_append_the_sections_after_the_summary(session):
    plain = run(session, "!verifier 3")
    assert not any("trace log" in line for line in plain)
    assert run(session, "!verifier 7") == plain + FAULTS + [""]
    assert run(session, "!verifier 0xb") == plain + IRQL
    assert run(session, "!verifier 0xf") == plain + FAULTS + [""] + IRQL
    at = plain.index("Driver Verification List")
    assert plain[at:] == ["Driver Verification List", "-" * 24, ""]  # no verified driver
