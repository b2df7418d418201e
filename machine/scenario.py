"""Scenario files, first cut: TOML for the machine, the drivers (routines written in x64
assembly, assembled to machine code at the driver's addresses) and a timeline of
events (working-set trims, processes started with a program of system calls).

Loading never runs Python from the file and never reads other files.  Every error names
the file, line and column.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from machine.asm import AsmError, assemble
from machine.ex.verifier import DEFAULT_LEVEL
from machine.ldr.loader import DataInfo, FunctionInfo, ModuleImage, link_loaded_module
from machine.ldr.pe import SCN_CODE, SCN_DATA, Section
from machine.machine import Machine, MachineConfig
from machine.mm.physical import PAGE_SIZE
from machine.scenario_schema import ScenarioError, SchemaChecker
from machine.tomlpos import toml_error_position

DRIVER_TEXT_RVA = 0x1000
DRIVER_IMAGE_ALIGN = 0x10000
# Steps a run may take before kdsim breaks in ([machine] step_budget overrides it).
DEFAULT_STEP_BUDGET = 20_000_000

__all__ = ["DEFAULT_STEP_BUDGET", "DriverSpec", "RoutineSpec", "Scenario", "ScenarioError",
           "boot_scenario", "builtin_scenario", "load_scenario", "parse_scenario"]


@dataclass
class RoutineSpec:
    name: str
    code: str
    line: int  # where the code text starts in the file
    # compiled from driver-language source: the file (line, column) of each code line
    origins: list[tuple[int, int]] | None = None
    column: int = 1  # the column of the code's first line (after the opening quotes)


@dataclass
class DriverSpec:
    name: str
    image: str
    entry: str
    routines: list[RoutineSpec]
    globals: list[tuple[str, int]]
    strings: list[tuple[str, str]] = field(default_factory=list)
    data: str = ""  # data-section assembly compiled from the driver's `source`
    depends_on: list[str] = field(default_factory=list)
    data_names: list[str] = field(default_factory=list)  # its globals and strings
    entry_at: tuple[int, int] = (1, 1)  # where `entry` is written


@dataclass
class Scenario:
    name: str
    title: str
    path: str
    text: str
    cpus: int = 2
    seed: int = 1
    verifier: list[str] = field(default_factory=list)  # drivers under Driver Verifier
    verifier_flags: int = DEFAULT_LEVEL  # its options (verifier /flags)
    drivers: list[DriverSpec] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    step_budget: int | None = None  # [machine] step_budget: None gives DEFAULT_STEP_BUDGET

    @property
    def budget(self) -> int:
        """The steps a run of the scenario may take before kdsim breaks in."""
        return DEFAULT_STEP_BUDGET if self.step_budget is None else self.step_budget


def parse_scenario(text: str, path: str) -> Scenario:
    """The scenario a text describes, checked (machine.scenario_schema) and its drivers'
    `source` compiled; nothing runs.  Every error is one ScenarioError at file:line:col."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg, line, col = toml_error_position(str(exc))
        raise ScenarioError(path, line, col, msg) from None
    check = SchemaChecker(text, path)
    check.document(data)
    at = check.at
    scen, machine = data["scenario"], data.get("machine", {})
    s = Scenario(name=scen["name"], title=scen.get("title", ""), path=path, text=text,
                 cpus=machine.get("cpus", 2), seed=machine.get("seed", 1),
                 verifier=list(machine.get("verifier", [])),
                 verifier_flags=machine.get("verifier_flags", DEFAULT_LEVEL),
                 step_budget=machine.get("step_budget"))
    for i, d in enumerate(data.get("driver", [])):
        routines = []
        for j, r in enumerate(d.get("routine", [])):
            line, column, _ = at.string_start(("driver", i, "routine", j, "code")) or (1, 1, 0)
            routines.append(RoutineSpec(r["name"], r["code"], line, column=column))
        spec = DriverSpec(d["name"], d.get("image", d["name"] + ".sys"), d["entry"], routines,
                          [(g["name"], int(g.get("size", 8))) for g in d.get("global", [])],
                          [(u["name"], u["value"]) for u in d.get("string", [])],
                          depends_on=list(d.get("depends_on", [])),
                          entry_at=at.value(("driver", i, "entry")))
        spec.data_names = [n for n, _ in spec.globals] + [n for n, _ in spec.strings]
        if "source" in d:
            _compile_source(spec, d["source"], text, path,
                            at.string_start(("driver", i, "source")))
        if spec.entry not in {r.name for r in spec.routines}:
            raise ScenarioError(path, *spec.entry_at,
                                f"entry routine {spec.entry} is not defined")
        s.drivers.append(spec)
    s.drivers = load_order(s.drivers, check)
    s.events = list(data.get("event", []))
    _check_events(s, check)
    return s


def load_order(drivers: list[DriverSpec], check: SchemaChecker) -> list[DriverSpec]:
    """The drivers in the order they load: each after the drivers it depends on
    (DependOnService), else in file order.  A cycle is an error at its closing entry."""
    by_name = {d.name.lower(): (i, d) for i, d in enumerate(drivers)}
    order: list[DriverSpec] = []
    done: set[str] = set()

    def visit(d: DriverSpec, chain: list[str]) -> None:
        if d.name.lower() in done:
            return
        for j, dep in enumerate(d.depends_on):
            i, other = by_name[dep.lower()]
            if other.name in chain or other is d:
                cycle = [*chain[chain.index(other.name):], d.name, other.name] \
                    if other.name in chain else [d.name, d.name]
                where = check.at.value(("driver", by_name[d.name.lower()][0], "depends_on", j))
                raise check.fail(where, f"driver dependency cycle: {' -> '.join(cycle)}")
            visit(other, [*chain, d.name])
        done.add(d.name.lower())
        order.append(d)

    for d in drivers:
        visit(d, [])
    return order


def _check_events(s: Scenario, check: SchemaChecker) -> None:
    """What the events name that is known once the drivers are compiled (page_of's
    variable)."""
    drivers = {d.name: d for d in s.drivers}
    for i, ev in enumerate(s.events):
        target = ev.get("page_of")
        if isinstance(target, str) and "!" in target:
            module, name = target.split("!", 1)
            where = check.at.value(("event", i, "page_of"))
            if module != "nt" and module not in drivers:
                raise check.fail(where, f"`page_of` names module `{module}`, which is not a "
                                        "driver of the scenario (nor nt)")
            if module in drivers and name not in drivers[module].data_names:
                raise check.fail(where, f"`page_of` names `{name}`, which is not a global "
                                        f"of driver {module}")


def _source_origin(text: str, source: str, start: int) -> tuple[int, int, int]:
    """Where a driver's `source` text begins in the scenario file, its string's characters
    starting at offset `start`: (line, column, offset).  A literal string holds the text
    verbatim; a basic string's escapes change lines, so its first line the file holds
    verbatim is the anchor."""
    def position(idx: int) -> tuple[int, int]:
        return text.count("\n", 0, idx) + 1, idx - text.rfind("\n", 0, idx)

    if text.startswith(source, start):
        return (*position(start), start)
    for k, line in enumerate(source.split("\n")):
        idx = text.find(line, start) if line.strip() else -1
        if idx >= 0:
            row, column = position(idx)
            return row - k, column if k == 0 else 1, idx
    return (*position(start), start)


def _compile_source(spec: DriverSpec, source: str, text: str, path: str,
                    start: tuple[int, int, int] | None) -> None:
    """Compile a driver's `source` into its routines and data."""
    from machine.drvlang import DriverLangError, compile_driver, nt_routine_exists

    line0, col0, _ = _source_origin(text, source, start[2] if start else 0)

    def at(line: int, column: int) -> tuple[int, int]:
        return line0 + line - 1, column + col0 - 1 if line == 1 else column

    try:
        compiled = compile_driver(source, None, nt_routine_exists,
                                  [r.name for r in spec.routines], dict(spec.globals),
                                  [name for name, _ in spec.strings])
    except DriverLangError as exc:
        raise ScenarioError(path, *at(exc.line, exc.column), exc.message) from None
    for r in compiled.routines:
        spec.routines.append(RoutineSpec(r.name, r.code, at(*r.origins[0])[0],
                                         [at(*o) for o in r.origins]))
    spec.data_names += list(compiled.globals)
    spec.data = compiled.data


def load_scenario(path: str) -> Scenario:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ScenarioError(path, 0, 0, exc.strerror or str(exc)) from None
    return parse_scenario(text, path)


def builtin_scenario(name: str = "myfault") -> Scenario:
    text = (resources.files("scenarios") / f"{name}.toml").read_text()
    return parse_scenario(text, f"scenarios/{name}.toml")


def build_driver_image(m: Machine, spec: DriverSpec, scen: Scenario, base: int) -> ModuleImage:
    """Assemble a driver's routines at their addresses and map the image."""
    source_lines: list[tuple[int, RoutineSpec]] = []  # source line -> routine
    parts = []
    for r in spec.routines:
        parts.append("align 16")
        source_lines.append((sum(p.count("\n") + 1 for p in parts), r))
        parts.append(f"{r.name}:\n{r.code.rstrip()}")  # its lines as the file has them
    source = "\n".join(parts)
    globals_at: dict[str, int] = {}

    def resolve(name: str) -> int | None:
        return m.symbols.get(name) if "!" in name else globals_at.get(name)

    def fail(exc: AsmError) -> ScenarioError:
        owner = source_lines[0][1]
        start = 1
        for first_line, r in source_lines:
            if first_line <= exc.line:
                owner, start = r, first_line
        index = exc.line - start - 2  # the line within the routine's code (after its label)
        if owner.origins is not None and 0 <= index < len(owner.origins):
            line, column = owner.origins[index]
            return ScenarioError(scen.path, line, column, f"in {owner.name}: {exc.message}")
        index = max(index, 0)
        column = exc.column + (owner.column - 1 if index == 0 else 0)
        return ScenarioError(scen.path, owner.line + index, column,
                             f"in {spec.name}!{owner.name}: {exc.message}")

    # First pass sizes the code; the data section follows it on its own page.
    try:
        sized = assemble(source, base + DRIVER_TEXT_RVA, lambda n: resolve(n) or base)
    except AsmError as exc:
        raise fail(exc) from None
    data_rva = DRIVER_TEXT_RVA + ((len(sized.code) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))
    data = assemble(data_section(spec), base + data_rva)
    globals_at.update(data.labels)
    off = len(data.code)
    try:
        asm = assemble(source, base + DRIVER_TEXT_RVA, resolve)
    except AsmError as exc:
        raise fail(exc) from None
    size = data_rva + ((off + PAGE_SIZE) & ~(PAGE_SIZE - 1))
    img = ModuleImage(spec.name, spec.image, f"{spec.name}.pdb", base, size,
                      f"\\??\\C:\\Windows\\system32\\drivers\\{spec.image}")
    img.timestamp = 0x5C8A2A2B
    img.sections = [Section(".text", DRIVER_TEXT_RVA, len(asm.code), SCN_CODE),
                    Section(".data", data_rva, off or 8, SCN_DATA)]
    m.kspace.map_new(base, PAGE_SIZE)
    m.kspace.map_new(base + DRIVER_TEXT_RVA, len(asm.code), writable=False, executable=True)
    m.kspace.map_new(base + data_rva, off or 8)
    m.kspace.write_image(base + DRIVER_TEXT_RVA, asm.code)
    m.kspace.write(base + data_rva, data.code)
    names = [r.name for r in spec.routines]
    starts = sorted((asm.labels[n], n) for n in names)
    end = base + DRIVER_TEXT_RVA + len(asm.code)
    for i, (addr, name) in enumerate(starts):
        nxt = starts[i + 1][0] if i + 1 < len(starts) else end
        unwind = tuple((o, op, arg) for o, op, arg in asm.unwind_of(name))
        m.symbols[f"{spec.name}!{name}"] = addr
        img.functions.append(FunctionInfo(name, addr - base, nxt - addr, unwind))
    for name, addr in globals_at.items():
        if name.endswith("_Buffer"):
            continue
        m.symbols[f"{spec.name}!{name}"] = addr
        img.data.append(DataInfo(name, addr - base, 8))
    if spec.entry not in asm.labels:
        raise ScenarioError(scen.path, *spec.entry_at,
                            f"entry routine {spec.entry} is not defined")
    img.entry = asm.labels[spec.entry]
    link_loaded_module(m, img, img.entry)
    return img


def build_driver_images(m: Machine, scen: Scenario, loaded=None) -> list[ModuleImage]:
    """Every driver's image, in load order, each at the next 64 KiB boundary after the
    one before; loaded(image) hears of each."""
    images = []
    base = m.layout.driver_base
    for spec in scen.drivers:
        images.append(build_driver_image(m, spec, scen, base))
        if loaded is not None:
            loaded(images[-1])
        base += (images[-1].size + DRIVER_IMAGE_ALIGN - 1) & ~(DRIVER_IMAGE_ALIGN - 1)
    return images


def data_section(spec: DriverSpec) -> str:
    """Assembly for a driver's globals (zeroed) and UNICODE_STRING constants."""
    lines = []
    for name, size in spec.globals:
        lines.append(f"{name}:")
        lines.extend(["dq 0"] * max(1, (size + 7) // 8))
    for name, value in spec.strings:
        units = [ord(c) for c in value]
        lines += [f"{name}:", f"dw {2 * len(units)}, {2 * len(units) + 2}", "dd 0",
                  f"dq {name}_Buffer", f"{name}_Buffer:",
                  "dw " + ", ".join(str(u) for u in [*units, 0])]
    return "\n".join(lines) + "\n" + spec.data


def boot_scenario(scen: Scenario, seed: int | None = None, cpus: int | None = None,
                  settle_steps: int | None = None) -> Machine:
    """Boot the machine a scenario describes, load its drivers, arm its events.  With
    settle_steps (the run's step budget) a boot whose drivers never finish loading stops
    after that many steps instead of failing."""
    from machine.boot import boot
    from machine.events import event_action

    config = MachineConfig(cpus=cpus or scen.cpus, seed=scen.seed if seed is None else seed)

    def load(m: Machine) -> list[ModuleImage]:
        from machine.hal.devices import install_device_memory

        m.verified.update(scen.verifier)
        # Verifier settings name drivers by file name (myfault.sys), as Windows keeps them.
        files = {d.name.lower(): d.image for d in scen.drivers}
        m.verifier.configure(m, [files.get(n.lower(), n) for n in scen.verifier],
                             scen.verifier_flags)
        for ev in scen.events:  # the devices' registers exist before any driver loads
            if ev.get("action") == "start_device" and ev.get("registers"):
                install_device_memory(m, int(ev["registers"]))
        return build_driver_images(m, scen, lambda img: m.verifier.driver_loaded(m, img))

    events = [(int(ev.get("at_tick", 0)), event_action(ev)) for ev in scen.events]
    m = boot(config, load, events, settle_steps)
    m.scenario = scen
    if scen.step_budget is not None:  # a debugger's `g` runs as far as the scenario's runs
        m.step_budget = scen.step_budget
    m.journal.clear()  # the boot's own run is part of booting
    m.boot_factory = lambda: boot_scenario(scen, seed=seed, cpus=cpus,
                                           settle_steps=settle_steps)
    return m
