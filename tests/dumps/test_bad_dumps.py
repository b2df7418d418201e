"""Bad dump files: truncated, wrong signatures, lying sizes, garbage in every field.  Each
gets an error naming the file, the offset and the problem; never a Python exception, never
a read beyond the file, never an allocation the file's size does not justify."""

from __future__ import annotations

import struct
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.crashdump import (
    BMP_BITS,
    BMP_FIRST_PAGE,
    BMP_PRESENT,
    HEADER_SIZE,
    OFF_CONTEXT,
    OFF_DUMP_TYPE,
    OFF_MACHINE,
    OFF_PAGE_COUNT,
    OFF_PROCESSORS,
    OFF_RUN_COUNT,
    OFF_RUNS,
)
from commands.session import Session
from kdsim.dumptarget import DumpOpenError, open_dump
from tests.dumps.dumpkit import crashed, write


@cache
def good(kind: str) -> bytes:
    """A real dump's bytes (myfault, full or bitmap)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return write(crashed("myfault"), Path(tmp) / "m.dmp", kind).read_bytes()


def opened_or_refused(tmp_path: Path, data: bytes) -> str | None:
    """Open the bytes as a dump: None when it opens (and a few commands run on it without
    an internal error), else the error text."""
    path = tmp_path / "bad.dmp"
    path.write_bytes(data)
    try:
        target = open_dump(str(path))
    except DumpOpenError as exc:
        text = str(exc)
        assert text.startswith(f"{path}: ")
        return text
    session = Session(target, processor=target.stop_processor)
    for command in ("k", "!analyze -v", "lm", "r", "!process 0 0", "db @rsp"):
        for res in session.execute(command):
            assert not (isinstance(res.data, dict) and res.data.get("internal")), res.lines
    return None


def patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@pytest.mark.parametrize("cut", [0, 3, 4, 7, 100, 0x347, 0x1000, HEADER_SIZE - 1, HEADER_SIZE,
                                 HEADER_SIZE + 0x1000, -0x1000, -17, -1])
@pytest.mark.parametrize("kind", ["/f", "/ka"])
def test_a_truncated_dump_is_refused_with_the_offset(kind, cut, tmp_path):
    data = good(kind)
    error = opened_or_refused(tmp_path, data[:cut] if cut >= 0 else data[:len(data) + cut])
    assert error is not None and "offset 0x" in error


@pytest.mark.parametrize("offset, fmt, value, message", [
    (0, "<I", 0x41414141, "offset 0x0: not a kernel dump: the signature is not PAGE"),
    (4, "<I", 0x504D5544, "offset 0x4: not a 64-bit kernel dump: ValidDump is not DU64"),
    (OFF_MACHINE, "<I", 0x14C, "machine type 0x14c is not AMD64"),
    (OFF_PROCESSORS, "<I", 0, "0 processors"),
    (OFF_PROCESSORS, "<I", 0xFFFFFFFF, "4294967295 processors"),
    (OFF_DUMP_TYPE, "<I", 4, "dump type 4 is not one kdsim reads"),
    (OFF_RUN_COUNT, "<I", 0x45474150, "physical memory runs (at most"),
    (OFF_PAGE_COUNT, "<Q", 1 << 60, "NumberOfPages is"),
    (OFF_RUNS + 8, "<Q", 1 << 38, "NumberOfPages is 738 but the runs hold 274877906944"),
    (OFF_RUNS, "<Q", 1 << 45, "lies beyond physical memory"),
    (OFF_CONTEXT + 0x34, "<I", 0, "MxCsr does not match"),
])
def test_lying_header_fields_of_a_full_dump(offset, fmt, value, message, tmp_path):
    error = opened_or_refused(tmp_path, patched(good("/f"), offset, fmt, value))
    assert error is not None and message in error, error
    assert "offset 0x" in error


def test_runs_and_page_count_that_agree_on_more_pages_than_the_file_holds(tmp_path):
    data = patched(patched(good("/f"), OFF_RUNS + 8, "<Q", 1 << 38), OFF_PAGE_COUNT, "<Q",
                   1 << 38)
    error = opened_or_refused(tmp_path, data)
    assert error is not None
    assert "offset 0x2000: the 274877906944 pages of the runs (1125899906842624 bytes) " \
           "runs past the end of the file" in error


@pytest.mark.parametrize("offset, fmt, value, message", [
    (HEADER_SIZE, "<I", 0x41414141, "signature is not SDMP or FDMP"),
    (HEADER_SIZE + BMP_FIRST_PAGE, "<Q", 1 << 62, "runs past the end of the file"),
    (HEADER_SIZE + BMP_FIRST_PAGE, "<Q", 0x40, "FirstPage lies inside the bitmap"),
    (HEADER_SIZE + BMP_PRESENT, "<Q", 1 << 40, "runs past the end of the file"),
    (HEADER_SIZE + BMP_PRESENT, "<Q", 3, "more pages than TotalPresentPages"),
    (HEADER_SIZE + BMP_BITS, "<Q", 1 << 62, "the bitmap"),
])
def test_lying_fields_of_a_bitmap_dump(offset, fmt, value, message, tmp_path):
    error = opened_or_refused(tmp_path, patched(good("/ka"), offset, fmt, value))
    assert error is not None and message in error, error


def test_kdsims_section_with_lies_or_garbage(tmp_path):
    data = good("/f")
    at = struct.unpack("<Q", data[-8:])[0]
    for bad in (patched(data, len(data) - 8, "<Q", 1 << 50),  # the section's offset
                patched(data, at + 8, "<Q", 1 << 50),  # its length
                data[:at + 16] + b"\x00" * (len(data) - at - 32) + data[-16:]):  # its body
        error = opened_or_refused(tmp_path, bad)
        assert error is not None and "offset 0x" in error


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(["/f", "/ka"]),
       edits=st.lists(st.tuples(st.one_of(st.integers(0, HEADER_SIZE + 0x40),
                                          st.integers(-40, -1)),
                                st.sampled_from(["<B", "<I", "<Q"]),
                                st.integers(0, 2**64 - 1)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 0x4000)))
def test_garbage_in_every_field_never_raises(tmp_path, kind, edits, cut):
    data = bytearray(good(kind))
    for offset, fmt, value in edits:
        size = struct.calcsize(fmt)
        where = offset if offset >= 0 else len(data) + offset
        if 0 <= where <= len(data) - size:
            struct.pack_into(fmt, data, where, value & ((1 << (8 * size)) - 1))
    if cut is not None:
        data = data[:cut]
    opened_or_refused(tmp_path, bytes(data))
