"""The debugger object model behind `dx`: sessions, processes and threads, built by
walking kernel memory (nt!PsActiveProcessHead, each process's thread list), plus typed
values from the C++ evaluator and LINQ-style queries over collections.

Expressions are parsed by `commands/grammar/dx.lark`; text that grammar does not cover
(a C++ cast, `->` under a cast) is a C++ expression as a whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import LarkError

from commands import cpp_types as ct
from commands.cpp_expr import Evaluator, SessionContext, Value, evaluate
from commands.errors import KdError
from commands.grammar import load as load_grammar
from commands.process import Kernel
from commands.target import MemoryAccessError

MAX_ELEMENTS = 100  # dx lists this many elements of a collection, then `[...]`


class DxError(KdError):
    """dx's own error line: `Error: <text>`."""

    def __init__(self, text: str) -> None:
        super().__init__(f"Error: {text}")


# ------------------------------------------------------------------------------ objects


@dataclass
class Typed:
    """A value with a C type (from the C++ evaluator)."""

    value: Value


@dataclass
class ProcessObject:
    address: int  # the _EPROCESS


@dataclass
class ThreadObject:
    address: int  # the _ETHREAD


@dataclass
class SessionObject:
    pass


@dataclass
class Collection:
    """Keyed elements, in order; `keys` are what dx shows in brackets (`0x4` for a
    process ID), or None for positions (`[0]`, `[1]`)."""

    items: list[tuple[int, Any]] = field(default_factory=list)
    keyed: bool = True


@dataclass
class Lambda:
    param: str
    body: Any  # parse tree


# -------------------------------------------------------------------------------- model


class Model:
    """Reads model objects of one debugger session."""

    def __init__(self, s) -> None:
        self.s = s
        self.kernel = Kernel(s)
        self.ctx = SessionContext(s)

    # -- processes and threads -------------------------------------------------------
    def processes(self) -> Collection:
        items = []
        for ep in self.kernel.process_list():
            items.append((self.s.reader.field("_EPROCESS", ep, "UniqueProcessId"),
                          ProcessObject(ep)))
        return Collection(items)

    def threads(self, ep: int) -> Collection:
        r = self.s.reader
        off = r.offset("_ETHREAD", "ThreadListEntry")
        items = []
        for entry in r.list_entries(r.field_addr("_EPROCESS", ep, "ThreadListHead")):
            et = entry - off
            items.append((r.field("_ETHREAD", et, "Cid.UniqueThread"), ThreadObject(et)))
        return Collection(items)

    def process_name(self, ep: int) -> str:
        return self.kernel.image(ep)

    def thread_summary(self, et: int) -> str:
        """The thread's top frame, as dx names a thread: `nt!KiSwapContext+0x76
        (fffff806`4466a186)  [Switch To]`."""
        try:
            state = self.s.reader.field("_ETHREAD", et, "Tcb.State")
            ctx = self.kernel.thread_context(et, state)
        except MemoryAccessError:
            ctx = None
        if ctx is None:
            return "<Unable to get stack trace> [Switch To]"
        rip = ctx["rip"]
        name = self.s.symbols.name_for(rip) or f"0x{rip:x}"
        return f"{name} ({rip >> 32:08x}`{rip & 0xFFFFFFFF:08x})  [Switch To]"

    def typed(self, type_name: str, address: int) -> Typed:
        t = ct.from_catalog(self.s.target.types, type_name)
        return Typed(Value(t, None, address))

    # -- members -------------------------------------------------------------------------
    def member(self, obj: Any, name: str, arrow: bool = False) -> Any:
        low = name.lower()
        if isinstance(obj, SessionObject):
            if low == "processes":
                return self.processes()
        elif isinstance(obj, ProcessObject):
            if low == "name":
                return self.process_name(obj.address)
            if low == "id":
                return self.s.reader.field("_EPROCESS", obj.address, "UniqueProcessId")
            if low == "kernelobject":
                return self.typed("_EPROCESS", obj.address)
            if low == "threads":
                return self.threads(obj.address)
        elif isinstance(obj, ThreadObject):
            if low == "id":
                return self.s.reader.field("_ETHREAD", obj.address, "Cid.UniqueThread")
            if low == "kernelobject":
                return self.typed("_ETHREAD", obj.address)
        elif isinstance(obj, Typed):
            return Typed(self._typed_member(obj.value, name, arrow))
        raise DxError(f"Unable to bind name '{name}'")

    def _typed_member(self, v: Value, name: str, arrow: bool) -> Value:
        ev = Evaluator(self.ctx, name)
        try:
            return ev.member_of(v, name, arrow, _At(len(name)), auto_deref=True)
        except KdError:
            raise DxError(f"Unable to bind name '{name}'") from None

    def children(self, obj: Any) -> list[tuple[str, Any]]:
        """The named members dx lists under an object."""
        if isinstance(obj, SessionObject):
            return [("Processes", self.processes())]
        if isinstance(obj, ProcessObject):
            return [("KernelObject", self.member(obj, "KernelObject")),
                    ("Name", self.member(obj, "Name")), ("Id", self.member(obj, "Id")),
                    ("Threads", self.member(obj, "Threads"))]
        if isinstance(obj, ThreadObject):
            return [("KernelObject", self.member(obj, "KernelObject")),
                    ("Id", self.member(obj, "Id"))]
        return []

    def scalar(self, obj: Any) -> Any:
        """A Python value for comparisons and sorting: int, str or bool."""
        if isinstance(obj, Typed):
            v = obj.value
            if v.type.kind in ("struct", "array") and v.address is not None:
                if v.type.name in ("_UNICODE_STRING", "_STRING"):
                    return self.s.reader.unicode_string(v.address) \
                        if v.type.name == "_UNICODE_STRING" else ""
                return v.address
            if v.value is None:
                ev = Evaluator(self.ctx, "")
                try:
                    v = ev.load(v, _At(0))
                except KdError:
                    raise DxError("Unable to read memory") from None
            return v.value
        return obj


@dataclass(frozen=True)
class _At:
    """A position for errors raised by the C++ evaluator on dx's behalf."""

    end: int
    start: int = 0


# ------------------------------------------------------------------------------- parsing


@cache
def _parser() -> Lark:
    return Lark(load_grammar("dx"), parser="lalr")


def parse_dx(text: str) -> Tree | Token | None:
    """The model expression's tree, or None when the text is C++ for the C++ evaluator."""
    try:
        return _parser().parse(text)
    except LarkError:
        return None


_ROOTS = {"@$cursession", "@$curprocess", "@$curthread"}


def _uses_model(tree: Any) -> bool:
    if isinstance(tree, Token):
        return False
    if tree.data in ("call", "lambda"):
        return True
    if tree.data == "register" and str(tree.children[0]).lower() in _ROOTS:
        return True
    if tree.data == "name" and str(tree.children[0]) == "Debugger":
        return True
    return any(_uses_model(c) for c in tree.children)


class DxEvaluator:
    def __init__(self, s) -> None:
        self.s = s
        self.model = Model(s)

    def evaluate(self, text: str) -> Any:
        tree = parse_dx(text)
        if tree is None or not _uses_model(tree):
            return self.cpp(text)
        return self.eval(tree, {})

    def cpp(self, text: str) -> Typed:
        try:
            return Typed(evaluate(text, self.model.ctx))
        except MemoryAccessError as exc:
            raise DxError(f"Unable to read memory at Address 0x{exc.address:x}") from None
        except KdError as exc:
            raise DxError(str(exc)) from None

    def eval(self, tree: Any, scope: dict[str, Any]) -> Any:
        kind = tree.data
        c = tree.children
        if kind == "register":
            name = str(c[0]).lower()
            if name == "@$cursession":
                return SessionObject()
            if name == "@$curprocess":
                return ProcessObject(self.s.current_process())
            if name == "@$curthread":
                return ThreadObject(self.s.current_thread())
            return self.cpp(str(c[0]))
        if kind == "name":
            name = str(c[0])
            if name in scope:
                return scope[name]
            return self.cpp(name)
        if kind == "number":
            return int(str(c[0]).replace("`", ""), 0)
        if kind == "string":
            return str(c[0])[1:-1]
        if kind == "lambda":
            return Lambda(str(c[0]), c[1])
        if kind in ("member", "arrow"):
            return self.model.member(self.eval(c[0], scope), str(c[1]), kind == "arrow")
        if kind == "index":
            return self.index(self.eval(c[0], scope), self.eval(c[1], scope))
        if kind == "call":
            target = self.eval(c[0], scope)
            args = [self.eval(a, scope) for a in c[2].children] if c[2] is not None else []
            return self.call(target, str(c[1]), args)
        if kind == "negate":
            return not self.truth(self.eval(c[1], scope))
        if kind == "binary":
            return self.binary(str(c[1]), c[0], c[2], scope)
        raise DxError("Syntax error")  # pragma: no cover - the grammar has no others

    def truth(self, v: Any) -> bool:
        return bool(self.model.scalar(v))

    def binary(self, op: str, left: Any, right: Any, scope: dict[str, Any]) -> Any:
        if op in ("&&", "||"):
            a = self.truth(self.eval(left, scope))
            if op == "&&":
                return a and self.truth(self.eval(right, scope))
            return a or self.truth(self.eval(right, scope))
        a = self.model.scalar(self.eval(left, scope))
        b = self.model.scalar(self.eval(right, scope))
        if not all(isinstance(x, int | float | str) for x in (a, b)):
            raise DxError("Operation not supported on the given types")
        if isinstance(a, str) != isinstance(b, str):
            if op in ("==", "!="):
                return op == "!="
            raise DxError("Operation not supported on the given types")
        ops: dict[str, Callable[[Any, Any], Any]] = {
            "==": lambda x, y: x == y, "!=": lambda x, y: x != y,
            "<": lambda x, y: x < y, ">": lambda x, y: x > y,
            "<=": lambda x, y: x <= y, ">=": lambda x, y: x >= y,
            "+": lambda x, y: x + y, "-": lambda x, y: x - y,
            "*": lambda x, y: x * y,
        }
        if op in ("/", "%"):
            if isinstance(a, str) or isinstance(b, str):
                raise DxError("Operation not supported on the given types")
            if not b:
                raise DxError("Divide by zero")
            return a // b if op == "/" else a % b
        try:
            return ops[op](a, b)
        except TypeError:
            raise DxError("Operation not supported on the given types") from None

    def index(self, obj: Any, key: Any) -> Any:
        key = self.model.scalar(key)
        if isinstance(obj, Collection):
            for k, v in obj.items:
                if k == key:
                    return v
            raise DxError(f"Index was out of bounds: {key}")
        if isinstance(obj, Typed) and isinstance(key, int):
            v = obj.value
            ev = Evaluator(self.model.ctx, "")
            base = ev.load(v, _At(0)) if v.type.kind in ("array", "pointer") else None
            if base is None or base.type.kind != "pointer":
                raise DxError("Indexing is not supported on this object")
            target = base.type.target
            if target.kind in ("void", "function"):
                raise DxError("Indexing is not supported on this object")
            return Typed(Value(target, None, (base.value + key * target.size) & (2**64 - 1)))
        raise DxError("Indexing is not supported on this object")

    def call(self, obj: Any, method: str, args: list[Any]) -> Any:
        low = method.lower()
        if isinstance(obj, str):
            if low == "contains" and args and isinstance(args[0], str):
                return args[0] in obj
            if low == "startswith" and args and isinstance(args[0], str):
                return obj.startswith(args[0])
            if low == "endswith" and args and isinstance(args[0], str):
                return obj.endswith(args[0])
            if low == "tolower":
                return obj.lower()
            if low == "toupper":
                return obj.upper()
        if not isinstance(obj, Collection):
            raise DxError(f"Unable to bind name '{method}'")
        fn = args[0] if args and isinstance(args[0], Lambda) else None
        items = obj.items
        if low == "count":
            return len(items)
        if low == "where" and fn:
            return Collection([(k, v) for k, v in items if self.truth(self.apply(fn, v))],
                              obj.keyed)
        if low == "select" and fn:
            return Collection([(k, self.apply(fn, v)) for k, v in items], obj.keyed)
        if low in ("orderby", "orderbydescending") and fn:
            keyed = [(self.model.scalar(self.apply(fn, v)), i) for i, (_, v) in
                     enumerate(items)]
            try:
                order = sorted(keyed, key=lambda p: p[0], reverse=low.endswith("descending"))
            except TypeError:
                raise DxError("Operation not supported on the given types") from None
            return Collection([items[i] for _, i in order], obj.keyed)
        if low in ("first", "last"):
            chosen = [v for _, v in items if fn is None or self.truth(self.apply(fn, v))]
            if not chosen:
                raise DxError("The collection is empty")  # dx: no element matches
            return chosen[0] if low == "first" else chosen[-1]
        if low == "any":
            return any(fn is None or self.truth(self.apply(fn, v)) for _, v in items)
        if low == "all" and fn:
            return all(self.truth(self.apply(fn, v)) for _, v in items)
        if low in ("take", "skip") and args and isinstance(args[0], int):
            n = args[0]
            return Collection(items[:n] if low == "take" else items[n:], obj.keyed)
        raise DxError(f"Unable to bind name '{method}'")

    def apply(self, fn: Lambda, value: Any) -> Any:
        return self.eval(fn.body, {fn.param: value})

