"""Grading a `.submit` against a lab's answer key.

Each answer is normalized by its field's kind before it is compared, so the forms a kd
user would type all count: numbers as kd reads them, driver names with or without
their extension, routines as kd prints them (module!Name+0x1a).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from commands.expr import parse_number
from kdsim.labs.spec import CAUSES, AnswerField, LabSpec

_EXTENSIONS = (".sys", ".exe", ".dll")
_ROUTINE = re.compile(r"(?:(\w+)!)?(\w+)(?:\+[0-9a-zA-Z`]+)?\Z")


class SubmissionError(ValueError):
    """Input that cannot be graded: nothing counts as an attempt."""


@dataclass(frozen=True)
class FieldGrade:
    name: str
    right: bool


@dataclass(frozen=True)
class Grade:
    fields: tuple[FieldGrade, ...]
    solved: bool
    still_needed: tuple[str, ...]  # standard fields of the key not answered right

    def lines(self) -> list[str]:
        width = max(len(f.name) for f in self.fields)
        out = [f"{f.name + ':':<{width + 1}} {'right' if f.right else 'wrong'}"
               for f in self.fields]
        if self.solved:
            out.append("Solved: every answer the lab asks for is right.")
        else:
            out.append("Not solved yet: still to answer right: "
                       f"{', '.join(self.still_needed)}.")
        return out


def parse_submission(text: str) -> list[tuple[str, str]]:
    """`field=value ...` pairs; values may be quoted."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise SubmissionError(f"Cannot read the answers: {exc}") from None
    if not words:
        raise SubmissionError("Nothing to grade: give answers as field=value ...")
    pairs: list[tuple[str, str]] = []
    for word in words:
        name, eq, value = word.partition("=")
        if not eq or not name:
            raise SubmissionError(f"'{word}' is not field=value")
        name = name.strip().lower()
        if any(name == seen for seen, _ in pairs):
            raise SubmissionError(f"'{name}' is answered twice")
        pairs.append((name, value))  # a quoted value keeps its spaces (tags)
    return pairs


def _strip_extension(name: str) -> tuple[str, str]:
    for ext in _EXTENSIONS:
        if name.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], ext
    return name, ""


def _names_match(answer: str, key: str) -> bool:
    """Case-insensitive; an extension may be left out on either side."""
    a_stem, a_ext = _strip_extension(answer.lower())
    k_stem, k_ext = _strip_extension(key.lower())
    return a_stem == k_stem and (a_ext == k_ext or not a_ext or not k_ext)


def _number(name: str, text: str, radix: int) -> int:
    parsed = parse_number(text, radix) if text else None
    if parsed is None:
        raise SubmissionError(f"{name}: '{text}' is not a number")
    return parsed[0]


def check(spec: LabSpec, key: AnswerField, text: str, radix: int = 16) -> bool:
    """Whether one answer matches the key's field (SubmissionError for malformed input)."""
    name = key.name
    if key.kind == "number":
        return _number(name, text, radix) == key.value
    if not text:
        raise SubmissionError(f"{name}: no value given")
    if key.kind == "name":
        return _names_match(text, str(key.value))
    if key.kind == "tag":
        if len(text) > 4:
            raise SubmissionError(f"{name}: a pool tag has at most 4 characters")
        return text.ljust(4) == str(key.value).ljust(4)
    if key.kind == "cause":
        cause = text.lower().replace("_", "-")
        if cause not in CAUSES:
            raise SubmissionError(f"{name}: '{text}' is not one of the causes "
                                  f"({', '.join(CAUSES)})")
        return cause == key.value
    return _routine_matches(spec, key, text)


def _routine_matches(spec: LabSpec, key: AnswerField, text: str) -> bool:
    given = _ROUTINE.match(text)
    if given is None:
        raise SubmissionError(f"{key.name}: '{text}' is not a routine (Name, module!Name "
                              "or module!Name+0x1a)")
    want = _ROUTINE.match(str(key.value))
    assert want is not None  # the spec checked it
    module = want.group(1)
    if module is None and spec.field("driver") is not None:
        module = _strip_extension(str(spec.field("driver").value).lower())[0]
    if given.group(1) and module and given.group(1).lower() != module.lower():
        return False
    return given.group(2).lower() == want.group(2).lower()


def grade(spec: LabSpec, text: str, radix: int = 16) -> Grade:
    pairs = parse_submission(text)
    known = [f.name for f in spec.answer]
    grades = []
    for name, value in pairs:
        key = spec.field(name)
        if key is None:
            raise SubmissionError(f"Unknown field '{name}'; this lab grades: "
                                  f"{', '.join(known)}")
        grades.append(FieldGrade(name, check(spec, key, value, radix)))
    right = {g.name for g in grades if g.right}
    needed = tuple(f.name for f in spec.answer if f.standard and f.name not in right)
    return Grade(tuple(grades), not needed, needed)
