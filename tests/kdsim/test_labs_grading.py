"""Grading: right, wrong and normalized answers for every field kind, and input that
cannot be graded."""

from __future__ import annotations

import pytest

from kdsim.labs.grading import SubmissionError, grade, parse_submission
from kdsim.labs.spec import AnswerField, LabSpec

SPEC = LabSpec(
    name="t", title="T", difficulty="easy", kind="leak", story="s", objectives=("o",),
    answer=(AnswerField("bugcheck", "number", 0xD1, True),
            AnswerField("driver", "name", "myfault.sys", True),
            AnswerField("routine", "routine", "MyfaultHighIrqlFault", True),
            AnswerField("cause", "cause", "paged-at-dispatch", True),
            AnswerField("tag", "tag", "Ab", False),
            AnswerField("process", "name", "foo.exe", False),
            AnswerField("entry", "routine", "nt!KiPageFault", False)))


def right(text: str, radix: int = 16) -> dict[str, bool]:
    return {f.name: f.right for f in grade(SPEC, text, radix).fields}


@pytest.mark.parametrize("answer, ok", [
    ("0xD1", True), ("D1", True), ("d1", True), ("0n209", True), ("0x0000`00d1", True),
    ("d1h", True), ("0y11010001", True), ("0n208", False), ("D0", False), ("'0xd1'", True),
])
def test_numbers_read_as_kd_reads_them(answer, ok):
    assert right(f"bugcheck={answer}") == {"bugcheck": ok}


def test_numbers_follow_the_sessions_radix():
    assert right("bugcheck=209", radix=10) == {"bugcheck": True}
    assert right("bugcheck=209", radix=16) == {"bugcheck": False}


@pytest.mark.parametrize("answer, ok", [
    ("myfault.sys", True), ("myfault", True), ("MyFault.SYS", True), ('"MYFAULT"', True),
    ("myfault.exe", False), ("nt", False), ("myfaul", False),
])
def test_driver_names(answer, ok):
    assert right(f"driver={answer}") == {"driver": ok}


@pytest.mark.parametrize("answer, ok", [
    ("foo.exe", True), ("FOO", True), ("foo.sys", False), ("bar.exe", False)])
def test_process_names(answer, ok):
    assert right(f"process={answer}") == {"process": ok}


@pytest.mark.parametrize("answer, ok", [
    ("MyfaultHighIrqlFault", True), ("myfault!MyfaultHighIrqlFault", True),
    ("myfault!MyfaultHighIrqlFault+0x1a", True), ("MYFAULT!myfaulthighirqlfault+1a", True),
    ("nt!MyfaultHighIrqlFault", False), ("MyfaultDispatchIoctl", False),
    ("myfault.sys!MyfaultHighIrqlFault", None),
])
def test_routines(answer, ok):
    if ok is None:
        with pytest.raises(SubmissionError, match="is not a routine"):
            right(f"routine={answer}")
    else:
        assert right(f"routine={answer}") == {"routine": ok}


def test_a_routine_key_with_its_own_module():
    assert right("entry=KiPageFault") == {"entry": True}
    assert right("entry=nt!KiPageFault+0x3f") == {"entry": True}
    assert right("entry=myfault!KiPageFault") == {"entry": False}


@pytest.mark.parametrize("answer, ok", [
    ("Ab", True), ("'Ab  '", True), ('"Ab "', True), ("ab", False), ("Abc", False),
    ("' Ab'", False),
])
def test_tags_are_four_characters_case_sensitive(answer, ok):
    assert right(f"tag={answer}") == {"tag": ok}


@pytest.mark.parametrize("answer, ok", [
    ("paged-at-dispatch", True), ("PAGED_AT_DISPATCH", True), ("null-deref", False)])
def test_causes(answer, ok):
    assert right(f"cause={answer}") == {"cause": ok}


def test_solved_takes_every_standard_field_right():
    full = "bugcheck=d1 driver=myfault routine=MyfaultHighIrqlFault cause=paged-at-dispatch"
    result = grade(SPEC, full)
    assert result.solved and result.still_needed == ()
    assert result.lines()[-1] == "Solved: every answer the lab asks for is right."
    partial = grade(SPEC, "bugcheck=d1 driver=nt tag=Ab")
    assert not partial.solved
    assert partial.still_needed == ("driver", "routine", "cause")
    assert partial.lines() == ["bugcheck: right", "driver:   wrong", "tag:      right",
                               "Not solved yet: still to answer right: driver, routine, "
                               "cause."]


def test_grading_never_shows_the_right_value():
    text = "\n".join(grade(SPEC, "bugcheck=1 driver=x routine=y cause=null-deref").lines())
    for secret in ("d1", "D1", "209", "myfault", "Myfault", "paged"):
        assert secret not in text


@pytest.mark.parametrize("text, message", [
    ("", "Nothing to grade"),
    ("bugcheck", "'bugcheck' is not field=value"),
    ("=d1", "'=d1' is not field=value"),
    ("colour=red", "Unknown field 'colour'; this lab grades: bugcheck, driver, routine, "
                   "cause, tag, process, entry"),
    ("bugcheck=zz", "bugcheck: 'zz' is not a number"),
    ("bugcheck=", "bugcheck: '' is not a number"),
    ("driver=", "driver: no value given"),
    ("tag=Abcde", "tag: a pool tag has at most 4 characters"),
    ("cause=gremlins", "cause: 'gremlins' is not one of the causes"),
    ("bugcheck=d1 BUGCHECK=d1", "'bugcheck' is answered twice"),
    ("driver='myfault", "Cannot read the answers: No closing quotation"),
])
def test_input_that_cannot_be_graded(text, message):
    with pytest.raises(SubmissionError) as info:
        grade(SPEC, text)
    assert str(info.value).startswith(message)


def test_submission_pairs_keep_quoted_spaces():
    assert parse_submission("tag='A b' driver=x") == [("tag", "A b"), ("driver", "x")]
