"""Tab completion at the kd prompt, computed from what the session knows.

Every candidate comes from a live source, never from a list written here: command names
and options from the command registry (a command's options are the `/x` and `-x` tokens
of its registered syntax), flow keywords from the command-program grammar, symbols from
the symbol engine's loaded modules, types and fields from the target's type layouts,
registers from the current processor, pseudo-registers from `commands.pseudo_regs`, and
file names from the file system (script and log commands only).

The word before the cursor is completed according to where it stands:

* at the start of a command (line start, after `;`, `{` or `}`): command names;
* `-x` or `/x` after a command: that command's options;
* `$...` / `@$...`: pseudo-registers; `@r...`: registers;
* `module!part`: the module's functions and data (for `dt`, types; `dx` and `??` both);
* a bare word: `module!` for matching module names; after `dt`, type names, then the
  type's fields (`ApcState.Pro` follows embedded structures);
* the file argument of `$$<`, `$$><`, `$$>a<`, `.logopen`, `.logappend`: paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import cache

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from commands import registry
from commands.cmdline import split_name
from commands.grammar import load as load_grammar
from commands.pseudo_regs import AUTOMATIC, TEMPS
from commands.registry import CommandSpec
from commands.session import Session, sub_registers

# Characters of a completable word: symbols (`nt!KeBugCheckEx`), registers (`@rip`),
# pseudo-registers (`$proc`) and dotted field paths (`ApcState.Process`).
_WORD = re.compile(r"[\w!$@.]*$")
# An option in a syntax string: `-v`, `/p`, `-a[N]` (the letters only), `/ma|/mu`; it
# stands after a blank, `[` or `|` (not inside `physical-address`); `-1` is a number.
_OPTION = re.compile(r"(?:(?<=\s)|(?<=[\[|]))(-[A-Za-z]\w*|/\w+)")
# An option followed by its value in a syntax string: `-s Size`, `/p eprocess`.
_OPTION_VALUE = re.compile(r"([/-][A-Za-z]\w*) [A-Za-z]")
# A command whose syntax names a `file` argument takes a path there.
_FILE_ARG = re.compile(r"(?<![\w.])file\b")
# The dotted flow keywords of the command-program grammar (`.if`, `.foreach`, ...).
_FLOW_KEYWORD = re.compile(r"\\\.([a-z]+)\(\?!")

_KIND_META = {"extension": "extension", "meta": "meta-command", "standard": "command"}
_TYPE_COMMANDS = ("dt",)  # the type is the first argument
_CAST_COMMANDS = ("dx", "??")  # types may appear in casts, beside symbols


def natural_key(text: str) -> tuple[list[object], str]:
    """Sort key: case-insensitive, numbers by value (`r8` < `r10`, `$t2` < `$t10`), the
    text itself breaking ties, so the order never depends on anything but the names."""
    parts = re.split(r"(\d+)", text.lower())
    return [int(p) if i % 2 else p for i, p in enumerate(parts)], text


# ------------------------------------------------------------------ registry-derived


@cache
def flow_keywords() -> tuple[str, ...]:
    return tuple(f".{k}" for k in dict.fromkeys(_FLOW_KEYWORD.findall(load_grammar("flow"))))


def command_names() -> list[tuple[str, str]]:
    """(name as registered, kind meta) for every command, and the flow keywords."""
    out = [(n, _KIND_META[spec.kind]) for spec in registry.ORDER for n in spec.names]
    known = {n.lower() for n, _ in out}
    out += [(k, "flow") for k in flow_keywords() if k not in known]
    return out


def options_of(spec: CommandSpec) -> list[str]:
    """The `-x` / `/x` options a command's syntax lists, once each."""
    return list(dict.fromkeys(_OPTION.findall(spec.syntax)))


def options_with_value(spec: CommandSpec) -> set[str]:
    return {m.lower() for m in _OPTION_VALUE.findall(spec.syntax)}


def takes_file(spec: CommandSpec) -> bool:
    return bool(_FILE_ARG.search(spec.syntax))


def _glues_file(name: str) -> bool:
    """A letter command taking a file may have it glued on (`$$<script.txt`); a meta or
    extension command needs a blank after its name."""
    spec = registry.COMMANDS.get(name.lower())
    return spec is not None and spec.kind == "standard" and takes_file(spec)


# ------------------------------------------------------------------------ line analysis


def command_start(text: str) -> int | None:
    """Where the command holding the end of `text` starts: after the last `;`, `{` or
    `}` outside double quotes; None when the end is inside a quoted string."""
    start, quoted, escaped = 0, False, False
    for i, ch in enumerate(text):
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch in ";{}":
            start = i + 1
    return None if quoted else start


def _matching(candidates: Iterable[tuple[str, str]], word: str,
              key: str | None = None) -> list[tuple[str, str]]:
    """(text, meta) pairs whose text starts with `word` (case-insensitive), sorted."""
    low = word.lower()
    found = {t: m for t, m in candidates if t.lower().startswith(low)}
    return [(t, found[t]) for t in sorted(found, key=natural_key)]


class KdCompleter(Completer):
    """Completes the word before the cursor at the kd prompt of `session`."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._paths = PathCompleter(expanduser=True)
        # Symbols, per symbol engine: the session replaces its engine when the target
        # stops (drivers may have loaded), which is when these lists go stale.
        self._engine: object | None = None
        self._modules: list[str] = []
        self._symbols: dict[str, list[tuple[str, str]]] = {}

    def get_completions(self, document: Document,
                        complete_event: CompleteEvent) -> Iterator[Completion]:
        try:
            found = list(self._complete(document.text_before_cursor, complete_event))
        except Exception:  # noqa: BLE001 - a broken target must not break the prompt
            return
        yield from found

    # -- contexts -----------------------------------------------------------------

    def _complete(self, text: str, event: CompleteEvent) -> Iterator[Completion]:
        start = command_start(text)
        if start is None:
            return
        lead = text[start:].lstrip()
        if (lead.startswith("$$") and lead[2:3] not in ("", "<", ">")) or \
                lead.startswith("*"):
            return  # a comment
        glued = not re.search(r"\s", lead)
        if glued:
            names = _matching(command_names(), lead)
            if names and not (len(names) == 1 and _glues_file(lead)):
                yield from self._each(names, lead)
                return
        try:
            ct = split_name(lead, registry.letter_commands())
        except Exception:  # noqa: BLE001 - no command by that name: no context
            return
        if glued and not ct.args and not _glues_file(ct.name):
            return  # nothing to glue onto the name (`!analyze-v` is no command)
        # The argument text as typed, trailing blanks included.
        args = lead[len(ct.name):].lstrip()
        yield from self._arguments(ct.name.lower(), args, event)

    def _arguments(self, name: str, args: str, event: CompleteEvent) -> Iterator[Completion]:
        spec = registry.COMMANDS.get(name)
        tokens = args.split()
        token = "" if not args or args[-1].isspace() else tokens[-1]
        before = tokens[:-1] if token else tokens
        if spec is not None and takes_file(spec):
            yield from self._file_argument(spec, token, before, event)
            return
        if token.startswith(("-", "/")) and spec is not None:
            yield from self._each(_matching(((o, "option") for o in options_of(spec)),
                                            token), token)
            return
        word = _WORD.search(args).group()  # type: ignore[union-attr] - always matches
        if not word and args and not args[-1].isspace() and args[-1] != "(":
            return  # right after an operator or a wildcard: nothing to offer
        if word.startswith(("$", "@$")):
            yield from self._each(_matching(self._pseudo(word[: word.index("$")]), word), word)
        elif word.startswith("@"):
            yield from self._each(_matching(self._registers("@"), word), word)
        elif "!" in word:
            yield from self._qualified(name, word, before)
        else:
            if not word and spec is not None:
                yield from self._each(_matching(((o, "option") for o in options_of(spec)),
                                                ""), "")
            yield from self._bare(name, spec, word, before)

    def _file_argument(self, spec: CommandSpec, token: str, before: list[str],
                       event: CompleteEvent) -> Iterator[Completion]:
        """Options, and the file name (the first argument that is no option)."""
        if token.startswith(("-", "/")):
            yield from self._each(_matching(((o, "option") for o in options_of(spec)),
                                            token), token)
        options = {o.lower() for o in options_of(spec)}
        if any(b.lower() not in options for b in before):
            return  # past the file name (`$$>a< file arg1 ...`); `/tmp` is no option
        if not token and not before:
            yield from self._each(_matching(((o, "option") for o in options_of(spec)),
                                            ""), "")
        yield from self._paths.get_completions(Document(token), event)

    def _qualified(self, name: str, word: str, before: list[str]) -> Iterator[Completion]:
        module, part = word.split("!", 1)
        if not module:
            return
        found: list[tuple[str, str]] = []
        if name in _TYPE_COMMANDS and self._type_position(name, before):
            found += [(f"{module}!{t}", m) for t, m in self._types(part)]
        elif name in _CAST_COMMANDS:
            found += [(f"{module}!{t}", m) for t, m in self._types(part)]
            found += self._module_symbols(module, part)
        else:
            found += self._module_symbols(module, part)
        yield from self._each(_matching(found, word), word)

    def _bare(self, name: str, spec: CommandSpec | None, word: str,
              before: list[str]) -> Iterator[Completion]:
        found: list[tuple[str, str]] = []
        if name in _TYPE_COMMANDS:
            type_name = self._typed_name(spec, before)
            if type_name is None:
                found += self._types(word)
            else:
                found += self._fields(type_name, word)
                yield from self._each(_matching(found, word), word)
                return
        elif name in _CAST_COMMANDS:
            found += self._types(word)
        elif name == "r":
            found += self._registers("")
        found += [(f"{m}!", "module") for m in self._module_names()]
        yield from self._each(_matching(found, word), word)

    # -- dt's argument positions ---------------------------------------------------

    def _typed_name(self, spec: CommandSpec | None, before: list[str]) -> str | None:
        """The type `dt` was given before the word (its first argument that is no
        option nor an option's value), or None when the word is in that place."""
        valued = options_with_value(spec) if spec is not None else set()
        skip = False
        for tok in before:
            if skip:
                skip = False
            elif tok.startswith("-"):
                skip = tok.lower() in valued
            else:
                return tok
        return None

    def _type_position(self, name: str, before: list[str]) -> bool:
        return self._typed_name(registry.COMMANDS.get(name), before) is None

    # -- sources -------------------------------------------------------------------

    def _each(self, found: Iterable[tuple[str, str]], word: str) -> Iterator[Completion]:
        for text, meta in found:
            yield Completion(text, start_position=-len(word), display_meta=meta)

    def _pseudo(self, at: str) -> list[tuple[str, str]]:
        names = [(f"{at}{n}", "pseudo-register") for n in AUTOMATIC]
        names += [(f"{at}{n}", "pseudo-register") for n in sorted(TEMPS, key=natural_key)]
        names += [(f"{at}$u{i}", "alias") for i in range(len(self.session.fixed_aliases))]
        return names

    def _registers(self, at: str) -> list[tuple[str, str]]:
        s = self.session
        return [(f"{at}{r}", "register") for r in sub_registers(s.target.registers(s.processor))]

    def _types(self, part: str) -> list[tuple[str, str]]:
        low = part.lower()
        return [(t, "type") for t in self.session.target.types.names()
                if t.lower().startswith(low)]

    def _fields(self, type_name: str, word: str) -> list[tuple[str, str]]:
        """The fields of `type_name` (or of the embedded structure a dotted path leads
        to), with their types; members of anonymous unions count as the type's own."""
        types = self.session.target.types
        head, dot, _part = word.rpartition(".")
        if dot:
            _offset, f = types.resolve(type_name, head)
            typedef = types.get(f.type) if f.kind in ("struct", "union") else None
        else:
            typedef = types.get(type_name)
        if typedef is None:
            return []
        prefix = f"{head}." if dot else ""
        out: dict[str, str] = {}
        pending = list(typedef.fields)
        while pending:
            f = pending.pop(0)
            if f.anonymous:
                pending[:0] = list(f.members)
            else:
                out.setdefault(f"{prefix}{f.name}", f.type)
        return list(out.items())

    def _engine_state(self) -> None:
        engine = self.session.symbols
        if engine is not self._engine:
            self._engine = engine
            self._modules = list(dict.fromkeys(m.name for m in engine.modules()))
            self._symbols = {}

    def _module_names(self) -> list[str]:
        self._engine_state()
        return self._modules

    def _module_symbols(self, module: str, part: str) -> list[tuple[str, str]]:
        self._engine_state()
        key = module.lower()
        if key not in self._symbols:
            m = self.session.symbols.module_named(module)
            rows: list[tuple[str, str]] = []
            if m is not None and m.symbols is not None:
                rows += [(f.name, "function") for f in m.symbols.functions]
                rows += [(d.name, "data") for d in m.symbols.data]
            self._symbols[key] = rows
        low = part.lower()
        return [(f"{module}!{n}", meta) for n, meta in self._symbols[key]
                if n.lower().startswith(low)]
