"""Pygments lexers for kd: `KdLexer` for command lines, `KdOutputLexer` for what kd prints.

* `KdLexer` reads a command line as kd does (commands/flow.py, commands/cmdline.py):
  `;`-separated commands, `{ }` blocks, the control-flow tokens (`.if`, `.foreach`, `j`,
  `z`), `$$` and `*` comments, script commands (`$$< file`).  A command's name is looked
  up in the command registry (longest registered prefix for letter commands, as kd reads
  `kb5` or `dq@rsp`), so a new command is highlighted without editing this file; a name
  the registry does not know is an Error token, so a typo shows at once.
* `KdOutputLexer` reads debugger output line by line: the prompt (the rest of the line
  is a command, lexed with KdLexer), addresses, `module!symbol+0xNN`, bug check names,
  `dt` field lines, analysis labels, banners of stars and error lines.

Both lexers give back every character of their input (Pygments' invariant), whatever
the input.  The registry and the bug check table are loaded on first use only, so that
importing this module (as Pygments does for every plugin lexer) stays cheap.  The module
uses only absolute imports, so `pygments.lexers.load_lexer_from_file` can load it too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pygments.lexer import ExtendedRegexLexer, LexerContext, RegexLexer, bygroups, default, using
from pygments.token import (
    Comment,
    Error,
    Generic,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
    _TokenType,
)

__all__ = ["KdLexer", "KdOutputLexer", "command_names"]

# ------------------------------------------------------------------ lazily loaded tables

_registry_state: dict[str, object] = {}


def command_names() -> tuple[frozenset[str], tuple[str, ...]]:
    """(every registered command name, the letter-command names longest first), lower
    case.  The registry is loaded once; the tables are rebuilt when its size changes (a
    command registered later is highlighted too)."""
    try:
        from commands import registry
    except ImportError:  # the lexer alone, without the debugger: no name is known
        return frozenset(), ()
    if not _registry_state.get("loaded"):
        registry.load_all()
        _registry_state["loaded"] = True
    if _registry_state.get("size") != len(registry.COMMANDS):
        names = frozenset(registry.COMMANDS)
        letters = sorted(registry.letter_commands(), key=lambda n: (-len(n), n))
        _registry_state["tables"] = (names, tuple(letters))
        _registry_state["size"] = len(registry.COMMANDS)
    return _registry_state["tables"]  # type: ignore[return-value]


_bugcheck_state: dict[str, frozenset[str]] = {}


def bugcheck_names() -> frozenset[str]:
    """The bug check names of commands/data/bugcheck-codes.tsv (read once)."""
    if "names" not in _bugcheck_state:
        names: set[str] = set()
        try:
            from importlib import resources

            text = (resources.files("commands") / "data" / "bugcheck-codes.tsv").read_text()
        except (ImportError, OSError, ValueError):
            text = ""
        for row in text.splitlines()[1:]:
            cells = row.split("\t")
            if len(cells) > 1:
                names.add(cells[1].strip())
        _bugcheck_state["names"] = frozenset(names)
    return _bugcheck_state["names"]


# ------------------------------------------------------------------------ shared pieces

# x64 register names a bare word may be (kd looks these up as registers first).
_REGISTERS = (
    "rax rbx rcx rdx rsi rdi rbp rsp rip r8 r9 r10 r11 r12 r13 r14 r15 "
    "eax ebx ecx edx esi edi ebp esp eip r8d r9d r10d r11d r12d r13d r14d r15d "
    "ax bx cx dx si di bp sp ip r8w r9w r10w r11w r12w r13w r14w r15w "
    "al bl cl dl ah bh ch dh sil dil bpl spl r8b r9b r10b r11b r12b r13b r14b r15b "
    "cs ds es fs gs ss efl rflags eflags iopl cr0 cr2 cr3 cr4 cr8 "
    "dr0 dr1 dr2 dr3 dr6 dr7 gdtr gdtl idtr idtl tr ldtr mxcsr"
).split()
_REGISTER_RE = "(?i:" + "|".join(sorted(_REGISTERS, key=lambda r: (-len(r), r))) + r")(?![\w$])"

# MASM operator words (commands/expr.py): unary and binary.
_OPERATOR_WORDS = r"(?i:poi|and|or|xor|not|mod|hi|low|by|wo|dwo|qwo)(?![\w$])"

# A symbol after `module!`; C++ names keep their `::` parts.
_SYMBOL = r"[A-Za-z_?$@][\w$@?]*(?:::~?[\w$@?]+)*"
_MODULE_SYMBOL = r"([A-Za-z_][\w]*)(!)(" + _SYMBOL + ")"

_TYPE_NAME = re.compile(r"_[A-Z]")  # `_EPROCESS`, `_KTHREAD`: a structure type


def _symbol_token(name: str) -> _TokenType:
    return Name.Class if _TYPE_NAME.match(name) else Name.Function


def _module_symbol(lexer, match, ctx=None) -> Iterator[tuple[int, _TokenType, str]]:
    """`module!symbol`: the module, the `!`, the symbol (a type name is Name.Class)."""
    yield match.start(1), Name.Namespace, match.group(1)
    yield match.start(2), Punctuation, match.group(2)
    yield match.start(3), _symbol_token(match.group(3)), match.group(3)
    if ctx is not None:
        ctx.pos = match.end()


# ----------------------------------------------------------------------------- KdLexer


def _extension(lexer, match, ctx: LexerContext) -> Iterator[tuple[int, _TokenType, str]]:
    """`!name`: a registered extension command, else an unknown command."""
    names, _ = command_names()
    text = match.group()
    yield match.start(), Name.Function.Magic if text.lower() in names else Error, text
    ctx.pos = match.end()


def _meta(lexer, match, ctx: LexerContext) -> Iterator[tuple[int, _TokenType, str]]:
    """`.name` (and `.sympath+`, whose name ends with `+`): a meta-command."""
    names, _ = command_names()
    text = match.group()
    if text.endswith("+") and text.lower() not in names:
        text = text[:-1]  # `.echo+1`: the `+` belongs to the arguments
    yield match.start(), Name.Builtin if text.lower() in names else Error, text
    ctx.pos = match.start() + len(text)


def _letter_command(lexer, match, ctx: LexerContext) -> Iterator[tuple[int, _TokenType, str]]:
    """A standard command: the longest registered name the text starts with, compared
    case-insensitively (`kb5` is `kb` then `5`); no such name is an unknown command."""
    _, letters = command_names()
    text = match.group()
    low = text.lower()
    for name in letters:
        if low.startswith(name):
            yield match.start(), Keyword, text[: len(name)]
            ctx.pos = match.start() + len(name)
            return
    yield match.start(), Error, text
    ctx.pos = match.end()


# The tokens of expressions and arguments, shared by a command's arguments and the
# parenthesised conditions of control-flow tokens.
_EXPRESSION = [
    (r"[ \t\r\f\v]+", Whitespace),
    (r'"(?:\\.|[^"\\])*"?', String.Double),
    (r"'[^'\n]*'?", String.Single),
    (r"\$\{[^}\n]*\}?", String.Interpol),
    # Options follow a blank: `/f`, `-v`, `-r1`, `/?` (a `-` in `@rsp-8` is a minus).
    (r"(?<![^\s(])[/-][A-Za-z?][A-Za-z0-9?]*", Name.Attribute),
    # A range's length: `L20`, `L?20`, `l 4`, `L@$t0`.
    (
        r"(?<![^\s])[Ll]\??(?=\s*-?(?:0[xXnNyYtT])?[0-9a-fA-F`]+(?![\w$])|\s*[@$(])",
        Name.Attribute,
    ),
    (r"(?i:\$p(?:by|wo|dwo|qwo|poi))(?![\w$])", Operator.Word),
    (r"@\$?[\w]*", Name.Variable),
    (r"\$[A-Za-z_.][\w]*", Name.Variable),
    (r"!=", Operator),
    (_MODULE_SYMBOL, _module_symbol),
    ("(!)(" + _SYMBOL + ")", bygroups(Punctuation, Name.Function)),
    (r"[0-9a-fA-F]+(?:`[0-9a-fA-F]*)+(?![\w$])", Number.Hex),
    (r"0[xX][0-9a-fA-F`]*(?![\w$])", Number.Hex),
    (r"0[nN][0-9]*(?![\w$])", Number.Integer),
    (r"0[yY][01]*(?![\w$])", Number.Bin),
    (r"0[tT][0-7]*(?![\w$])", Number.Oct),
    (_REGISTER_RE, Name.Variable),
    (r"[0-9a-fA-F]+[hH]?(?![\w$])", Number.Hex),  # a word that is a number is one
    (r"[0-9][\w]*", Number),  # `12z`: kd calls it a syntax error; still a number here
    (_OPERATOR_WORDS, Operator.Word),
    (r"_[A-Z][\w]*", Name.Class),
    (r"\.(?![\w])", Name.Variable),  # `.`: the current instruction pointer
    (r"\.[A-Za-z_][\w]*\+?", Name.Builtin),  # a meta-command named as an argument
    (r"[A-Za-z_](?:[\w.]*\w)?", Name),
    (r">>>|<<|>>|==|<=|>=|[-+*/%<>=&|^~!?\\]", Operator),
    (r"[,:\[\]`]", Punctuation),
    (r".", Text),
]


class KdLexer(ExtendedRegexLexer):
    """A kd command line (several commands, blocks, control flow, comments)."""

    name = "kd"
    aliases = ["kd", "windbg"]
    filenames = ["*.wds"]
    mimetypes = ["text/x-kd"]

    flags = re.MULTILINE

    tokens = {
        # Where a command starts (the line's start, after `;`, `{` or `}`).
        "root": [
            (r"\s+", Whitespace),
            (r";", Punctuation),
            (r"\{", Punctuation, "#push"),
            (r"\}", Punctuation, "#pop"),
            (r"\(", Punctuation, "paren"),  # `.do { } (cond)`
            (r"\)", Punctuation),
            (r"\*[^\n]*", Comment.Single),  # the rest of the line
            # Script files: `$$<`, `$$><`, `$$>a<` take a name up to `;`; `$<` and
            # `$><` take the rest of the line.
            (r"\$\$>a<|\$\$><|\$\$<", Keyword, "script"),
            (r"\$><|\$<", Keyword, "restline"),
            (r"\$\$[^;}\n]*", Comment.Single),  # up to the next `;`
            (
                r"(?i:\.(?:if|elsif|else|while|do|foreach|for|block|break|continue))"
                r"(?![A-Za-z0-9_])",
                Keyword.Reserved,
                "args",
            ),
            (r"(?i:j)(?![A-Za-z_])", Keyword.Reserved, "args"),
            (r"(?i:z)(?=[ \t]*\()", Keyword.Reserved, "args"),
            # `as Name text` takes the rest of the line (unless a switch says otherwise).
            (r"as(?=[ \t])(?![ \t]+/(?:e|ma|mu|msa|msu|x)[ \t])", Keyword, "aliasline"),
            (r"![A-Za-z0-9_.]+", _extension, "args"),
            (r"\.[A-Za-z0-9_]+\+?", _meta, "args"),
            (r'"(?:\\.|[^"\\])*"?', String.Double, "args"),
            (r'[^\s;{}()"]+', _letter_command, "args"),
        ],
        # A command's arguments, up to `;`, a brace or the end of the line.
        "args": [
            (r"\n", Whitespace, "#pop"),
            (r";", Punctuation, "#pop"),
            (r"\{", Punctuation, ("#pop", "root")),
            (r"\}", Punctuation, "#pop:2"),
            (r"\(", Punctuation, "paren"),
            (r"\)", Punctuation),
            *_EXPRESSION,
        ],
        # Inside parentheses: `.if (...)`, `.for (a; b; c)`, `.foreach (Var { cmds })`.
        "paren": [
            (r"\n", Whitespace),
            (r";", Punctuation),
            (r"\(", Punctuation, "#push"),
            (r"\)", Punctuation, "#pop"),
            (r"\{", Punctuation, "root"),
            (r"\}", Punctuation, "#pop"),
            *_EXPRESSION,
        ],
        # A script file name (and `$$>a<` arguments), up to `;`.
        "script": [
            (r"\n", Whitespace, "#pop"),
            (r";", Punctuation, "#pop"),
            (r"\{", Punctuation, ("#pop", "root")),
            (r"\}", Punctuation, "#pop:2"),
            (r"[ \t\r\f\v]+", Whitespace),
            (r'"(?:\\.|[^"\\])*"?', String.Double),
            (r'[^\s;{}"]+', String.Other),
        ],
        # The rest of the line, up to a `}` (a `$<` file name, an alias's text).
        "restline": [
            (r"[ \t\r\f\v]+", Whitespace),
            (r"[^\n}]+", String.Other, "#pop"),
            default("#pop"),
        ],
        "aliasline": [
            (r"[ \t\r\f\v]+", Whitespace),
            (r"[^\s};]+", Name.Variable, ("#pop", "restline")),
            default("#pop"),
        ],
    }


# ----------------------------------------------------------------------- KdOutputLexer


def _upper_word(lexer, match, ctx=None) -> Iterator[tuple[int, _TokenType, str]]:
    """An upper-case word with underscores: a bug check name if the table has it."""
    word = match.group()
    yield match.start(), Name.Exception if word in bugcheck_names() else Name.Constant, word


# Lines that are kd errors (commands/errors.py and the commands' own messages).
_ERROR_LINE = (
    r"^[ \t]*(?:\^ |(?:Syntax|Overflow|Operand|Range|Extra character|Bad register"
    r"|Memory access|Couldn't resolve) error\b|Numeric expression missing|Couldn't "
    r"|Could not |Unable to |Cannot |Unknown option|Invalid |No alias named"
    r"|kdsim internal error|kdsim: )[^\n]*"
)

# `dt` base types: `Ptr64 Void`, `Uint4B`, `[2] UChar`.
_DT_TYPES = (
    r"(?<![\w])(?:Ptr64|Ptr32|Uint[1248]B|Int[1248]B|UChar|Char|Void|Wchar|Float"
    r"|Double|Bitfield)(?![\w])"
)


class KdOutputLexer(RegexLexer):
    """What kd prints: prompts with their commands, addresses, symbols, bug checks,
    `dt` fields, analysis labels, banners and errors."""

    name = "kd-output"
    aliases = ["kd-output", "kdout"]
    filenames: list[str] = []
    mimetypes = ["text/x-kd-output"]

    flags = re.MULTILINE

    tokens = {
        "root": [
            # The prompt `0: kd> ` and the command typed after it.
            (r"^(\d+: kd(?::\w+)?> |kd> )([^\n]*)", bygroups(Generic.Prompt, using(KdLexer))),
            (_ERROR_LINE, Generic.Error),
            (r"^\*[^\n]*\*[ \t]*$|^\*{3,}[^\n]*$", Generic.Heading),  # banners of stars
            (r"^(BugCheck)( )([0-9A-Fa-f]+)", bygroups(Generic.Subheading, Whitespace,
                                                       Number.Hex)),
            # `dt` fields: `   +0x018 Name : value`.
            (
                r"^([ \t]*)(\+0x[0-9a-fA-F]+)([ \t]+)([^\s:]+)([ \t]*)(:)",
                bygroups(Whitespace, Number.Hex, Whitespace, Name.Attribute, Whitespace,
                         Punctuation),
            ),
            # `BUGCHECK_CODE:`, `Arg1:`, `Debugging Details:`, `    Key  :`.
            (r"^([A-Za-z][\w.]*(?: [A-Z][\w.]*)*)(:)(?=[ \t]|$)",
             bygroups(Name.Label, Punctuation)),
            (r"^([ \t]+)(Key|Value)([ \t]*)(:)",
             bygroups(Whitespace, Name.Label, Whitespace, Punctuation)),
            (r"\n", Whitespace),
            (r"[ \t\r\f\v]+", Whitespace),
            # `rax=0000000000000000`, `iopl=0`: a register and its value.
            (r"(?<![\w$@!])([a-z][a-z0-9]{1,4})(=)(?=[0-9a-fA-F?])",
             bygroups(Name.Variable, Operator)),
            (_MODULE_SYMBOL, _module_symbol),
            (r"[0-9a-fA-F]+`[0-9a-fA-F]+", Number.Hex),
            (r"0x[0-9a-fA-F`]+", Number.Hex),
            (r"(?<![\w`])(?:[0-9a-fA-F]{16}|[0-9a-fA-F]{8})(?![\w`])", Number.Hex),
            (r"(?<![\w`$])(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]+(?![\w`$])", Number.Hex),
            (r"(?<![\w])[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+(?![\w])", _upper_word),
            (r"_[A-Z][\w]*", Name.Class),
            (_DT_TYPES, Keyword.Type),
            (r"[A-Za-z_][\w]*", Text),
            (r"\+", Operator),
            (r"[^\w\s]", Punctuation),
            (r".", Text),
        ],
    }
