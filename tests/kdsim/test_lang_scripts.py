""".printf and script files ($$<, $$><, $$>a<), including a real multi-line kd script
that walks the process list, checked against `!process 0 0` and memory."""

from __future__ import annotations

import re

from machine.types.view import Struct
from tests.conftest import run

WALK = """\
$$ Walk nt!PsActiveProcessHead and print each process and its image name.
r $t0 = nt!PsActiveProcessHead
r $t3 = 0
.for (r $t1 = poi(@$t0);
      (@$t1 != 0) & (@$t1 != @$t0);
      r $t1 = poi(@$t1))
{
    r $t2 = @$t1 - @@OFFSET@@
    .printf "%p %ma\\n", @$t2, @$t2 + @@IMAGE@@
    r $t3 = @$t3 + 1
}
.printf "%d processes\\n", @$t3
"""


def test_printf_conversions(session) -> None:
    out = run(session, '.printf "%x %X %lx %I64x %d %u %ld %I64d %c %%\\n", '
                       "ffffffff`12345678, 0xab, -1, -1, -1, -1, 5, -2, 41")
    assert out == ["12345678 AB ffffffff ffffffffffffffff -1 4294967295 5 -2 A %"]
    assert run(session, '.printf "[%08x|%-6d|%5u]\\n", 1f, 0n42, 7') == [
        "[0000001f|42    |    7]"]
    assert run(session, '.printf "a\\tb\\\\c\\"d\\ne"') == ['a\tb\\c"d', "e"]
    assert run(session, '.printf /D "<b>x</b>\\n"') == ["<b>x</b>"]


def test_printf_pointers_symbols_and_strings(session, app) -> None:
    process = session.current_process()
    ep = Struct(app.machine.kspace, "_EPROCESS", process)
    name_at = ep.addr("ImageFileName")
    image = app.target.read_virtual(name_at, 15).split(b"\0")[0].decode()
    assert run(session, f'.printf "%p %ma\\n", @$proc, {name_at:x}') == [
        f"{process:016x} {image}"]
    assert run(session, '.printf "%N\\n", 10') == ["0000000000000010"]
    sym = session.symbol("nt!KeBugCheckEx")
    assert run(session, '.printf "%y\\n", nt!KeBugCheckEx+10') == [
        f"nt!KeBugCheckEx+0x10 ({sym + 16 >> 32:08x}`{sym + 16 & 0xFFFFFFFF:08x})"]
    entry = session.reader.u64(session.symbol("nt!PsLoadedModuleList"))
    us = session.reader.field_addr("_KLDR_DATA_TABLE_ENTRY", entry, "BaseDllName")
    name = session.reader.unicode_string(us)
    buffer = session.reader.field("_UNICODE_STRING", us, "Buffer")
    assert run(session, f'.printf "%msu|%mu\\n", {us:x}, {buffer:x}') == [f"{name}|{name}"]


def test_printf_errors(session) -> None:
    assert run(session, '.printf "%x %x\\n", 1') == ["Numeric expression missing from '<EOL>'"]
    assert run(session, ".printf x") == ["Syntax error at 'x'"]
    assert run(session, '.printf "%ma\\n", 0') == ["Memory access error at '0'"]


def test_process_walk_script_matches_process_list(session, tmp_path) -> None:
    offset = session.reader.offset("_EPROCESS", "ActiveProcessLinks")
    image = session.reader.offset("_EPROCESS", "ImageFileName")
    script = tmp_path / "walk.txt"
    script.write_text(WALK.replace("@@OFFSET@@", f"0x{offset:x}")
                      .replace("@@IMAGE@@", f"0x{image:x}"), encoding="utf-8")
    out = run(session, f"$$>< {script}")
    listing = run(session, "!process 0 0")
    processes = [line.split()[1] for line in listing if line.startswith("PROCESS ")]
    images = [line.split("Image: ")[1] for line in listing if "Image: " in line]
    assert len(processes) > 5
    assert out[-1] == f"{len(processes)} processes"
    rows = [line.split(" ", 1) for line in out[:-1]]
    assert [r[0] for r in rows] == processes
    # ImageFileName holds 14 characters and a NUL; !process prints the full name
    for (_, short), full in zip(rows, images, strict=True):
        assert full.startswith(short) and len(short) == min(len(full), 14)


def test_script_with_arguments(session, tmp_path) -> None:
    script = tmp_path / "args.txt"
    script.write_text(".echo ${$arg0} [${$arg1}] [${$arg2}] ${/d:$arg2} ${/d:$arg3}\n"
                      ".if (${/d:$arg1}) { ? ${$arg1} }\n", encoding="utf-8")
    out = run(session, f'$$>a< {script} 10 "y z"')
    assert out == [f"{script} [10] [y z] 1 0", "Evaluate expression: 16 = 00000000`00000010"]


def test_script_lines_run_as_typed_and_echoed(session, tmp_path) -> None:
    script = tmp_path / "lines.txt"
    script.write_text(".echo one\naS Later value\n.echo Later\nr $t3=7\n? @$t3\n",
                      encoding="utf-8")
    prompt = session.prompt
    assert run(session, f"$$< {script}") == [
        f"{prompt}.echo one", "one", f"{prompt}aS Later value", f"{prompt}.echo Later",
        "value", f"{prompt}r $t3=7", f"{prompt}? @$t3",
        "Evaluate expression: 7 = 00000000`00000007"]
    # joined into one block, the alias set on one line is not seen by the next
    session.aliases.clear()
    out = run(session, f"$$>< {script}")
    assert out[:2] == ["one", "Later"]


def test_relative_names_and_missing_files(session, tmp_path, monkeypatch) -> None:
    (tmp_path / "rel.txt").write_text(".echo relative\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert run(session, "$$>< rel.txt") == ["relative"]
    assert run(session, "$$< nope.txt; .echo next") == ["Couldn't open file 'nope.txt'", "next"]
    assert run(session, "$$>a< missing.txt 1") == ["Couldn't open file 'missing.txt'"]


def test_script_running_itself_is_bounded(session, tmp_path) -> None:
    script = tmp_path / "self.txt"
    script.write_text(f"$$>< {script}\n", encoding="utf-8")
    out = run(session, f"$$>< {script}")
    assert any(re.search("nested too deeply", line) for line in out)
