"""kd's string wildcards as `x` matches symbol names."""

from __future__ import annotations

import pytest

from commands.symbols_cmds import wildcard_regex


@pytest.mark.parametrize(("pattern", "name", "hit"), [
    ("Ke*", "KeBugCheckEx", True),
    ("ke*", "KeBugCheckEx", True),
    ("*Check*", "KeBugCheckEx", True),
    ("Ke?ugCheckEx", "KeBugCheckEx", True),
    ("Ke?ugCheck", "KeBugCheckEx", False),
    ("Ki[BS]*", "KiSwapThread", True),
    ("Ki[BS]*", "KiIdleLoop", False),
    ("Ki[a-c]*", "KiBugCheckDispatch", True),
    ("_Foo", "___Foo", True),  # one leading underscore: any number of them
    ("__Foo", "_Foo", False),
    ("Ab#c", "Abbbc", True),
    ("Ab#c", "Ac", True),
    ("a.b", "aXb", False),  # regex characters are literal
    ("Ki[", "Ki[", True),
])
def test_wildcard_regex(pattern, name, hit):
    assert bool(wildcard_regex(pattern).match(name)) is hit
