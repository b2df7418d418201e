"""The `[lab]` table of a scenario file: parsed and checked with stdlib tomllib.

The scenario loader ignores tables it does not know, so a lab is plain data beside the
machine's description.  Every error names file:line:col (docs/labs.md has the format).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from machine.tomlpos import Locator

DIFFICULTIES = ("easy", "medium", "hard")
KINDS = ("crash", "hang", "leak", "find")
STOPS = ("bugcheck", "ticks")
MAX_TICKS = 10_000  # a run of simulated time the interpreter finishes in seconds

# The fixed vocabulary of root causes a `cause` answer is graded against.
CAUSES: dict[str, str] = {
    "paged-at-dispatch": "pageable memory touched at DISPATCH_LEVEL or above",
    "user-address": "a user-mode address used where it is not valid (raised IRQL, another process)",
    "null-deref": "a NULL (or near-NULL) pointer dereferenced",
    "double-free": "the same pool block freed twice",
    "pool-overrun": "a write past the end of a pool block",
    "pool-leak": "pool allocated and never freed",
    "use-after-free": "memory used after it was freed",
    "reference-leak": "an object reference taken and never released",
    "deadlock": "threads or processors waiting on each other's locks",
    "irp-not-completed": "an IRP pended or dropped and never completed",
    "spinning-dpc": "a DPC or ISR that runs too long at high IRQL",
    "interrupt-storm": "an interrupt that keeps firing",
    "timer-not-cancelled": "a timer or DPC left queued after its owner went away",
    "idt-hook": "an interrupt descriptor table entry redirected",
    "code-overwrite": "code pages written over",
    "stack-overflow": "a kernel stack run past its end",
    "stack-corruption": "a kernel stack's saved data (return addresses, frames) written over",
    "lock-contention": "a lock held far too long, so its other users wait",
    "device-filter": "a device object attached to another driver's device stack",
    "breakpoint": "a hard-coded breakpoint (int 3) in driver code",
}

FIELD_KINDS = ("number", "name", "tag", "routine")
# Standard answer fields and how each is graded; solving a lab takes every one its key has.
STANDARD: dict[str, str] = {"bugcheck": "number", "driver": "name", "routine": "routine",
                            "cause": "cause"}
# Lab-specific fields with a built-in kind; any other field declares its kind inline.
KNOWN_EXTRA: dict[str, str] = {"tag": "tag", "vector": "number", "process": "name",
                               "irql": "number", "address": "number", "ioctl": "number",
                               "status": "number"}
LAB_KEYS = ("title", "difficulty", "kind", "story", "objectives", "hints", "stop", "answer")
STOP_KEYS = ("until", "ticks")
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


class LabError(Exception):
    def __init__(self, path: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{path}:{line}:{column}: {message}")
        self.path, self.line, self.column, self.message = path, line, column, message


@dataclass(frozen=True)
class AnswerField:
    name: str
    kind: str  # one of FIELD_KINDS, or "cause"
    value: int | str
    standard: bool


@dataclass(frozen=True)
class StopSpec:
    until: str = "bugcheck"
    ticks: int | None = None


@dataclass(frozen=True)
class LabSpec:
    name: str
    title: str
    difficulty: str
    kind: str
    story: str
    objectives: tuple[str, ...]
    hints: tuple[str, ...] = ()
    stop: StopSpec = field(default_factory=StopSpec)
    answer: tuple[AnswerField, ...] = ()

    def field(self, name: str) -> AnswerField | None:
        return next((f for f in self.answer if f.name == name), None)


def toml_data(text: str, path: str) -> dict[str, Any]:
    """The TOML document, or a LabError at the syntax error's line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg, line, col = str(exc), 1, 1
        found = re.search(r" \(at line (\d+), column (\d+)\)$", msg)
        if found:
            line, col = int(found.group(1)), int(found.group(2))
            msg = msg[:found.start()]
        raise LabError(path, line, col, msg) from None


def parse_lab(text: str, path: str, name: str) -> LabSpec | None:
    """The lab a scenario text describes, or None when it has no `[lab]` table."""
    data = toml_data(text, path)
    if "lab" not in data:
        return None
    return _Checker(text, path).lab(data["lab"], name)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Checker:
    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.at = Locator(text)

    def fail(self, where: tuple[int, int], message: str) -> LabError:
        return LabError(self.path, where[0], where[1], message)

    def table(self, value: object, path: tuple[str, ...], allowed: tuple[str, ...]) -> dict:
        name = ".".join(path)
        if not isinstance(value, dict):
            raise self.fail(self.at.value(path), f"`{name}` must be a table")
        for key in value:
            if key not in allowed:
                raise self.fail(self.at.key((*path, key)),
                                f"unknown key `{key}` in [{name}] (expected one of: "
                                f"{', '.join(allowed)})")
        return value

    def need(self, table: dict, path: tuple[str, ...], key: str) -> object:
        if key not in table:
            raise self.fail(self.at.table(path), f"[{'.'.join(path)}] needs `{key}`")
        return table[key]

    def text(self, table: dict, path: tuple[str, ...], key: str) -> str:
        value = self.need(table, path, key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(self.at.value((*path, key)), f"`{key}` must be a non-empty string")
        return value

    def choice(self, table: dict, path: tuple[str, ...], key: str,
               choices: tuple[str, ...]) -> str:
        value = self.need(table, path, key)
        if value not in choices:
            raise self.fail(self.at.value((*path, key)),
                            f"`{key}` must be one of: {', '.join(choices)}")
        return str(value)

    def strings(self, table: dict, path: tuple[str, ...], key: str,
                required: bool) -> tuple[str, ...]:
        if key not in table and not required:
            return ()
        value = self.need(table, path, key)
        if (not isinstance(value, list) or not all(isinstance(v, str) and v.strip()
                                                   for v in value)):
            raise self.fail(self.at.value((*path, key)),
                            f"`{key}` must be a list of non-empty strings")
        if required and not value:
            raise self.fail(self.at.value((*path, key)), f"`{key}` must not be empty")
        return tuple(value)

    def lab(self, raw: object, name: str) -> LabSpec:
        path = ("lab",)
        lab = self.table(raw, path, LAB_KEYS)
        spec = LabSpec(
            name=name,
            title=self.text(lab, path, "title"),
            difficulty=self.choice(lab, path, "difficulty", DIFFICULTIES),
            kind=self.choice(lab, path, "kind", KINDS),
            story=self.text(lab, path, "story").strip("\n"),
            objectives=self.strings(lab, path, "objectives", required=True),
            hints=self.strings(lab, path, "hints", required=False),
            stop=self.stop(lab.get("stop", {}), (*path, "stop")),
            answer=self.answer(self.need(lab, path, "answer"), (*path, "answer")),
        )
        return spec

    def stop(self, raw: object, path: tuple[str, ...]) -> StopSpec:
        stop = self.table(raw, path, STOP_KEYS)
        until = self.choice(stop, path, "until", STOPS) if "until" in stop else "bugcheck"
        if until == "bugcheck":
            if "ticks" in stop:
                raise self.fail(self.at.key((*path, "ticks")),
                                '`ticks` applies only to until = "ticks"')
            return StopSpec()
        ticks = self.need(stop, path, "ticks")
        if not _is_int(ticks) or not 1 <= ticks <= MAX_TICKS:
            raise self.fail(self.at.value((*path, "ticks")),
                            f"`ticks` must be a whole number from 1 to {MAX_TICKS}")
        return StopSpec("ticks", ticks)

    def answer(self, raw: object, path: tuple[str, ...]) -> tuple[AnswerField, ...]:
        if not isinstance(raw, dict):
            raise self.fail(self.at.value(path), "`answer` must be a table")
        fields = []
        for key, value in raw.items():
            where = self.at.value((*path, key))
            if not _FIELD_NAME.match(key):
                raise self.fail(self.at.key((*path, key)),
                                f"answer field `{key}` must be lower-case letters, digits "
                                "and _")
            if key in STANDARD:
                kind, standard = STANDARD[key], True
            elif key in KNOWN_EXTRA:
                kind, standard = KNOWN_EXTRA[key], False
            elif isinstance(value, dict):
                kind, value, where = self.declared(value, (*path, key))
                standard = False
            else:
                raise self.fail(self.at.key((*path, key)),
                                f"unknown answer field `{key}`: the standard fields are "
                                f"{', '.join(STANDARD)}; the known extra fields are "
                                f"{', '.join(KNOWN_EXTRA)}; any other field is written "
                                '{ kind = "number|name|tag|routine", value = ... }')
            fields.append(AnswerField(key, kind, self.value(key, kind, value, where), standard))
        if not any(f.standard for f in fields):
            raise self.fail(self.at.table(path),
                            f"[{'.'.join(path)}] needs at least one of "
                            f"{', '.join(STANDARD)}")
        return tuple(fields)

    def declared(self, raw: dict, path: tuple[str, ...]) -> tuple[str, object, tuple[int, int]]:
        where = self.at.value(path)
        for key in raw:
            if key not in ("kind", "value"):
                raise self.fail(where, f"unknown key `{key}` in `{path[-1]}` "
                                       "(expected kind and value)")
        if raw.get("kind") not in FIELD_KINDS:
            raise self.fail(where, f"`{path[-1]}` needs kind = one of: {', '.join(FIELD_KINDS)}")
        if "value" not in raw:
            raise self.fail(where, f"`{path[-1]}` needs a value")
        return raw["kind"], raw["value"], where

    def value(self, key: str, kind: str, value: object, where: tuple[int, int]) -> int | str:
        if kind == "number":
            if not _is_int(value) or value < 0:
                raise self.fail(where, f"`{key}` must be a non-negative integer")
            if key == "bugcheck" and value > 0xFFFFFFFF:
                raise self.fail(where, "`bugcheck` must be a 32-bit code")
            return value
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"`{key}` must be a non-empty string")
        if kind == "cause" and value not in CAUSES:
            raise self.fail(where, f"`cause` must be one of: {', '.join(CAUSES)}")
        if kind == "tag" and not (len(value) <= 4 and value.isascii() and value.isprintable()):
            raise self.fail(where, f"`{key}` must be a pool tag of 1 to 4 ASCII characters")
        if kind == "routine" and not re.fullmatch(r"(\w+!)?\w+", value):
            raise self.fail(where, f"`{key}` must be a routine name (Name or module!Name)")
        return value
