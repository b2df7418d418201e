"""Malformed scenario files: each mistake is one error, `file:line:col: message`, at the
offending key or value (a missing key: at its table's header)."""

from __future__ import annotations

import pytest

from machine.scenario import ScenarioError, boot_scenario, parse_scenario
from machine.scenario_check import check_scenario

GOOD = """\
[scenario]
name = "lab"
title = "A lab"

[machine]
cpus = 2
seed = 1
verifier = ["lab"]

[[driver]]
name = "lab"
entry = "DriverEntry"

[[driver.global]]
name = "Buffer"
size = 8

[[driver.string]]
name = "DeviceName"
value = '\\Device\\Lab'

[[driver.routine]]
name = "DriverEntry"
code = \"\"\"
    sub     rsp, 28h
    call    Helper
    add     rsp, 28h
    xor     eax, eax
    ret
\"\"\"

[[driver.routine]]
name = "Helper"
code = \"\"\"
    ret
\"\"\"

[[driver]]
name = "other"
entry = "DriverEntry"
source = '''
routine DriverEntry(drv: ptr, reg: ptr): u32 { return 0; }
'''

[[event]]
at_tick = 8
action = "trim_paged_pool"
page_of = "lab!Buffer"

[[event]]
at_tick = 12
action = "start_process"
image = "client.exe"
program = [
    { open = '\\\\.\\Lab' },
    { ioctl = 0x222003, device = '\\\\.\\Lab', input = "0102", output = 8 },
]

[[event]]
at_tick = 20
action = "unload_driver"
driver = "other"
"""


def error_of(text: str, boot: bool = False) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        scen = parse_scenario(text, "lab.toml")
        if boot:
            check_scenario(scen)
    return info.value


def position_of(text: str, snippet: str, nth: int = 0) -> tuple[int, int]:
    """The line and column of the nth occurrence of snippet in text."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(snippet, at + 1)
    line = text.count("\n", 0, at) + 1
    return line, at - text.rfind("\n", 0, at)


def test_the_good_scenario_loads_and_checks():
    scen = parse_scenario(GOOD, "lab.toml")
    assert [d.name for d in scen.drivers] == ["lab", "other"]
    summary = check_scenario(scen)
    assert (summary.drivers, summary.routines, summary.events) == (2, 3, 3)


PROGRAM = GOOD[GOOD.index("program = ["):GOOD.index("]\n\n[[event]]\nat_tick = 20") + 1]

# (what is replaced, by what, where the error points (a snippet of the new text and
# which occurrence of it), the message)
CASES = [
    # TOML syntax
    ('cpus = 2', 'cpus = = 2', ("= = 2", 0, 2), "Invalid value"),
    # types
    ('cpus = 2', 'cpus = "two"', ('"two"', 0, 0),
     "`cpus` must be a whole number from 1 to 64"),
    ('seed = 1', 'seed = 1.5', ("1.5", 0, 0), "`seed` must be a whole number from 0 to 0xffffffff"),
    ('verifier = ["lab"]', 'verifier = "lab"', ('"lab"', 1, 0),
     "`verifier` must be a list of non-empty strings"),
    ('[[driver.global]]\nname = "Buffer"\nsize = 8\n', 'global = 1\n', ("global = 1", 0, 9),
     "`global` must be an array of tables ([[driver.global]])"),
    ('name = "Buffer"\nsize = 8', 'name = "Buffer"\nsize = "8"', ('"8"', 0, 0),
     "`size` must be a whole number from 1 to 0x10000"),
    ("    { open = '\\\\.\\Lab' },", "    { open = '\\\\.\\Lab', async = 1 },", ("1 }", 0, 0),
     "`async` must be true or false"),
    (PROGRAM, 'program = { open = 1 }', ("{ open", 0, 0),
     "`program` must be a list of inline tables (like { open = '\\\\.\\MyFault' })"),
    # unknown names
    ('title = "A lab"', 'title = "A lab"\ncolour = "red"', ("colour", 0, 0),
     "unknown key `colour` in [scenario] (expected one of: name, title)"),
    ('seed = 1', 'seed = 1\nmemory = 4', ("memory", 0, 0),
     "unknown key `memory` in [machine] (expected one of: cpus, seed, verifier, "
     "verifier_flags, step_budget)"),
    ('[machine]', '[machines]', ("[machines]", 0, 0),
     "unknown table `machines` (expected one of: scenario, machine, driver, event, lab)"),
    ('name = "lab"\nentry', 'name = "lab"\nentry_point = "X"\nentry', ("entry_point", 0, 0),
     "unknown key `entry_point` in [[driver]] (expected one of: name, image, entry, "
     "depends_on, source, global, string, routine)"),
    ('size = 8', 'size = 8\nalign = 16', ("align", 0, 0),
     "unknown key `align` in [[driver.global]] (expected one of: name, size)"),
    ("value = '\\Device\\Lab'", "value = '\\Device\\Lab'\nkind = 1", ("kind", 0, 0),
     "unknown key `kind` in [[driver.string]] (expected one of: name, value)"),
    ('name = "Helper"', 'name = "Helper"\nirql = 2', ("irql", 0, 0),
     "unknown key `irql` in [[driver.routine]] (expected one of: name, code)"),
    ('page_of = "lab!Buffer"', 'page_of = "lab!Buffer"\npages = 2', ("pages", 0, 0),
     'unknown key `pages` in [[event]] with action = "trim_paged_pool" (expected one of: '
     "at_tick, action, page_of)"),
    ('action = "trim_paged_pool"', 'action = "trim_working_set"', ('"trim_working_set"', 0, 0),
     "unknown event action 'trim_working_set' (expected one of: trim_paged_pool, "
     "start_process, start_device, unload_driver, set_system_power)"),
    ('input = "0102"', 'input = "0102", timeout = 5', ("timeout", 0, 0),
     "unknown key `timeout` in a program step `ioctl` (expected one of: ioctl, device, input, "
     "output)"),
    ("    { open = '\\\\.\\Lab' },", "    { opne = '\\\\.\\Lab' },", ("{ opne", 0, 0),
     "a program step has no step key (each has one of: open, close, ioctl, read, write, "
     "cancel, exit_thread, exit_process, queue_apc, sleep_ms, test_alert, repeat)"),
    ('driver = "other"', 'driver = "another"', ('"another"', 0, 0),
     "unknown driver `another` in `driver` (the drivers are: lab, other)"),
    ('verifier = ["lab"]', 'verifier = ["lab", "nosuch.sys"]', ('"nosuch.sys"', 0, 0),
     "unknown driver `nosuch.sys` in verifier (the drivers are: lab, other)"),
    ("device = '\\\\.\\Lab'", "device = '\\\\.\\Lba'", ("'\\\\.\\Lba'", 0, 0),
     "`device` names '\\\\.\\Lba', which the program has not opened (an earlier "
     "{ open = ... } step)"),
    ("    { ioctl = 0x222003,", "    { repeat = 2, steps = [{ ioctl = 0x22, device = 'x' }] },\n"
     "    { ioctl = 0x222003,", ("'x'", 0, 0),
     "`device` names 'x', which the program has not opened (an earlier { open = ... } step)"),
    ("    { ioctl = 0x222003,", "    { repeat = 0, steps = [] },\n    { ioctl = 0x222003,",
     ("0, steps", 0, 0), "`repeat` must be from 1 to 0x186a0, not 0"),
    ('page_of = "lab!Buffer"', 'page_of = "lab!Bufer"', ('"lab!Bufer"', 0, 0),
     "`page_of` names `Bufer`, which is not a global of driver lab"),
    ('page_of = "lab!Buffer"', 'page_of = "labx!Buffer"', ('"labx!Buffer"', 0, 0),
     "`page_of` names module `labx`, which is not a driver of the scenario (nor nt)"),
    ('name = "Helper"', 'name = "Buffer"', ('"Buffer"', 1, 0),
     "`Buffer` is defined twice in driver lab"),
    ('name = "other"', 'name = "LAB"', ('"LAB"', 0, 0), "driver name `LAB` is already taken"),
    # missing keys and routines
    ('[scenario]\nname = "lab"\n', '[scenario]\n', ("[scenario]", 0, 0), "[scenario] needs `name`"),
    ('name = "lab"\nentry = "DriverEntry"\n', 'name = "lab"\n', ("[[driver]]", 0, 0),
     "[[driver]] needs `entry`"),
    ('entry = "DriverEntry"\n\n[[driver.global]]', 'entry = "Main"\n\n[[driver.global]]',
     ('"Main"', 0, 0), "entry routine Main is not defined"),
    ('at_tick = 20\naction = "unload_driver"\n', 'at_tick = 20\n', ("[[event]]", 2, 0),
     "[[event]] needs `action`"),
    # dependencies
    ('name = "lab"\nentry', 'name = "lab"\ndepends_on = ["ghost"]\nentry', ('"ghost"', 0, 0),
     "unknown driver `ghost` in depends_on (the drivers are: lab, other)"),
    # oversized values and values that do not fit their field
    ('cpus = 2', 'cpus = 65', ("65", 0, 0), "`cpus` must be from 1 to 64, not 65"),
    ('cpus = 2', 'cpus = 0', ("0", 0, 0), "`cpus` must be from 1 to 64, not 0"),
    ('seed = 1', 'seed = 0x100000000', ("0x100000000", 0, 0),
     "`seed` must be from 0 to 0xffffffff, not 0x100000000"),
    ('at_tick = 8', 'at_tick = -1', ("-1", 0, 0), "`at_tick` must be from 0 to 0xf4240, not -1"),
    ('at_tick = 8', 'at_tick = 2000000', ("2000000", 0, 0),
     "`at_tick` must be from 0 to 0xf4240, not 0x1e8480"),
    ('size = 8', 'size = 0x20000', ("0x20000", 0, 0),
     "`size` must be from 1 to 0x10000, not 0x20000"),
    ('input = "0102"', f'input = "{"ab" * 0x301}"', ('"abab', 0, 0),
     "`input` is 769 bytes; the program's buffer holds at most 768"),
    ('input = "0102"', 'input = "01 02"', ('"01 02"', 0, 0),
     "`input` must be hex bytes, two digits each (like \"0807060504030201\")"),
    ('output = 8', 'output = 0x1000', ("0x1000", 0, 0), "`output` must be from 0 to 768, not 4096"),
    ('ioctl = 0x222003', 'ioctl = 0x100000000', ("0x100000000", 0, 0),
     "`ioctl` must be from 0 to 0xffffffff, not 0x100000000"),
    ("value = '\\Device\\Lab'", f"value = '{'x' * 0x7FFF}'", ("'xxx", 0, 0),
     "`value` is 32767 characters long; a UNICODE_STRING holds at most 32766"),
    ('name = "Helper"', 'name = "2Helper"', ('"2Helper"', 0, 0),
     "`name` must be a name of letters, digits and _ (not starting with a digit, at most 64)"),
    ('verifier = ["lab"]', 'verifier = ["lab"]\nverifier_flags = -1', ("-1", 0, 0),
     "`verifier_flags` must be from 0 to 0xffffffff, not -1"),
]


@pytest.mark.parametrize("old, new, where, message", CASES,
                         ids=[f"{i}-{c[3][:30]}" for i, c in enumerate(CASES)])
def test_each_mistake_is_one_error_at_its_place(old, new, where, message):
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    err = error_of(text)
    snippet, nth, shift = where
    line, column = position_of(text, snippet, nth)
    assert err.message == message
    assert (err.path, err.line, err.column) == ("lab.toml", line, column + shift)
    assert str(err) == f"lab.toml:{err.line}:{err.column}: {message}"


EVENTS = """
[[event]]
action = "start_device"
vector = 0x80
processor = {processor}
registers = {registers}
trigger = "{trigger}"
"""


@pytest.mark.parametrize("processor, registers, trigger, snippet, message", [
    (2, 0xFED40000, "level", "processor = 2",
     "`processor` must be below the machine's 2 processors"),
    (0, 0x1000, "level", "registers = 4096",
     "`registers` must be from 0x80000000 to 0xfffffffffffff, not 4096"),
    (0, 0xFED40000, "edge", 'trigger = "edge"', "`trigger` must be one of: latched, level"),
    (0, 0xFED40010, "level", "registers = 4275306512",
     "`registers` must be a page-aligned physical address"),
])
def test_device_events_are_checked(processor, registers, trigger, snippet, message):
    text = GOOD + EVENTS.format(processor=processor, registers=registers, trigger=trigger)
    err = error_of(text)
    line, column = position_of(text, snippet)
    assert err.message == message
    assert (err.line, err.column) == (line, column + snippet.index("=") + 2)


def test_a_dependency_cycle_is_reported_at_the_entry_that_closes_it():
    text = GOOD.replace('name = "lab"\nentry', 'name = "lab"\ndepends_on = ["other"]\nentry')
    text = text.replace('name = "other"\nentry', 'name = "other"\ndepends_on = ["lab"]\nentry')
    err = error_of(text)
    assert err.message == "driver dependency cycle: lab -> other -> lab"
    line, column = position_of(text, '["lab"]', 1)
    assert (err.line, err.column) == (line, column + 1)
    self_cycle = GOOD.replace('name = "other"\nentry', 'name = "other"\ndepends_on = ["other"]\n'
                                                       'entry')
    assert error_of(self_cycle).message == "driver dependency cycle: other -> other"


def test_drivers_load_after_the_drivers_they_depend_on():
    text = GOOD.replace('name = "lab"\nentry', 'name = "lab"\ndepends_on = ["other"]\nentry')
    scen = parse_scenario(text, "lab.toml")
    assert [d.name for d in scen.drivers] == ["other", "lab"]
    m = boot_scenario(scen)
    # The loader's list, as !lm reads it: other.sys was linked first, at the lower base.
    assert m.sym("other!DriverEntry") < m.sym("lab!DriverEntry")


def test_a_call_to_an_undefined_routine_is_found_by_the_check_at_its_operand():
    text = GOOD.replace("call    Helper", "call    Helpr")
    scen = parse_scenario(text, "lab.toml")  # the names of labels are the assembler's
    err = error_of(text, boot=True)
    assert scen.drivers[0].name == "lab"
    assert err.message == "in lab!DriverEntry: unknown symbol 'Helpr'"
    assert (err.line, err.column) == position_of(text, "Helpr")


def test_an_assembly_error_on_a_routines_first_line_counts_from_the_quotes():
    text = GOOD.replace('code = """\n    ret\n"""', 'code = "frob eax"')
    err = error_of(text, boot=True)
    assert err.message == "in lab!Helper: unknown mnemonic 'frob'"
    assert (err.line, err.column) == position_of(text, "frob")


def test_page_of_an_unknown_nt_symbol_is_found_by_the_check():
    text = GOOD.replace('page_of = "lab!Buffer"', 'page_of = "nt!NoSuchPointer"')
    parse_scenario(text, "lab.toml")  # nt's symbols are known once a kernel is built
    err = error_of(text, boot=True)
    assert err.message == "unknown symbol `nt!NoSuchPointer` in `page_of`"
    assert (err.line, err.column) == position_of(text, '"nt!NoSuchPointer"')
