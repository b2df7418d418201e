"""Random command lines never raise out of the session, and never hit an internal error."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.registry import COMMANDS, load_all
from commands.session import Session

load_all()
FIXTURE_OK = [HealthCheck.function_scoped_fixture]  # the fixture is a fresh session each time
# Not q (it ends the session) nor the log commands, which create files named by the noise.
NAMES = sorted(n for n in COMMANDS if n not in ("q", "qq", ".logopen", ".logappend"))
WORDS = ["0", "-1", "@rsp", "rip", "nt", "nt!KeBugCheckEx", "myfault", "L", "L4", "L?",
         "poi(", ")", "0n10", "ffffffff`ffffffff", "-v", "-r", "-r2", "0 0", "7", "_EPROCESS",
         "nt!_KTHREAD", "m", "v", "*", ";", "\"", "$$", "@$proc", "@$thread", "foo"]


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.sampled_from(NAMES), st.lists(st.sampled_from(WORDS), max_size=5),
       st.text(max_size=12))
def test_random_lines_give_kd_output_not_exceptions(app, name, words, noise):
    session = Session(app.target, processor=app.target.stop_processor)
    line = " ".join([name, *words, noise])
    for res in session.execute(line):
        assert not (isinstance(res.data, dict) and res.data.get("internal")), res.lines


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURE_OK)
@given(st.text(max_size=40))
def test_arbitrary_text_never_raises(app, text):
    session = Session(app.target, processor=app.target.stop_processor)
    for res in session.execute(text):
        assert not (isinstance(res.data, dict) and res.data.get("internal")), res.lines
