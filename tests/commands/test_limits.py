"""Huge ranges and deep recursion stop at the output bound instead of exhausting memory."""

from __future__ import annotations

import pytest

from commands.limits import MAX_OUTPUT_LINES
from tests.conftest import run


@pytest.mark.parametrize("line", ["dq 0 L?10000000", "db 0 L?40000000", "dps 0 L?1000000",
                                  "u 0 L?10000000", "dt nt!_EPROCESS -r6"])
def test_output_is_bounded(session, line):
    out = run(session, line)
    assert len(out) <= MAX_OUTPUT_LINES + 2
    assert out[-1].startswith("kdsim: output stopped after")
