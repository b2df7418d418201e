"""The [lab] table: parsing the worked example and every validation error, each named
by file:line:col."""

from __future__ import annotations

from importlib import resources

import pytest

from kdsim.labs.catalog import labs
from kdsim.labs.spec import AnswerField, LabError, StopSpec, parse_lab
from machine.tomlpos import Locator

GOOD = '''\
[scenario]
name = "x"

[lab]
title = "T"
difficulty = "easy"
kind = "crash"
story = """
Line one.
key = "not a key"
"""
objectives = ["one", "two"]
hints = ["h1"]

[lab.stop]
until = "bugcheck"

[lab.answer]
bugcheck = 0xD1
driver = "myfault.sys"
routine = "MyfaultHighIrqlFault"
cause = "paged-at-dispatch"
'''


def error(text: str) -> str:
    with pytest.raises(LabError) as info:
        parse_lab(text, "lab.toml", "x")
    return str(info.value)


def test_myfault_is_the_worked_example():
    text = (resources.files("scenarios") / "myfault.toml").read_text()
    spec = parse_lab(text, "scenarios/myfault.toml", "myfault")
    assert spec is not None
    assert (spec.title, spec.difficulty, spec.kind) == ("High IRQL fault", "easy", "crash")
    assert spec.stop == StopSpec("bugcheck", None)
    assert len(spec.hints) == 4 and len(spec.objectives) == 3
    assert spec.answer == (AnswerField("bugcheck", "number", 0xD1, True),
                           AnswerField("driver", "name", "myfault.sys", True),
                           AnswerField("routine", "routine", "MyfaultHighIrqlFault", True),
                           AnswerField("cause", "cause", "paged-at-dispatch", True))


def test_the_catalog_lists_myfault_and_no_bad_labs():
    found, errors = labs()
    assert "myfault" in [s.name for s in found]
    assert errors == []


def test_a_scenario_without_a_lab_table_has_no_lab():
    assert parse_lab('[scenario]\nname = "x"\n', "s.toml", "x") is None


def test_a_tick_stop_and_extra_fields():
    text = GOOD.replace('until = "bugcheck"', 'until = "ticks"\nticks = 40')
    text += 'tag = "Leak"\nvector = 0x2e\nprocess = "foo.exe"\n'
    text += 'pid = { kind = "number", value = 0x1f0 }\n'
    spec = parse_lab(text, "lab.toml", "x")
    assert spec is not None and spec.stop == StopSpec("ticks", 40)
    extra = {f.name: (f.kind, f.value, f.standard) for f in spec.answer if not f.standard}
    assert extra == {"tag": ("tag", "Leak", False), "vector": ("number", 0x2E, False),
                     "process": ("name", "foo.exe", False), "pid": ("number", 0x1F0, False)}


def test_keys_inside_multiline_strings_are_not_located():
    at = Locator(GOOD)
    assert at.key(("lab", "key")) == at.table(("lab",)) == (4, 1)
    assert at.value(("lab", "answer", "cause")) == (22, 9)


@pytest.mark.parametrize("old, new, expected", [
    ('title = "T"', 'title = "T"\ncolour = 1',
     "lab.toml:6:1: unknown key `colour` in [lab] (expected one of: title, difficulty, kind, "
     "story, objectives, hints, stop, answer)"),
    ('title = "T"', 'title = 5', "lab.toml:5:9: `title` must be a non-empty string"),
    ('title = "T"\n', '', "lab.toml:4:1: [lab] needs `title`"),
    ('difficulty = "easy"', 'difficulty = "brutal"',
     "lab.toml:6:14: `difficulty` must be one of: easy, medium, hard"),
    ('kind = "crash"', 'kind = "panic"',
     "lab.toml:7:8: `kind` must be one of: crash, hang, leak, find"),
    ('objectives = ["one", "two"]', 'objectives = ["one", 2]',
     "lab.toml:12:14: `objectives` must be a list of non-empty strings"),
    ('objectives = ["one", "two"]', 'objectives = []',
     "lab.toml:12:14: `objectives` must not be empty"),
    ('hints = ["h1"]', 'hints = "h1"',
     "lab.toml:13:9: `hints` must be a list of non-empty strings"),
    ('until = "bugcheck"', 'until = "forever"',
     "lab.toml:16:9: `until` must be one of: bugcheck, ticks"),
    ('until = "bugcheck"', 'until = "ticks"', "lab.toml:15:1: [lab.stop] needs `ticks`"),
    ('until = "bugcheck"', 'until = "ticks"\nticks = 0',
     "lab.toml:17:9: `ticks` must be a whole number from 1 to 10000"),
    ('until = "bugcheck"', 'until = "bugcheck"\nticks = 5',
     'lab.toml:17:1: `ticks` applies only to until = "ticks"'),
    ('until = "bugcheck"', 'when = 1',
     "lab.toml:16:1: unknown key `when` in [lab.stop] (expected one of: until, ticks)"),
    ('bugcheck = 0xD1', 'bugcheck = "D1"', "lab.toml:19:12: `bugcheck` must be a "
     "non-negative integer"),
    ('bugcheck = 0xD1', 'bugcheck = 0x1FFFFFFFF', "lab.toml:19:12: `bugcheck` must be a "
     "32-bit code"),
    ('cause = "paged-at-dispatch"', 'cause = "gremlins"',
     "lab.toml:22:9: `cause` must be one of: paged-at-dispatch, user-address, null-deref"),
    ('routine = "MyfaultHighIrqlFault"', 'routine = "Myfault+0x1a"',
     "lab.toml:21:11: `routine` must be a routine name (Name or module!Name)"),
    ('driver = "myfault.sys"', 'driver = ""', "lab.toml:20:10: `driver` must be a non-empty "
     "string"),
    ('driver = "myfault.sys"', 'driver = "myfault.sys"\ntag = "TooLong"',
     "lab.toml:21:7: `tag` must be a pool tag of 1 to 4 ASCII characters"),
    ('driver = "myfault.sys"', 'driver = "myfault.sys"\ncolour = "red"',
     "lab.toml:21:1: unknown answer field `colour`"),
    ('driver = "myfault.sys"', 'driver = "myfault.sys"\npid = { kind = "size", value = 1 }',
     "lab.toml:21:7: `pid` needs kind = one of: number, name, tag, routine"),
    ('driver = "myfault.sys"', 'driver = "myfault.sys"\npid = { kind = "number" }',
     "lab.toml:21:7: `pid` needs a value"),
    ('driver = "myfault.sys"', 'driver = "myfault.sys"\npid = { kind = "number", value = "x" }',
     "lab.toml:21:7: `pid` must be a non-negative integer"),
])
def test_each_bad_lab_table_gives_one_error_at_its_place(old, new, expected):
    assert old in GOOD
    assert error(GOOD.replace(old, new, 1)).startswith(expected)


def test_missing_answer_and_an_answer_without_standard_fields():
    head = GOOD.split("[lab.answer]")[0]
    assert error(head) == "lab.toml:4:1: [lab] needs `answer`"
    assert error(head + '[lab.answer]\ntag = "Leak"\n') == (
        "lab.toml:18:1: [lab.answer] needs at least one of bugcheck, driver, routine, cause")


def test_a_toml_syntax_error_and_a_lab_that_is_not_a_table():
    assert error('lab = 3\n[scenario]\nname = "x"\n') == "lab.toml:1:7: `lab` must be a table"
    assert error('[lab]\ntitle = "unterminated\n').startswith("lab.toml:2:")
