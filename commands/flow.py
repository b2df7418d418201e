"""Running kd command programs: a command line's statements, control-flow tokens and
`{ }` blocks (grammar: `commands/grammar/flow.lark`).

How a line runs, as in kd:

* Aliases are expanded over the whole line first, and over a block's text each time the
  block is entered (commands/aliases.py); the text is then parsed and run statement by
  statement.  A `.foreach` variable is expanded like an alias while its body is entered.
* `.if/.elsif/.else`, `.while`, `.do`, `.for`, `.break`, `.continue`, `.block`,
  `.foreach`, `j`, and `z` (which repeats the commands before it, back to the start of
  the block or the previous `z`) behave as kd documents them.
* A command that fails inside a block ends the program (kd's rule, which `.catch` exists
  to soften); on the top line the other commands still run.
* A line may run at most MAX_FLOW_STEPS statements: a loop that does not end is stopped
  with a message instead of hanging the session.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer
from lark.exceptions import LarkError, UnexpectedInput, VisitError

from commands.errors import KdError, KdMemoryError, KdSyntaxError
from commands.grammar import load as load_grammar
from commands.lang_state import MAX_FLOW_DEPTH, MAX_FLOW_STEPS
from commands.registry import Result
from commands.target import MemoryAccessError

# ------------------------------------------------------------------------ statements


@dataclass(frozen=True, slots=True)
class Cmd:
    text: str


@dataclass(frozen=True, slots=True)
class If:
    branches: tuple[tuple[str, str], ...]  # (condition, block text)
    orelse: str | None


@dataclass(frozen=True, slots=True)
class While:
    cond: str
    body: str


@dataclass(frozen=True, slots=True)
class Do:
    body: str
    cond: str


@dataclass(frozen=True, slots=True)
class For:
    init: str
    cond: str
    steps: tuple[str, ...]
    body: str


@dataclass(frozen=True, slots=True)
class Foreach:
    options: str  # `/pS 2 /ps 1 /f`, as typed
    var: str
    source: str  # the commands' text, or the quoted string / file name (unquoted)
    quoted: bool  # the source is a string (or a file with /f), not commands
    body: str


@dataclass(frozen=True, slots=True)
class Block:
    body: str


@dataclass(frozen=True, slots=True)
class Break:
    pass


@dataclass(frozen=True, slots=True)
class Continue:
    pass


@dataclass(frozen=True, slots=True)
class J:
    text: str  # `expr cmd1 ; cmd2` as typed


@dataclass(frozen=True, slots=True)
class Z:
    cond: str


Statement = Cmd | If | While | Do | For | Foreach | Block | Break | Continue | J | Z


class _ToProgram(Transformer):
    """Parse tree -> statements.  Block bodies and conditions are slices of the source
    text (between their delimiters), so that a block can be expanded and parsed again
    when it is entered."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def _between(self, left: Token, right: Token) -> str:
        return self.text[left.end_pos:right.start_pos]

    def start(self, children):
        (seq,) = children
        return seq

    def seq(self, children):
        return tuple(c for c in children if c is not None)

    def command(self, children):
        text = "".join(str(c) for c in children).strip()
        return Cmd(text) if text else None

    def comment(self, children):
        return None

    def rest_stmt(self, children):
        return Cmd(str(children[0]).strip())

    def block(self, children):
        lbrace, _seq, rbrace = children
        return self._between(lbrace, rbrace)

    def cond(self, children):
        lpar, _text, rpar = children
        return self._between(lpar, rpar)

    def ptext(self, children):
        return None

    def ftext(self, children):
        return None

    def jtext(self, children):
        return children[-1].end_pos if children else None

    def if_stmt(self, children):
        branches: list[tuple[str, str]] = []
        orelse = None
        items = children[1:]
        branches.append((items[0], items[1]))
        i = 2
        while i < len(items):
            tok = items[i]
            if tok.type == "ELSIF":
                branches.append((items[i + 1], items[i + 2]))
                i += 3
            else:
                orelse = items[i + 1]
                i += 2
        return If(tuple(branches), orelse)

    def while_stmt(self, children):
        _kw, cond, body = children
        return While(cond, body)

    def do_stmt(self, children):
        _kw, body, lpar, _text, rpar = children
        return Do(body, self._between(lpar, rpar))

    def for_stmt(self, children):
        marks = [c for c in children if isinstance(c, Token) and c.type in
                 ("LPAR", "FSEMI", "RPAR")]
        # Empty parts are dropped: a head split over lines in a `$$><` script holds `;;`
        # where a newline followed a semicolon, and kd reads it all the same.
        parts = [self._between(a, b).strip() for a, b in zip(marks, marks[1:], strict=False)]
        parts = [p for p in parts if p]
        if len(parts) < 2:
            raise KdSyntaxError(self._between(marks[0], marks[-1]), marks[0].end_pos)
        return For(parts[0], parts[1], tuple(parts[2:]), children[-1])

    def foreach_stmt(self, children):
        options = ""
        items = list(children[1:])
        if isinstance(items[0], Token) and items[0].type == "FOPTS":
            options = str(items.pop(0)).strip()
        _lpar, var, source, _rpar, body = items
        if isinstance(source, Token):  # FSTRING
            text = str(source).strip()[1:-1].replace('\\"', '"')
            return Foreach(options, str(var).strip(), text, True, body)
        return Foreach(options, str(var).strip(), source, False, body)

    def block_stmt(self, children):
        return Block(children[1])

    def break_stmt(self, children):
        return Break()

    def continue_stmt(self, children):
        return Continue()

    def j_stmt(self, children):
        kw, end = children
        return J(self.text[kw.end_pos:end] if end is not None else "")

    def z_stmt(self, children):
        _kw, lpar, _text, rpar = children
        return Z(self._between(lpar, rpar))


@cache
def _parser() -> Lark:
    return Lark(load_grammar("flow"), parser="lalr", lexer="contextual",
                maybe_placeholders=False)


@lru_cache(maxsize=512)
def parse_program(text: str) -> tuple[Statement, ...]:
    """The statements of a command line or block.  Raises kd's syntax error at the
    place the text stops making sense (an unclosed brace, a condition missing)."""
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        pos = getattr(exc, "pos_in_stream", None) or 0
        raise KdSyntaxError(text[pos:] or text, pos) from None
    except LarkError:  # pragma: no cover - defensive
        raise KdSyntaxError(text, 0) from None
    try:
        return _ToProgram(text).transform(tree)
    except VisitError as exc:  # a statement the grammar accepts but kd does not
        if isinstance(exc.orig_exc, KdError):
            raise exc.orig_exc from None
        raise


# ------------------------------------------------------------------------- running


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class _Quit(Exception):
    pass


class _Abort(Exception):
    """The program ends: a command failed inside a block, or the step budget ran out."""


def run_line(s, line: str) -> list[Result]:
    """Run one input line; never raises.  The session's `execute`."""
    from commands.aliases import expand

    out: list[Result] = []
    top = s.flow.depth == 0
    if top:
        s.flow.steps = 0
        s.flow.interrupted = False
    log, prompt = s.log, s.prompt
    s.flow.depth += 1
    try:
        _run_text(s, expand(s, line), out, top_line=top)
    except (_Quit, _Abort):
        pass
    except (_Break, _Continue):
        pass  # `.break` outside a loop ends the program, as in kd
    finally:
        s.flow.depth -= 1
    if top:
        _log_line(s, log, prompt + line, out)
    return out


def _log_line(s, log, echo: str, out: list[Result]) -> None:
    """Write a line run at the prompt, and its output, to the log that was open when it
    started (a log closed or replaced by the line is closed now)."""
    if log is not None:
        try:
            log.write_lines([echo] + [text for res in out for text in res.lines])
        except (OSError, ValueError):
            pass  # a log that cannot be written must not stop the session
    while s.flow.closing:
        s.flow.closing.pop().close()


def run_nested(s, text: str, extra: dict[str, str] | None = None,
               out: list[Result] | None = None) -> list[Result]:
    """Run command text from inside a command (`as /c`, a `.foreach` source, a script
    line), with its own aliases expanded; the results are returned (and appended to
    `out` as they come), not shown."""
    from commands.aliases import expand

    out = [] if out is None else out
    if s.flow.depth >= MAX_FLOW_DEPTH:
        out.append(_failure(s, KdError("kdsim: command programs nested too deeply")))
        return out
    s.flow.depth += 1
    try:
        _run_text(s, expand(s, text, extra), out, top_line=False)
    except _Abort:
        pass
    finally:
        s.flow.depth -= 1
    return out


def _run_text(s, text: str, out: list[Result], top_line: bool) -> None:
    try:
        program = parse_program(text)
    except KdError as exc:
        out.append(_failure(s, exc))
        raise _Abort from None
    _run_seq(s, program, out, top_line)


def _run_block(s, body: str, out: list[Result], extra: dict[str, str] | None = None) -> None:
    """Enter a block: expand its aliases (and `extra`, a .foreach variable) and run it."""
    from commands.aliases import expand

    if s.flow.depth >= MAX_FLOW_DEPTH:
        out.append(_failure(s, KdError("kdsim: command programs nested too deeply")))
        raise _Abort
    s.flow.depth += 1
    try:
        _run_text(s, expand(s, body, extra), out, top_line=False)
    finally:
        s.flow.depth -= 1


def _tick(s, out: list[Result]) -> None:
    if s.flow.interrupted:
        s.flow.interrupted = False
        out.append(Result([], {"error": "interrupted"}))
        raise _Abort
    s.flow.steps += 1
    if s.flow.steps > MAX_FLOW_STEPS:
        line = f"kdsim: command program stopped after {MAX_FLOW_STEPS} steps"
        out.append(Result([line], {"error": line, "budget": MAX_FLOW_STEPS}))
        raise _Abort


def _run_seq(s, program: tuple[Statement, ...], out: list[Result], top_line: bool) -> None:
    segment = 0  # where a `z` jumps back to
    i = 0
    while i < len(program):
        st = program[i]
        _tick(s, out)
        if isinstance(st, Z):
            if _condition(s, st.cond, out):
                i = segment
            else:
                i = segment = i + 1
            continue
        _run_statement(s, st, out, top_line)
        i += 1


def _run_statement(s, st: Statement, out: list[Result], top_line: bool) -> None:
    match st:
        case Cmd():
            _command(s, st.text, out, top_line)
        case If():
            for cond, body in st.branches:
                if _condition(s, cond, out):
                    _run_block(s, body, out)
                    return
            if st.orelse is not None:
                _run_block(s, st.orelse, out)
        case While():
            while _condition(s, st.cond, out):
                if not _loop_body(s, st.body, out):
                    break
        case Do():
            while True:
                if not _loop_body(s, st.body, out) or not _condition(s, st.cond, out):
                    break
        case For():
            if st.init:
                _command(s, st.init, out, False)
            while not st.cond or _condition(s, st.cond, out):
                if not _loop_body(s, st.body, out):
                    break
                for step in st.steps:
                    if step:
                        _command(s, step, out, False)
        case Block():
            _run_block(s, st.body, out)
        case Break():
            raise _Break
        case Continue():
            raise _Continue
        case Foreach():
            _foreach(s, st, out)
        case J():
            _j(s, st.text, out)


def _loop_body(s, body: str, out: list[Result], extra: dict[str, str] | None = None) -> bool:
    """One pass through a loop's block; False after `.break`."""
    _tick(s, out)
    try:
        _run_block(s, body, out, extra)
    except _Break:
        return False
    except _Continue:
        pass
    return True


# Go commands that, with no arguments in a breakpoint's command string, resume the target.
RESUMING = {"g": "g", "gh": "g", "gn": "g", "gc": "gc"}


def plain_go(text: str) -> str | None:
    """"g" or "gc" when `text` is a go with no arguments (how a breakpoint's commands
    resume the target), else None."""
    from commands.cmdline import split_name
    from commands.registry import letter_commands

    try:
        ct = split_name(text, letter_commands())
    except KdError:
        return None
    if ct.args.strip():
        return None
    return RESUMING.get(ct.name.lower())


def run_breakpoint_commands(s, command: str) -> tuple[list[Result], str | None]:
    """Run a breakpoint's command string as a command program (blocks, `.if`, `j`,
    aliases); a plain go anywhere in it ends it.  Returns the results and how to
    resume ("g", "gc" or None: stay stopped)."""
    saved = (s.flow.resume_on_go, s.flow.resume)
    s.flow.resume_on_go, s.flow.resume = True, None
    out: list[Result] = []
    try:
        run_nested(s, command, out=out)
    except _Quit:
        pass
    finally:
        resume = s.flow.resume
        s.flow.resume_on_go, s.flow.resume = saved
    if any(res.data == "quit" for res in out):
        return out, None
    return out, resume


def _command(s, text: str, out: list[Result], top_line: bool) -> None:
    if s.flow.resume_on_go:
        kind = plain_go(text)
        if kind is not None:
            s.flow.resume = kind
            raise _Quit
    res = s.execute_one(text)
    out.append(res)
    if res.data == "quit":
        raise _Quit
    if not top_line and isinstance(res.data, dict) and "error" in res.data:
        raise _Abort


def _condition(s, text: str, out: list[Result]) -> bool:
    try:
        return s.evaluate(text.strip()) != 0
    except KdError as exc:
        out.append(_failure(s, exc))
        raise _Abort from None
    except MemoryAccessError as exc:
        out.append(_failure(s, KdMemoryError(f"{exc.address:x}")))
        raise _Abort from None


def _failure(s, exc: KdError) -> Result:
    return s._error(exc, str(exc))


# ------------------------------------------------------------------------- .foreach


def _foreach(s, st: Foreach, out: list[Result]) -> None:
    try:
        initial, every, kind = _foreach_options(s, st.options)
    except KdError as exc:
        out.append(_failure(s, exc))
        raise _Abort from None
    if kind == "f":
        try:
            text = Path(st.source).read_text(encoding="utf-8", errors="replace")
        except OSError:
            out.append(_failure(s, KdError(f"Unable to open file '{st.source}'")))
            raise _Abort from None
    elif kind == "s" or st.quoted:
        text = st.source
    else:
        lines: list[str] = []
        for res in run_nested(s, st.source):
            lines += res.lines
        text = "\n".join(lines)
    tokens = text.split()[initial:]
    i = 0
    while i < len(tokens):
        if not _loop_body(s, st.body, out, {st.var: tokens[i]}):
            break
        i += 1 + every


def _foreach_options(s, options: str) -> tuple[int, int, str]:
    """(`/pS` initial skip, `/ps` skip after each token, `s`/`f`/"" source kind)."""
    words = options.split()
    initial = every = 0
    kind = ""
    i = 0
    while i < len(words):
        w = words[i]
        if w in ("/pS", "/ps") and i + 1 < len(words):
            value = s.evaluate(words[i + 1])
            if w == "/pS":
                initial = value
            else:
                every = value
            i += 2
        elif w in ("/s", "/f"):
            kind = w[1]
            i += 1
        else:
            raise KdSyntaxError(" ".join(words[i:]), 0)
    return initial, every, kind


# -------------------------------------------------------------------------------- j


def _j(s, text: str, out: list[Result]) -> None:
    """`j expr cmd1 ; cmd2`: each command string may be in single (or double) quotes and
    hold several commands; text after cmd2's `;` is ignored, as in kd."""
    try:
        value, rest = s.take(text)
    except KdError as exc:
        out.append(_failure(s, exc))
        raise _Abort from None
    first, rest = _j_command(rest)
    rest = rest.lstrip()
    second = ""
    if rest.startswith(";"):
        second, _ = _j_command(rest[1:])
    chosen = first if value else second
    if chosen.strip():
        _run_block(s, chosen, out)


def _j_command(text: str) -> tuple[str, str]:
    body = text.lstrip()
    if body[:1] in ("'", '"'):
        quote = body[0]
        end = body.find(quote, 1)
        if end < 0:
            return body[1:], ""
        return body[1:end], body[end + 1:]
    end = body.find(";")
    if end < 0:
        return body, ""
    return body[:end], body[end:]


def split_arguments(text: str) -> list[str]:
    """A script's arguments: blank-separated, double quotes around one with blanks."""
    try:
        return shlex.split(text, posix=True)
    except ValueError:
        return text.split()
