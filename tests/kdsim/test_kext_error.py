"""!error: NTSTATUS and Win32 texts from the committed tables, kd's input forms and its
line layout."""

from __future__ import annotations

from importlib import resources

from commands.error_cmd import NO_TEXT
from tests.conftest import run


def _rows(name: str) -> list[list[str]]:
    text = (resources.files("commands") / "data" / name).read_text()
    return [line.split("\t") for line in text.splitlines()[1:]]


def test_error_prints_the_ntstatus_message_template_as_is(session):
    assert run(session, "!error c0000005") == [
        "Error code: (NTSTATUS) 0xc0000005 (3221225477) - The instruction at 0x%p referenced "
        "memory at 0x%p. The memory could not be %s."]


def test_error_accepts_kds_number_forms_and_normalises_to_32_bits(session):
    expected = ["Error code: (NTSTATUS) 0xc000009a (3221225626) - Insufficient system resources "
                "exist to complete the API."]
    for text in ("0C000009Ah", "c000009a", "0xc000009a", "ffffffffc000009a",
                 "ffffffff`c000009a", "0n3221225626", "0n-1073741670"):
        assert run(session, f"!error {text}") == expected, text


def test_error_knows_every_ntstatus_with_a_message_in_the_table(session):
    seen: set[int] = set()
    checked = 0
    for value, _name, message in _rows("ntstatus.tsv"):
        code = int(value, 16)
        if code in seen or not message or code < 0x10000:
            continue
        seen.add(code)
        if checked % 40 == 0:  # a spread over the table, each through the whole command
            assert run(session, f"!error {code:x}") == [
                f"Error code: (NTSTATUS) 0x{code:x} ({code}) - {message}"]
        checked += 1
    assert checked > 1000


def test_small_values_are_win32_unless_flag_1_says_ntstatus(session):
    for value, _name, message in _rows("win32-errors.tsv"):
        code = int(value, 16)
        assert run(session, f"!error {code:x}") == [
            f"Error code: (Win32) 0x{code:x} ({code}) - {message}"]
    assert run(session, "!error 2") == [
        "Error code: (Win32) 0x2 (2) - The system cannot find the file specified."]
    assert run(session, "!error 0n5") == ["Error code: (Win32) 0x5 (5) - Access is denied."]
    pending = next(r for r in _rows("ntstatus.tsv") if r[1] == "STATUS_PENDING")
    assert run(session, "!error 103 1") == [
        f"Error code: (NTSTATUS) 0x103 (259) - {pending[2] or NO_TEXT}"]
    assert run(session, "!error 103") == [f"Error code: (Win32) 0x103 (259) - {NO_TEXT}"]


def test_unknown_codes_and_bad_input(session):
    assert run(session, "!error 4d2") == [f"Error code: (Win32) 0x4d2 (1234) - {NO_TEXT}"]
    assert run(session, "!error c0ffffff") == [
        f"Error code: (NTSTATUS) 0xc0ffffff (3238002687) - {NO_TEXT}"]
    assert run(session, "!error") == ["Usage: !error value [flags]"]
    assert run(session, "!error nosuch") == ["Couldn't resolve error at 'nosuch'"]
