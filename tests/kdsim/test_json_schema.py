"""The `--json` output objects of !process, !thread, k*, lm and !analyze fit the documented
schema (docs/kdsim-json.schema.json), on the crashed default machine and on library labs,
and the schema rejects data that breaks its rules."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from commands.registry import Result
from commands.session import Session
from kdsim import cli
from kdsim.app import App
from tests.library import labkit

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "kdsim-json.schema.json"


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def envelope(session: Session, res: Result) -> dict:
    """The object `kdsim --json` prints for one command, through a JSON round trip (no
    `default=`: the data must be JSON-able as it is)."""
    obj = {"kind": "command", "prompt": session.prompt, "command": res.command,
           "lines": res.lines, "data": res.data}
    return json.loads(json.dumps(obj, sort_keys=False))


def errors(validator: Draft202012Validator, obj: dict) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(obj)]


def checked(validator: Draft202012Validator, session: Session, line: str) -> list[dict]:
    """Run a line; every result's object must validate.  Returns the objects."""
    out = []
    for res in session.execute(line):
        obj = envelope(session, res)
        assert errors(validator, obj) == [], (line, errors(validator, obj))
        out.append(obj)
    return out


def one(validator: Draft202012Validator, session: Session, line: str) -> dict:
    objs = checked(validator, session, line)
    assert len(objs) == 1
    return objs[0]


def ok(validator: Draft202012Validator, session: Session, line: str) -> dict:
    """The data of a command that must succeed."""
    data = one(validator, session, line)["data"]
    assert not (isinstance(data, dict) and "error" in data), (line, data)
    return data


def failed(validator: Draft202012Validator, session: Session, line: str) -> dict:
    data = one(validator, session, line)["data"]
    assert isinstance(data, dict) and isinstance(data.get("error"), str), (line, data)
    return data


def all_threads(session: Session) -> list[int]:
    data = session.execute("!process 0 2")[0].data
    return [t["address"] for p in data["processes"] for t in p["threads"]]


COMMAND_FORMS = [
    "!process", "!process 0 0", "!process 0 1", "!process 0 7", "!process 0 17",
    "!process -1 0", "!process 4 0", "!process 0 0 notmyfault64.exe", "!process 0 2",
    "!process 0 0 nosuch.exe",
    "!thread", "!thread -p", "!thread -1 2", "!thread -1 0", "!thread -1 e", "!thread -1 1e",
    "k", "kb", "kv", "kn", "kp", "kP", "kc", "kf", "kL", "kM", "k 3", "kbn 3", "kvf",
    "kb = @rsp", "kd", "kd 4",
    "lm", "lm k", "lm u", "lmv", "lmvm myfault", "lm m nt", "lm 1m", "lm sm", "lm a @rip",
    "lm l", "lm e", "lm M *.sys", "lmDvmnt",
    "!analyze", "!analyze -v", "!analyze -hang", "!analyze -show d1",
    "!analyze -show 7e c0000005",
]
FAILING_FORMS = [
    "!process bogus", "!process 1234", "!thread bogus", "!thread 0", "!thread -t 99999",
    "!thread -1 6 extra", "k zz", "kb = ", "kd zz", "lm q", "lm a zz", "!analyze -show",
    "!analyze -show 12345678",
]


# -- the crashed default machine ---------------------------------------------------------


@pytest.mark.parametrize("line", COMMAND_FORMS)
def test_each_form_fits_the_schema_on_the_default_machine(validator, session, line):
    ok(validator, session, line)


@pytest.mark.parametrize("line", FAILING_FORMS)
def test_failing_forms_give_an_error_object_that_fits(validator, session, line):
    failed(validator, session, line)


@pytest.mark.parametrize("line", ["!process /?", "!thread /?", "k /?", "kd /?", "lm /?",
                                  "!analyze /?"])
def test_usage_results_fit(validator, session, line):
    data = ok(validator, session, line)
    assert set(data) == {"names", "syntax", "help"}


def test_every_thread_of_the_machine_fits_in_every_detail(validator, session):
    threads = all_threads(session)
    assert len(threads) > 5
    for et in threads:
        for line in (f"!thread {et:x}", f"!thread {et:x} 1e", f"!thread -p {et:x} 2"):
            ok(validator, session, line)


def test_thread_addresses_are_integers_and_match_the_text(validator, session):
    data = ok(validator, session, "!thread")
    th = data["thread"]
    assert isinstance(th["start_address"], int) and th["start_address"] > 0
    start_line = next(x for x in one(validator, session, "!thread")["lines"]
                      if x.startswith("Win32 Start Address"))
    # notmyfault64.exe's thread starts in user code, which has no symbols
    assert th["start_symbol"] is None
    assert start_line == f"Win32 Start Address 0x{th['start_address']:016x}"
    assert th["state"] == "RUNNING" and th["processor"] == session.processor
    assert th["wait_reason"] is None and th["wait_objects"] == []
    assert data["process"] is None and data["flags"] == 6
    with_process = ok(validator, session, "!thread -p")
    assert with_process["process"]["address"] == th["process"]


def test_thread_stack_is_null_when_not_walked_and_frames_otherwise(validator, session):
    assert ok(validator, session, "!thread -1 2")["thread"]["stack"] is None
    full = ok(validator, session, "!thread -1 6")["thread"]
    assert full["kernel_stack_resident"] is True
    assert full["stack"] and [f["frame"] for f in full["stack"]] == list(range(len(full["stack"])))
    k = ok(validator, session, "k")["frames"]
    assert [f["call_site"] for f in full["stack"]] == [f["call_site"] for f in k]


def test_process_list_and_filters(validator, session):
    every = ok(validator, session, "!process 0 0")
    assert every["flags"] == 0 and every["image_filter"] is None
    images = [p["image"] for p in every["processes"]]
    assert "System" in images and "notmyfault64.exe" in images
    assert all(p["details"] is None and p["threads"] == [] for p in every["processes"])
    only = ok(validator, session, "!process 0 0 notmyfault64.exe")
    assert [p["image"] for p in only["processes"]] == ["notmyfault64.exe"]
    assert only["image_filter"] == "notmyfault64.exe"
    system = ok(validator, session, "!process 0 0 System")["processes"][0]
    assert system["session_id"] is None and system["cid"] == 4


def test_process_details_and_threads_with_flags(validator, session):
    data = ok(validator, session, "!process 0 7")
    p = next(p for p in data["processes"] if p["image"] == "notmyfault64.exe")
    d = p["details"]
    assert d is not None and isinstance(d["virtual_size"], int)
    mb = f"{d['virtual_size'] // (1024 * 1024)} Mb"
    text = one(validator, session, f"!process {p['address']:x} 1")["lines"]
    assert any(x.startswith("    VirtualSize") and x.endswith(mb) for x in text)
    assert p["threads"] and all(t["stack"] is not None for t in p["threads"])
    one_process = ok(validator, session, f"!process {p['address']:x}")
    assert one_process["flags"] == 0xF and len(one_process["processes"]) == 1


def test_k_frames_have_the_same_keys_with_or_without_options(validator, session):
    keys = None
    for line in ("k", "kb", "kv", "kn", "kc", "kf", "kp"):
        frames = ok(validator, session, line)["frames"]
        assert frames
        for f in frames:
            keys = keys or set(f)
            assert set(f) == keys, line
    plain = ok(validator, session, "k")
    assert plain["flags"] == "" and plain["set_context"] is False
    assert all(f["memory"] is None for f in plain["frames"])
    assert len(ok(validator, session, "k 3")["frames"]) == 3
    assert ok(validator, session, "kbn 3")["flags"] == "bn"


def test_kf_memory_is_the_distance_between_frames(validator, session):
    frames = ok(validator, session, "kf")["frames"]
    assert frames[0]["memory"] is None
    assert frames[1]["memory"] == frames[1]["child_sp"] - frames[0]["child_sp"]


def test_kd_gives_the_raw_values(validator, session):
    data = ok(validator, session, "kd 4")
    assert data["count"] == 4 and len(data["values"]) == 4
    assert data["values"][0] == int.from_bytes(session.target.read_virtual(data["rsp"], 8),
                                               "little")


def test_lm_rows_have_the_same_keys_in_every_form(validator, session):
    full = ok(validator, session, "lm")
    names = [m["name"] for m in full["modules"]]
    assert names[0] == "nt" and "myfault" in names
    nt = full["modules"][0]
    assert nt["symbols"] == "public" and nt["pdb"] == "ntkrnlmp.pdb"
    assert nt["end"] - nt["start"] == nt["size"]
    assert ok(validator, session, "lm 1m")["modules"] == full["modules"]
    mine = ok(validator, session, "lmvm myfault")
    assert [m["name"] for m in mine["modules"]] == ["myfault"] and mine["unloaded"] == []
    kernel = ok(validator, session, "lm k")["modules"]
    assert kernel and all(m["start"] >= 0xFFFF800000000000 for m in kernel)


def test_analyze_data_is_the_same_with_and_without_v(validator, session):
    plain = ok(validator, session, "!analyze")
    verbose = ok(validator, session, "!analyze -v")
    assert plain["verbose"] is False and verbose["verbose"] is True
    assert {**plain, "verbose": True} == verbose
    assert verbose["mode"] == "analysis" and verbose["code"] == 0xD1
    assert verbose["name"] == "DRIVER_IRQL_NOT_LESS_OR_EQUAL"
    assert verbose["module"] == "myfault" and verbose["image"] == "myfault.sys"
    ref = verbose["memory_reference"]
    assert ref is not None and ref["access"] in ("read", "write")
    assert ref["address"] == verbose["args"][0]["value"]
    assert verbose["trap_frame"] is not None and verbose["stack"]
    assert f"FAILURE_BUCKET_ID:  {verbose['failure_bucket_id']}" in \
        one(validator, session, "!analyze -v")["lines"]


def test_analyze_show_and_hang_modes(validator, session):
    show = ok(validator, session, "!analyze -show d1")
    assert show["mode"] == "show" and show["code"] == 0xD1
    assert [a["value"] for a in show["args"]] == [0, 0, 0, 0]
    hang = ok(validator, session, "!analyze -hang")
    assert hang == {"mode": "hang", "blocked": None}


def test_other_commands_data_is_not_constrained(validator, session):
    obj = one(validator, session, "r rip")
    obj["data"] = {"anything": ["goes", 1, None]}
    assert errors(validator, obj) == []
    obj["command"] = "dq rsp"
    obj["data"] = "0x1234"
    assert errors(validator, obj) == []


def test_the_banner_object_fits(validator):
    assert errors(validator, {"kind": "banner", "lines": ["a", ""]}) == []
    assert errors(validator, {"kind": "banner", "lines": "a"}) != []


# -- the schema rejects what breaks the rules --------------------------------------------


def _broken(obj: dict, path: list, value=None, delete: bool = False) -> dict:
    out = copy.deepcopy(obj)
    node = out
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


@pytest.fixture()
def thread_obj(validator, session) -> dict:
    return one(validator, session, "!thread")


def test_a_hex_string_address_is_rejected(validator, thread_obj):
    bad = _broken(thread_obj, ["data", "thread", "start_address"], "0x00007ff6027e1a40")
    assert errors(validator, bad)


def test_a_missing_key_is_rejected(validator, thread_obj):
    assert errors(validator, _broken(thread_obj, ["data", "thread", "teb"], delete=True))
    assert errors(validator, _broken(thread_obj, ["data", "process"], delete=True))


def test_an_unknown_key_is_rejected(validator, thread_obj):
    assert errors(validator, _broken(thread_obj, ["data", "thread", "extra"], 1))


def test_irps_as_arrays_are_rejected(validator, thread_obj):
    assert errors(validator, _broken(thread_obj, ["data", "thread", "irps"], [[1, 6, 280, 0, 0]]))


def test_a_negative_or_too_large_address_is_rejected(validator, thread_obj):
    assert errors(validator, _broken(thread_obj, ["data", "thread", "teb"], -1))
    assert errors(validator, _broken(thread_obj, ["data", "thread", "teb"], 1 << 64))


def test_k_frames_must_carry_memory_and_four_args(validator, session):
    obj = one(validator, session, "k")
    assert errors(validator, _broken(obj, ["data", "frames", 0, "memory"], delete=True))
    assert errors(validator, _broken(obj, ["data", "frames", 0, "args"], [0, 0, 0]))
    assert errors(validator, _broken(obj, ["data"], [obj["data"]["frames"]]))
    # the same data under a command that is not k is not checked
    assert not errors(validator, _broken(_broken(obj, ["command"], "dps rsp"), ["data"], [1]))


def test_case_of_the_command_name_does_not_escape_the_schema(validator, session):
    obj = one(validator, session, "K")
    assert obj["command"] == "K" and obj["data"]["frames"]
    assert errors(validator, _broken(obj, ["data", "frames"], "none"))
    lm = one(validator, session, "LM")
    assert errors(validator, _broken(lm, ["data", "modules", 0, "symbols"], "(pdb symbols)"))


def test_process_and_analyze_data_are_checked(validator, session):
    proc = one(validator, session, "!process 0 0")
    assert errors(validator, _broken(proc, ["data", "processes", 0, "session_id"], "none"))
    assert errors(validator, _broken(proc, ["data", "processes", 0, "details"], {}))
    ana = one(validator, session, "!analyze -v")
    assert errors(validator, _broken(ana, ["data", "code"], "0xd1"))
    assert errors(validator, _broken(ana, ["data", "mode"], "show"))
    assert errors(validator, _broken(ana, ["data"], {"failure": "x"}))
    assert errors(validator, _broken(ana, ["prompt"], "kd> "))


# -- library labs: a system-thread crash and live hangs ----------------------------------


def _session(app: App) -> Session:
    return Session(app.target, processor=app.target.stop_processor)


@pytest.fixture(scope="module")
def worker_null() -> App:
    return labkit.stopped("worker-null")


@pytest.fixture(scope="module")
def eresource() -> App:
    return labkit.stopped("eresource-contention")


@pytest.fixture(scope="module")
def irp_hang() -> App:
    return labkit.stopped("myfault-irp-hang")


def test_system_thread_crash_fits(validator, worker_null):
    s = _session(worker_null)
    for line in COMMAND_FORMS:
        if "notmyfault" in line or "myfault" in line:
            continue
        checked(validator, s, line)
    for line in FAILING_FORMS:
        failed(validator, s, line)
    a = ok(validator, s, "!analyze -v")
    assert a["code"] == 0x7E and a["module"] == "stortlm" and a["image"] == "stortlm.sys"
    assert a["context_record"] == a["args"][3]["value"] and a["memory_reference"] is None
    th = ok(validator, s, "!thread")["thread"]
    assert th["pid"] == 4 and th["process_image"] == "System"
    assert th["start_symbol"] == "stortlm!StTmCollectorThread"
    assert f"Win32 Start Address stortlm!StTmCollectorThread (0x{th['start_address']:016x})" \
        in one(validator, s, "!thread")["lines"]


def test_a_set_context_shows_in_k_data(validator, worker_null):
    s = _session(worker_null)
    checked(validator, s, ".cxr poi(nt!KiBugCheckData+0x20)")
    data = ok(validator, s, "kb")
    assert data["set_context"] is True
    assert data["frames"][0]["call_site"].startswith("stortlm!StTmTakeSample+")
    assert ok(validator, s, "kd 2")["set_context"] is True


def test_live_hang_waiting_threads_fit(validator, eresource):
    s = _session(eresource)
    failed(validator, s, "!analyze -v")  # no bug check on a live machine
    hang = ok(validator, s, "!analyze -hang")["blocked"]
    assert hang["kind"] == "resource" and hang["module"] == "cfgstore"
    data = ok(validator, s, f"!thread {hang['blocked_thread']:x}")
    th = data["thread"]
    assert th["state"] == "WAIT" and th["state_code"] == 5
    assert th["wait_reason"] == "WrResource" and th["wait_mode"] == "KernelMode"
    assert th["alertable"] is False and th["processor"] is None
    assert th["wait_objects"] and isinstance(th["wait_objects"][0]["address"], int)
    assert th["stack"]
    for et in all_threads(s):
        ok(validator, s, f"!thread -p {et:x} 1e")
    for line in ("!process 0 7", "k", "kv", "lm", "lm 1m"):
        ok(validator, s, line)


def test_irps_are_objects_with_named_keys(validator, irp_hang):
    s = _session(irp_hang)
    data = ok(validator, s, "!process 0 6 notmyfault64.exe")
    waiting = [t for p in data["processes"] for t in p["threads"] if t["irps"]]
    assert waiting
    irp = waiting[0]["irps"][0]
    assert set(irp) == {"address", "type", "size", "flags", "mdl"}
    assert irp["type"] == 6  # IO_TYPE_IRP
    text = one(validator, s, f"!thread {waiting[0]['address']:x}")["lines"]
    assert f"    {irp['address']:016x}: (0006,{irp['size']:04x}) Flags: {irp['flags']:08x}  " \
           f"Mdl: {irp['mdl']:08x}" in text


# -- the command line ----------------------------------------------------------------------


def test_the_json_command_line_output_fits(validator, monkeypatch):
    """`kdsim --json` with commands on standard input: every line is one object that fits."""
    commands = ["k 2", "!thread", "lm 1m", "!process 0 0 notmyfault64.exe", "!analyze -v",
                "!thread bogus", "r rip", "q"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(c + "\n" for c in commands)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["--json"]) == 0
    objects = [json.loads(line) for line in out.getvalue().splitlines()]
    assert objects[0]["kind"] == "banner"
    assert [o["command"] for o in objects[1:]] == commands
    for obj in objects:
        assert errors(validator, obj) == [], obj.get("command")
    assert objects[2]["data"]["thread"]["start_address"] > 0
