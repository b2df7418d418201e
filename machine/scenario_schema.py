"""The scenario file's schema: every table's keys, their types and ranges, and the names
one part of the file gives another (drivers, dependencies, opened devices).

The checker works on the document tomllib parsed, with positions from machine.tomlpos,
so every error is one `file:line:col: message` at the offending key or value (a missing
key: at its table's header).  What can only be known by compiling or assembling the
drivers is checked by machine.scenario, with the same error type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from machine.mm.physical import PAGE_SIZE
from machine.tomlpos import Locator, Path

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*\Z")
U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF

MIN_STEP_BUDGET = 10_000
MAX_STEP_BUDGET = 2_000_000_000
MAX_AT_TICK = 1_000_000  # about 4.3 hours of simulated time
MAX_GLOBAL_SIZE = 0x10000
MAX_NAME = 64
MAX_STRING_CHARS = 0x7FFE  # UNICODE_STRING: MaximumLength (a USHORT) holds 2 * chars + 2


class ScenarioError(Exception):
    def __init__(self, path: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{path}:{line}:{column}: {message}")
        self.path, self.line, self.column, self.message = path, line, column, message


@dataclass(frozen=True)
class Key:
    """What a key holds.  kind: text (a non-empty string), name (an identifier), bool,
    int (lo..hi), choice, hex (hex bytes, at most `hi`), strings (a list of them), tables
    (an array of tables), steps (a program), driver (a driver of the scenario), device
    (a path the program opened), symbol (module!global)."""
    kind: str
    required: bool = False
    lo: int = 0
    hi: int = 0
    choices: tuple[str, ...] = ()


def Int(lo: int, hi: int, required: bool = False) -> Key:  # noqa: N802 (reads as a type)
    return Key("int", required, lo, hi)


TEXT, NAME_KEY, BOOL = Key("text"), Key("name"), Key("bool")

TOP_KEYS = ("scenario", "machine", "driver", "event", "lab")
SCENARIO_KEYS = {"name": Key("text", True), "title": Key("text")}
MACHINE_KEYS = {"cpus": Int(1, 64), "seed": Int(0, U32), "verifier": Key("strings"),
                "verifier_flags": Int(0, U32),
                "step_budget": Int(MIN_STEP_BUDGET, MAX_STEP_BUDGET)}
DRIVER_KEYS = {"name": Key("name", True), "image": TEXT, "entry": Key("name", True),
               "depends_on": Key("strings"), "source": TEXT, "global": Key("tables"),
               "string": Key("tables"), "routine": Key("tables")}
GLOBAL_KEYS = {"name": Key("name", True), "size": Int(1, MAX_GLOBAL_SIZE)}
STRING_KEYS = {"name": Key("name", True), "value": Key("string", True)}
ROUTINE_KEYS = {"name": Key("name", True), "code": Key("text", True)}
EVENT_COMMON = {"at_tick": Int(0, MAX_AT_TICK), "action": Key("text", True)}


def number(n: int) -> str:
    return f"{n:#x}" if n > 0xFFFF else str(n)


class SchemaChecker:
    """Checks one scenario document; `fail` makes the error for a position."""

    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.at = Locator(text)

    def fail(self, where: tuple[int, int], message: str) -> ScenarioError:
        return ScenarioError(self.path, where[0], where[1], message)

    # -- tables and keys --------------------------------------------------------------

    def table(self, value: object, path: Path, title: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(self.at.value(path), f"`{path[-1]}` must be a table ({title})")
        return value

    def tables(self, value: object, path: Path, title: str) -> list[dict]:
        """An array of tables ([[title]]) whose elements are tables."""
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(self.at.value(path),
                            f"`{path[-1]}` must be an array of tables ({title})")
        return value

    def keys(self, table: dict, path: Path, title: str, allowed: dict[str, Key],
             action: str = "") -> dict[str, Any]:
        """Checks a table's keys against `allowed`: unknown keys, missing required ones,
        and each value's type and range.  Returns the table."""
        for key in table:
            if key not in allowed:
                raise self.fail(self.at.key((*path, key)),
                                f"unknown key `{key}` in {title}{action} (expected one of: "
                                f"{', '.join(allowed)})")
        for key, spec in allowed.items():
            if key in table:
                self.check(spec, table[key], (*path, key))
            elif spec.required:
                raise self.fail(self.at.table(path), f"{title}{action} needs `{key}`")
        return table

    def check(self, spec: Key, value: object, path: Path) -> None:
        """One value's type and range (names of other parts are checked later)."""
        key = str(path[-1])
        where = self.at.value(path)
        kind = spec.kind
        if kind in ("text", "driver", "device", "symbol"):
            if not isinstance(value, str) or not value.strip():
                raise self.fail(where, f"`{key}` must be a non-empty string")
            if kind == "symbol" and not re.fullmatch(r"\w+!\w+", value):
                raise self.fail(where, f"`{key}` must name a pointer variable as "
                                       "module!Name (like \"myfault!PagedBuffer\")")
        elif kind == "string":
            if not isinstance(value, str):
                raise self.fail(where, f"`{key}` must be a string")
            if len(value) > MAX_STRING_CHARS:
                raise self.fail(where, f"`{key}` is {len(value)} characters long; a "
                                       f"UNICODE_STRING holds at most {MAX_STRING_CHARS}")
            wide = next((c for c in value if ord(c) > 0xFFFF), None)
            if wide is not None:
                raise self.fail(where, f"`{key}` has a character beyond U+FFFF "
                                       f"(U+{ord(wide):X}), which is not one UTF-16 unit")
        elif kind == "name":
            if not isinstance(value, str) or not NAME.match(value) or len(value) > MAX_NAME:
                raise self.fail(where, f"`{key}` must be a name of letters, digits and _ "
                                       f"(not starting with a digit, at most {MAX_NAME})")
        elif kind == "bool":
            if not isinstance(value, bool):
                raise self.fail(where, f"`{key}` must be true or false")
        elif kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise self.fail(where, f"`{key}` must be a whole number from "
                                       f"{number(spec.lo)} to {number(spec.hi)}")
            if not spec.lo <= value <= spec.hi:
                raise self.fail(where, f"`{key}` must be from {number(spec.lo)} to "
                                       f"{number(spec.hi)}, not {number(value)}")
        elif kind == "choice":
            if value not in spec.choices:
                raise self.fail(where, f"`{key}` must be one of: {', '.join(spec.choices)}")
        elif kind == "hex":
            if not isinstance(value, str) or not HEX.match(value):
                raise self.fail(where, f"`{key}` must be hex bytes, two digits each "
                                       "(like \"0807060504030201\")")
            if len(value) // 2 > spec.hi:
                raise self.fail(where, f"`{key}` is {len(value) // 2} bytes; the program's "
                                       f"buffer holds at most {number(spec.hi)}")
        elif kind == "strings":
            if not isinstance(value, list) or not all(isinstance(v, str) and v.strip()
                                                      for v in value):
                raise self.fail(where, f"`{key}` must be a list of non-empty strings")
        elif kind == "steps":
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise self.fail(where, f"`{key}` must be a list of inline tables "
                                       "(like { open = '\\\\.\\MyFault' })")
        elif kind == "tables":
            names = ".".join(p for p in path if isinstance(p, str))
            self.tables(value, path, f"[[{names}]]")

    # -- the document ------------------------------------------------------------------

    def document(self, data: dict) -> None:
        """Everything that needs no compiling: tables, keys, types, ranges, and the
        names drivers, dependencies, events and programs give each other."""
        for key in data:
            if key not in TOP_KEYS:
                raise self.fail(self.at.key((key,)),
                                f"unknown table `{key}` (expected one of: "
                                f"{', '.join(TOP_KEYS)})")
        if "scenario" not in data:
            raise self.fail((1, 1), "the file needs a [scenario] table with `name`")
        self.keys(self.table(data["scenario"], ("scenario",), "[scenario]"), ("scenario",),
                  "[scenario]", SCENARIO_KEYS)
        machine = self.table(data.get("machine", {}), ("machine",), "[machine]")
        self.keys(machine, ("machine",), "[machine]", MACHINE_KEYS)
        drivers = self.tables(data.get("driver", []), ("driver",), "[[driver]]")
        for i, d in enumerate(drivers):
            self.driver(d, ("driver", i))
        self.driver_names(drivers)
        self.verifier(machine, drivers)
        events = self.tables(data.get("event", []), ("event",), "[[event]]")
        for i, ev in enumerate(events):
            self.event(ev, ("event", i), drivers, machine.get("cpus", 2))

    def driver(self, d: dict, path: Path) -> None:
        self.keys(d, path, "[[driver]]", DRIVER_KEYS)
        if "source" not in d and "routine" not in d:
            raise self.fail(self.at.table(path),
                            "[[driver]] needs `source` or [[driver.routine]] tables")
        seen: dict[str, Path] = {}
        for part, allowed in (("global", GLOBAL_KEYS), ("string", STRING_KEYS),
                              ("routine", ROUTINE_KEYS)):
            for j, t in enumerate(d.get(part, [])):
                where = (*path, part, j)
                self.keys(t, where, f"[[driver.{part}]]", allowed)
                name = t["name"]
                if name.lower() in seen:
                    raise self.fail(self.at.value((*where, "name")),
                                    f"`{name}` is defined twice in driver {d['name']}")
                seen[name.lower()] = where

    def driver_names(self, drivers: list[dict]) -> None:
        names: dict[str, int] = {}
        for i, d in enumerate(drivers):
            name = d["name"].lower()
            if name in names or name == "nt":
                raise self.fail(self.at.value(("driver", i, "name")),
                                f"driver name `{d['name']}` is already taken")
            names[name] = i
        for i, d in enumerate(drivers):
            for j, dep in enumerate(d.get("depends_on", [])):
                if dep.lower() not in names:
                    raise self.fail(self.at.value(("driver", i, "depends_on", j)),
                                    f"unknown driver `{dep}` in depends_on (the drivers "
                                    f"are: {', '.join(x['name'] for x in drivers)})")

    def verifier(self, machine: dict, drivers: list[dict]) -> None:
        known = {d["name"].lower() for d in drivers}
        known |= {d.get("image", d["name"] + ".sys").lower() for d in drivers}
        for j, name in enumerate(machine.get("verifier", [])):
            if name.lower() not in known:
                raise self.fail(self.at.value(("machine", "verifier", j)),
                                f"unknown driver `{name}` in verifier (the drivers are: "
                                f"{', '.join(d['name'] for d in drivers) or 'none'})")

    def event(self, ev: dict, path: Path, drivers: list[dict], cpus: int) -> None:
        from machine.events import EVENT_KEYS

        action = ev.get("action")
        if action is None:
            raise self.fail(self.at.table(path), "[[event]] needs `action`")
        if action not in EVENT_KEYS:
            raise self.fail(self.at.value((*path, "action")),
                            f"unknown event action {action!r} (expected one of: "
                            f"{', '.join(EVENT_KEYS)})")
        allowed = {**EVENT_COMMON, **EVENT_KEYS[action]}
        self.keys(ev, path, "[[event]]", allowed, f' with action = "{action}"')
        if action == "start_device" and ev.get("processor", 0) >= cpus:
            raise self.fail(self.at.value((*path, "processor")),
                            f"`processor` must be below the machine's {cpus} processors")
        if action == "start_device" and ev.get("registers", 0) % PAGE_SIZE:
            raise self.fail(self.at.value((*path, "registers")),
                            "`registers` must be a page-aligned physical address")
        for key, spec in allowed.items():
            if spec.kind == "driver" and key in ev:
                known = [d["name"] for d in drivers]
                if ev[key].lower() not in {n.lower() for n in known}:
                    raise self.fail(self.at.value((*path, key)),
                                    f"unknown driver `{ev[key]}` in `{key}` (the drivers "
                                    f"are: {', '.join(known) or 'none'})")
            if spec.kind == "steps" and key in ev:
                self.program(ev[key], (*path, key))

    def program(self, steps: list[dict], path: Path, opened: set[str] | None = None) -> None:
        from machine.events import STEP_KEYS

        opened = set() if opened is None else opened
        for i, step in enumerate(steps):
            where = (*path, i)
            verbs = [k for k in step if k in STEP_KEYS]
            if len(verbs) != 1:
                what = "two" if verbs else "no"
                raise self.fail(self.at.value(where),
                                f"a program step has {what} step key"
                                f"{'s' if verbs else ''} (each has one of: "
                                f"{', '.join(STEP_KEYS)})")
            verb = verbs[0]
            self.keys(step, where, "a program step", STEP_KEYS[verb], f" `{verb}`")
            if verb == "open":
                opened.add(step["open"])
            if verb == "repeat":  # its steps see the devices opened before it, and open more
                self.program(step["steps"], (*where, "steps"), opened)
            for key, spec in STEP_KEYS[verb].items():
                if spec.kind == "device" and key in step and step[key] not in opened:
                    raise self.fail(self.at.value((*where, key)),
                                    f"`{key}` names '{step[key]}', which the program has "
                                    "not opened (an earlier { open = ... } step)")
