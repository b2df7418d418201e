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

DRIVER_TEXT_RVA = 0x1000
DRIVER_IMAGE_ALIGN = 0x10000


class ScenarioError(Exception):
    def __init__(self, path: str, line: int, column: int, message: str) -> None:
        super().__init__(f"{path}:{line}:{column}: {message}")
        self.path, self.line, self.column, self.message = path, line, column, message


@dataclass
class RoutineSpec:
    name: str
    code: str
    line: int  # where the code text starts in the file
    # compiled from driver-language source: the file (line, column) of each code line
    origins: list[tuple[int, int]] | None = None


@dataclass
class DriverSpec:
    name: str
    image: str
    entry: str
    routines: list[RoutineSpec]
    globals: list[tuple[str, int]]
    strings: list[tuple[str, str]] = field(default_factory=list)
    data: str = ""  # data-section assembly compiled from the driver's `source`


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


def _line_of(text: str, snippet: str) -> int:
    idx = text.find(snippet.strip("\n")[:40]) if snippet.strip() else -1
    return text.count("\n", 0, idx) + 1 if idx >= 0 else 1


def parse_scenario(text: str, path: str) -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        line, col = 1, 1
        if "(at line " in msg:
            pos = msg.rsplit("(at line ", 1)[1].rstrip(")")
            line_s, col_s = pos.split(", column ")
            line, col = int(line_s), int(col_s)
            msg = msg.rsplit(" (at line ", 1)[0]
        raise ScenarioError(path, line, col, msg) from None

    def need(table: dict, key: str, kind: type, where: str):
        if key not in table:
            raise ScenarioError(path, _line_of(text, f"[{where}"), 1,
                                f"[{where}] needs `{key}`")
        value = table[key]
        if not isinstance(value, kind):
            raise ScenarioError(path, _line_of(text, f"{key} ="), 1,
                                f"`{key}` must be a {kind.__name__}")
        return value

    scen = need(data, "scenario", dict, "scenario")
    machine = data.get("machine", {})
    s = Scenario(name=need(scen, "name", str, "scenario"),
                 title=scen.get("title", ""), path=path, text=text,
                 cpus=machine.get("cpus", 2), seed=machine.get("seed", 1),
                 verifier=list(machine.get("verifier", [])),
                 verifier_flags=machine.get("verifier_flags", DEFAULT_LEVEL))
    if not isinstance(s.verifier_flags, int) or not 0 <= s.verifier_flags <= 0xFFFFFFFF:
        raise ScenarioError(path, _line_of(text, "verifier_flags"), 1,
                            "verifier_flags must be a 32-bit number")
    if not isinstance(s.cpus, int) or not 1 <= s.cpus <= 64:
        raise ScenarioError(path, _line_of(text, "cpus"), 1, "cpus must be 1..64")
    search_from = 0  # each driver's source is looked for after the previous one's
    for d in data.get("driver", []):
        routines = []
        has_source = "source" in d
        for r in (d.get("routine", []) if has_source else need(d, "routine", list, "driver")):
            code = need(r, "code", str, "driver.routine")
            routines.append(RoutineSpec(need(r, "name", str, "driver.routine"), code,
                                        _line_of(text, code)))
        globals_ = [(g["name"], int(g.get("size", 8))) for g in d.get("global", [])]
        strings = [(need(u, "name", str, "driver.string"), need(u, "value", str, "driver.string"))
                   for u in d.get("string", [])]
        spec = DriverSpec(need(d, "name", str, "driver"), d.get("image", d["name"] + ".sys"),
                          need(d, "entry", str, "driver"), routines, globals_, strings)
        if has_source:
            search_from = _compile_source(spec, need(d, "source", str, "driver"), text, path,
                                          search_from)
        s.drivers.append(spec)
    s.events = list(data.get("event", []))
    return s


def _source_origin(text: str, source: str, start: int) -> tuple[int, int, int]:
    """Where a driver's `source` text begins in the scenario file: (line, column, offset).
    The whole text is found when the file holds it verbatim (a ''' string); else the
    first of its lines that the file holds verbatim (escapes change the others)."""
    start = max(start, text.find("source", start))  # after the key, not in a comment above
    idx = text.find(source, start) if source.strip() else -1
    if idx >= 0:
        return text.count("\n", 0, idx) + 1, idx - text.rfind("\n", 0, idx), idx + 1
    for k, line in enumerate(source.split("\n")):
        idx = text.find(line, start) if line.strip() else -1
        if idx >= 0:
            column = idx - text.rfind("\n", 0, idx) if k == 0 else 1
            return text.count("\n", 0, idx) + 1 - k, column, idx + 1
    return 1, 1, start


def _compile_source(spec: DriverSpec, source: str, text: str, path: str, start: int) -> int:
    """Compile a driver's `source` into its routines and data; returns where the search
    for the next driver's source starts."""
    from machine.drvlang import DriverLangError, compile_driver, nt_routine_exists

    line0, col0, after = _source_origin(text, source, start)

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
    if spec.entry not in {r.name for r in spec.routines}:
        raise ScenarioError(path, _line_of(text, "entry"), 1,
                            f"entry routine {spec.entry} is not defined")
    spec.data = compiled.data
    return after


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
        parts.append(f"{r.name}:\n{r.code.strip()}")
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
        return ScenarioError(scen.path, owner.line + exc.line - start - 1, exc.column,
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
        raise ScenarioError(scen.path, _line_of(scen.text, "entry"), 1,
                            f"entry routine {spec.entry} is not defined")
    img.entry = asm.labels[spec.entry]
    link_loaded_module(m, img, img.entry)
    return img


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


def boot_scenario(scen: Scenario, seed: int | None = None, cpus: int | None = None) -> Machine:
    """Boot the machine a scenario describes, load its drivers, arm its events."""
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
        images = []
        base = m.layout.driver_base
        for spec in scen.drivers:
            images.append(build_driver_image(m, spec, scen, base))
            m.verifier.driver_loaded(m, images[-1])
            base += (images[-1].size + DRIVER_IMAGE_ALIGN - 1) & ~(DRIVER_IMAGE_ALIGN - 1)
        return images

    events = [(int(ev.get("at_tick", 0)), event_action(ev, scen)) for ev in scen.events]
    m = boot(config, load, events)
    m.scenario = scen
    m.journal.clear()  # the boot's own run is part of booting
    m.boot_factory = lambda: boot_scenario(scen, seed=seed, cpus=cpus)
    return m
