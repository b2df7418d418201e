"""Drivers written in the language inside scenario files: errors name the scenario
file's line and column, the source mixes with assembly routines and [[driver]] tables,
and myfault rewritten in the language crashes as the assembly one does."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdsim.app import App
from machine.scenario import ScenarioError, boot_scenario, load_scenario, parse_scenario
from tests.conftest import run
from tests.machine.drvlang_util import lang_scenario, u64

MYFAULT = Path(__file__).parent / "drvlang" / "myfault.toml"


def error_of(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "lab.toml")
    return info.value


def test_a_compile_error_names_the_scenario_files_line_and_column():
    text = lang_scenario("lab", "global G: u32;\nroutine DriverEntry() {\n    G = H + 1;\n}\n")
    err = error_of(text)
    # the source starts on line 11 of the file (after the ''' line)
    assert text.splitlines()[12] == "    G = H + 1;"
    assert (err.path, err.line, err.column) == ("lab.toml", 13, 9)
    assert err.message == "unknown name 'H'"
    assert str(err) == "lab.toml:13:9: unknown name 'H'"


def test_a_syntax_error_on_the_first_line_counts_columns_from_the_opening_quotes():
    text = ('[scenario]\nname = "x"\n[[driver]]\nname = "x"\nentry = "DriverEntry"\n'
            "source = '''global G u32;\nroutine DriverEntry() {}'''\n")
    err = error_of(text)
    assert (err.line, err.column) == (6, 22)
    assert err.message == "unexpected 'u32', expected ':'"


def test_a_source_in_a_basic_string_is_found_by_its_first_line():
    text = ('[scenario]\nname = "x"\n[[driver]]\nname = "x"\nentry = "DriverEntry"\n'
            'source = """\nstring S = "\\\\Device\\\\X";\nroutine DriverEntry() {\n'
            '    breakpoint\n}\n"""\n')
    err = error_of(text)
    assert (err.line, err.column) == (10, 1)
    assert err.message == "unexpected '}', expected ';'"


def test_an_asm_block_error_names_its_line_in_the_file():
    source = "routine DriverEntry() {\n    asm {\n        mov eax, 1\n        frob eax\n    }\n}\n"
    text = lang_scenario("lab", source)
    scen = parse_scenario(text, "lab.toml")
    with pytest.raises(ScenarioError) as info:
        boot_scenario(scen)
    err = info.value
    assert text.splitlines()[err.line - 1].strip() == "frob eax"
    assert err.message == "in DriverEntry: unknown mnemonic 'frob'"


def test_a_missing_entry_routine_is_an_error_at_the_entry_line():
    text = lang_scenario("lab", "routine Main() {}\n")
    err = error_of(text)
    assert text.splitlines()[err.line - 1] == 'entry = "DriverEntry"'
    assert err.message == "entry routine DriverEntry is not defined"


def test_an_unknown_nt_routine_is_found_at_compile_time():
    err = error_of(lang_scenario("lab", "routine DriverEntry() {\n    KeFrobnicate(1);\n}\n"))
    assert err.message == "unknown routine 'KeFrobnicate': not in this driver nor in nt"
    assert (err.line, err.column) == (12, 5)


def test_source_routines_and_assembly_routines_call_each_other_and_share_globals():
    extra = '''
[[driver.global]]
name = "Table"
size = 8

[[driver.routine]]
name = "AsmDouble"
code = """
    sub     rsp, 28h
    call    LangIncrement
    add     rax, rax
    add     rsp, 28h
    ret
"""
'''
    source = """
global Result: u64;
routine LangIncrement(x: u64): u64 { return x + 1; }
routine DriverEntry(drv: ptr, reg: ptr) {
    Table = 0x51;
    Result = AsmDouble(20);
}
"""
    m = boot_scenario(parse_scenario(lang_scenario("mix", source, extra=extra), "mix.toml"))
    assert u64(m, "mix!Result") == 42
    assert u64(m, "mix!Table") == 0x51


def test_myfault_written_in_the_language_stops_with_0xd1_in_the_compiled_routine():
    app = App.start(load_scenario(str(MYFAULT)))
    m = app.machine
    assert m.bugcheck is not None and m.bugcheck.code == 0xD1
    fault = m.bugcheck.params[3]
    start = m.sym("myfault!MyfaultHighIrqlFault")
    assert start < fault < start + 0x40
    out = run(app.session, "!analyze -v")
    offset = fault - start
    assert "DRIVER_IRQL_NOT_LESS_OR_EQUAL (d1)" in out
    assert f"SYMBOL_NAME:  myfault!MyfaultHighIrqlFault+{offset:x}" in out
    assert "FAILURE_BUCKET_ID:  AV_myfault!MyfaultHighIrqlFault" in out
    assert "READ_ADDRESS:  " + f"{m.bugcheck.params[0]:x}" + " Paged pool" in out
    stack = [line for line in out if " : myfault!" in line]
    assert [line.split(" : ")[-1] for line in stack][:3] == [
        f"myfault!MyfaultHighIrqlFault+0x{offset:x}",
        stack[1].split(" : ")[-1], stack[2].split(" : ")[-1]]
    assert stack[1].split(" : ")[-1].startswith("myfault!MyfaultDispatchIoctl+0x")
    assert stack[2].split(" : ")[-1].startswith("myfault!MyfaultDeviceControl+0x")


def test_the_builtin_myfault_scenario_still_loads_its_assembly_unchanged():
    scen = load_scenario("scenarios/myfault.toml")
    assert all(r.origins is None for r in scen.drivers[0].routines)
    assert scen.drivers[0].data == ""
