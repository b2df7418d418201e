"""Tab completion at the prompt (kdsim/completion.py), on the crashed default machine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from commands import registry
from commands.pseudo_regs import AUTOMATIC, pseudo_value
from commands.session import Session
from commands.symbols import SymbolEngine
from kdsim.completion import KdCompleter, natural_key


def complete(session: Session, text: str) -> list[str]:
    return [c.text for c in KdCompleter(session).get_completions(Document(text),
                                                                 CompleteEvent())]


def metas(session: Session, text: str) -> dict[str, str]:
    return {c.text: c.display_meta_text
            for c in KdCompleter(session).get_completions(Document(text), CompleteEvent())}


def applied(session: Session, text: str, choice: str) -> str:
    """The line after taking completion `choice` at the end of `text`."""
    for c in KdCompleter(session).get_completions(Document(text), CompleteEvent()):
        if c.text == choice:
            return Document(text).text[: len(text) + c.start_position] + c.text
    raise AssertionError(f"{choice!r} not offered for {text!r}")


# ------------------------------------------------------------------------ commands


def test_extension_names_come_from_the_registry(session: Session) -> None:
    got = complete(session, "!pr")
    expected = sorted((n for n in registry.COMMANDS if n.startswith("!pr")), key=natural_key)
    assert got == expected
    assert {"!process", "!prcb"} <= set(got)
    assert metas(session, "!pr")["!process"] == "extension"


def test_meta_command_names(session: Session) -> None:
    got = complete(session, ".lo")
    assert {".logopen", ".logappend", ".logclose", ".logfile"} <= set(got)
    assert all(n.startswith(".lo") for n in got)
    assert metas(session, ".lo")[".logopen"] == "meta-command"


def test_command_after_separator_and_brace(session: Session) -> None:
    assert complete(session, "r; !ana") == ["!analyze"]
    assert applied(session, "r; !ana", "!analyze") == "r; !analyze"
    assert "!analyze" in complete(session, ".if (1) {!ana")
    assert ".else" in complete(session, ".if (1) {r} .el")  # flow keywords, from the grammar


def test_letter_commands_case_preserved(session: Session) -> None:
    got = complete(session, "k")
    assert {"k", "kb", "kL", "kv"} <= set(got)
    assert metas(session, "k")["k"] == "command"


def test_nothing_inside_quotes_or_comments(session: Session) -> None:
    assert complete(session, '.echo "!ana') == []
    assert complete(session, "$$ note !ana") == []


# ------------------------------------------------------------------------- options


def test_options_from_the_syntax_string(session: Session) -> None:
    assert complete(session, "!analyze -") == ["-hang", "-show", "-v"]
    assert applied(session, "!analyze -", "-v") == "!analyze -v"
    dt = complete(session, "dt -")
    assert {"-r", "-b", "-v", "-s", "-l"} <= set(dt)
    assert metas(session, "dt -")["-r"] == "option"
    assert complete(session, ".reload /u") == ["/unl", "/user"]


def test_no_options_glued_to_a_name(session: Session) -> None:
    assert complete(session, "!analyze") == ["!analyze"]


# ------------------------------------------------------------------------- symbols


def test_module_symbols(session: Session) -> None:
    got = complete(session, "u nt!KeBugCheck")
    assert "nt!KeBugCheckEx" in got
    assert all(g.lower().startswith("nt!kebugcheck") for g in got)
    assert applied(session, "bp nt!KeBugCheck", "nt!KeBugCheckEx") == "bp nt!KeBugCheckEx"
    assert metas(session, "u nt!KeBugCheck")["nt!KeBugCheckEx"] == "function"


def test_all_symbols_of_a_module(session: Session) -> None:
    m = session.symbols.module_named("myfault")
    assert m is not None and m.symbols is not None
    names = {f"myfault!{f.name}" for f in m.symbols.functions}
    names |= {f"myfault!{d.name}" for d in m.symbols.data}
    assert names
    got = complete(session, "u myfault!")
    assert set(got) == names
    assert got == sorted(got, key=natural_key)
    assert all(session.symbols.address_of(g) is not None for g in got)


def test_symbol_inside_an_expression(session: Session) -> None:
    assert "nt!KiBugCheckData" in complete(session, "dq poi(nt!KiBugCheck")
    assert metas(session, "dq nt!KiBugCheckD")["nt!KiBugCheckData"] == "data"


def test_module_names(session: Session) -> None:
    assert complete(session, "bp myf") == ["myfault!"]
    assert metas(session, "bp myf")["myfault!"] == "module"
    modules = {f"{m.name}!" for m in session.symbols.modules()}
    assert modules <= set(complete(session, "u "))


def test_a_driver_loaded_later_appears_after_the_stop(session: Session) -> None:
    completer = KdCompleter(session)

    def offered(text: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(text), CompleteEvent())]

    assert offered("u late") == []
    # A new engine, as the session makes when the target stops, whose module list has
    # one more driver (a copy of myfault under another name).
    engine = SymbolEngine(session.target)
    mods = engine.modules()
    extra = dataclasses.replace(next(m for m in mods if m.name == "myfault"), name="latedrv")
    engine._modules = [*mods, extra]
    session.symbols = engine
    assert offered("u late") == ["latedrv!"]
    assert offered("u latedrv!") == [t.replace("myfault!", "latedrv!")
                                     for t in complete(session, "u myfault!")]


# --------------------------------------------------------------------------- types


def test_type_names_after_dt(session: Session) -> None:
    got = complete(session, "dt nt!_EPRO")
    assert got == ["nt!_EPROCESS", "nt!_EPROCESS_VALUES"]
    assert applied(session, "dt nt!_EPRO", "nt!_EPROCESS") == "dt nt!_EPROCESS"
    assert "_KTHREAD" in complete(session, "dt _KTH")
    names = session.target.types.names()
    assert set(complete(session, "dt nt!_E")) == {f"nt!{n}" for n in names
                                                   if n.lower().startswith("_e")}
    assert metas(session, "dt _KTH")["_KTHREAD"] == "type"


def test_cast_types_in_dx(session: Session) -> None:
    assert "nt!_EPROCESS" in complete(session, "dx (nt!_EPRO")


def test_fields_after_the_type(session: Session) -> None:
    got = complete(session, "dt nt!_KTHREAD Ap")
    assert {"ApcState", "ApcQueueable"} <= set(got)
    assert all(g.lower().startswith("ap") for g in got)
    assert complete(session, "dt nt!_KTHREAD ffffd00012340000 Ap") == got
    assert metas(session, "dt nt!_KTHREAD Ap")["ApcState"] == "_KAPC_STATE"
    every = complete(session, "dt nt!_KTHREAD ")
    assert {f.name for f in session.target.types.get("_KTHREAD").fields
            if not f.anonymous} <= set(every)


def test_dotted_field_path(session: Session) -> None:
    assert complete(session, "dt nt!_KTHREAD ApcState.Pro") == ["ApcState.Process"]
    assert applied(session, "dt nt!_KTHREAD ApcState.Pro",
                   "ApcState.Process") == "dt nt!_KTHREAD ApcState.Process"
    assert complete(session, "dt nt!_EPROCESS Pcb.DirectoryT") == ["Pcb.DirectoryTableBase"]
    assert complete(session, "dt nt!_KTHREAD NoSuchField.X") == []


# ------------------------------------------------------------ registers, pseudo-registers


def test_pseudo_registers(session: Session) -> None:
    assert complete(session, "? $pro") == ["$proc"]
    assert applied(session, "r @$pro", "@$proc") == "r @$proc"
    assert metas(session, "? $pr")["$prcb"] == "pseudo-register"
    every = complete(session, "? $")
    assert {"$t0", "$t19", "$ra", "$thread"} <= set(every)
    assert every.index("$t2") < every.index("$t10")


def test_the_pseudo_register_table_matches_the_evaluator(session: Session) -> None:
    for name in AUTOMATIC:
        assert pseudo_value(session, name) is not None, name


def test_registers(session: Session) -> None:
    assert complete(session, "? @ri") == ["@rip"]
    assert applied(session, "?@ri", "@rip") == "?@rip"
    regs = session.target.registers(session.processor)
    assert {f"@{r}" for r in regs} <= set(complete(session, "? @"))
    assert "rip" in complete(session, "r ri")


# --------------------------------------------------------------------------- files


def test_script_file_names(session: Session, tmp_path: Path) -> None:
    (tmp_path / "script.txt").write_text("r\n")
    (tmp_path / "scores").mkdir()
    (tmp_path / "other.txt").write_text("k\n")
    line = f"$$<{tmp_path}/sc"
    got = list(KdCompleter(session).get_completions(Document(line), CompleteEvent()))
    assert [line + c.text for c in got] == [f"$$<{tmp_path}/scores", f"$$<{tmp_path}/script.txt"]
    spaced = f"$$>a< {tmp_path}/o"
    assert [c.text for c in KdCompleter(session).get_completions(
        Document(spaced), CompleteEvent())] == ["ther.txt"]
    # past the file name come the script's arguments, not files
    assert complete(session, f"$$>a< {tmp_path}/other.txt {tmp_path}/o") == []
    assert {"/t", "/u"} <= set(complete(session, ".logopen /"))
    assert complete(session, f".logopen /t {tmp_path}/oth") == ["er.txt"]


# ------------------------------------------------------------------------- robustness


class _Broken:
    """A target whose every read fails."""

    def __getattr__(self, name: str):
        raise RuntimeError("target gone")


@pytest.mark.parametrize("text", ["@r", "nt!Ke", "dt _K", "u my", "!pr", "dt nt!_KTHREAD A"])
def test_a_broken_target_yields_nothing_or_names(session: Session, text: str) -> None:
    broken = Session.__new__(Session)
    broken.__dict__.update(session.__dict__)
    broken.target = _Broken()  # type: ignore[assignment]
    broken.symbols = SymbolEngine(broken.target)  # type: ignore[arg-type]
    got = complete(broken, text)
    assert got == (complete(session, text) if text == "!pr" else [])


@pytest.mark.parametrize("text", ["", " ", ";", "{", '"', "dt", "dt nt!", "(((", "@", "$",
                                  "!", ".", "\x00", "dt nt!_KTHREAD ApcState..", "~0s"])
def test_odd_input_never_raises(session: Session, text: str) -> None:
    complete(session, text)
