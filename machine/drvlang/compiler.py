"""Driver source -> assembly text in the assembler's syntax: one routine per `routine`,
a data section for the globals and strings.

Each routine has one frame: `sub rsp, N` (N % 16 == 8, so rsp is 16-byte aligned at
every call) and one epilogue (`add rsp, N` / `ret`) every return jumps to.  Nothing in a
body pushes or pops, so the unwind data the assembler derives from the prologue is true
at every instruction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields

from machine.asm.syntax import REGISTERS
from machine.types.catalog import load_catalog

from . import ast as A
from .emit import ARG_REGS, HOME_SPACE, Place, hexa
from .errors import DriverLangError
from .exprs import BUILTINS, ExprGen, Signature, Symbols
from .parser import parse
from .typesys import U64, Type, Types, fits, integer

MAX_PARAMS = 8
# Words the assembler reads as an instruction prefix where a label would be defined.
_ASM_WORDS = {"lock", "rep", "repe", "repz", "repne", "repnz"}


@dataclass
class CompiledRoutine:
    name: str
    code: str  # assembly lines after the routine's label; the first is never blank
    origins: list[tuple[int, int]]  # source (line, column) of each line of `code`


@dataclass
class CompiledDriver:
    routines: list[CompiledRoutine]
    data: str  # the data section: globals, then UNICODE_STRING constants
    globals: dict[str, Type]


def compile_driver(source: str | A.Program, entry: str | None = None,
                   nt_exists: Callable[[str], bool] | None = None,
                   asm_routines: Iterable[str] = (),
                   asm_globals: dict[str, int] | None = None,
                   asm_strings: Iterable[str] = ()) -> CompiledDriver:
    """Compile a driver.  `nt_exists` tells whether nt exports a routine (unchecked
    without it); `asm_*` are the routines, globals (name -> size) and strings the same
    driver defines in assembly, which the source may use."""
    prog = parse(source) if isinstance(source, str) else source
    types = Types(load_catalog())
    syms = Symbols(types, {}, {}, nt_exists)
    taken: set[str] = set()

    def declare(name: str, node: A.Node, what: str) -> None:
        if name in taken:
            raise DriverLangError(f"'{name}' is already declared", node.line, node.column)
        if name.lower() in REGISTERS or name.lower() in _ASM_WORDS:
            raise DriverLangError(f"'{name}' is a register or assembler word; "
                                  f"choose another name for this {what}",
                                  node.line, node.column)
        if name in BUILTINS:
            raise DriverLangError(f"'{name}' is a builtin", node.line, node.column)
        taken.add(name)

    here = A.Node(1, 1)
    for name in asm_routines:
        taken.add(name)
        syms.routines[name] = Signature(None, U64)
    for name, size in (asm_globals or {}).items():
        taken.add(name)
        syms.globals[name] = U64 if size == 8 else types.resolve(
            A.TypeName(1, 1, "[]", A.TypeName(1, 1, "u8"), max(size, 1)))
    unicode_string = types.nt("_UNICODE_STRING")
    assert unicode_string is not None
    for name in asm_strings:
        taken.add(name)
        syms.globals[name] = unicode_string

    data: list[str] = ["align 8"]
    for item in prog.order:
        if isinstance(item, A.Global):
            declare(item.name, item, "global")
            t = types.resolve(item.type)
            syms.globals[item.name] = t
        elif isinstance(item, A.String):
            declare(item.name, item, "string")
            syms.globals[item.name] = unicode_string
        else:
            declare(item.name, item, "routine")
            if len(item.params) > MAX_PARAMS:
                extra = item.params[MAX_PARAMS]
                raise DriverLangError(f"a routine takes at most {MAX_PARAMS} parameters",
                                      extra.line, extra.column)
            params = tuple(_scalar(types, p.type, "a parameter") for p in item.params)
            returns = _scalar(types, item.returns, "a return value") if item.returns else U64
            syms.routines[item.name] = Signature(params, returns)
    for g in prog.globals:
        data += _global_data(g, syms.globals[g.name], syms)
    for s in prog.strings:
        data += _string_data(s)
    if entry is not None and entry not in syms.routines:
        raise DriverLangError(f"entry routine {entry} is not defined", here.line, here.column)
    routines = [_RoutineGen(r, syms).compile() for r in prog.routines]
    return CompiledDriver(routines, "\n".join(data) + "\n",
                          {g.name: syms.globals[g.name] for g in prog.globals})


def _scalar(types: Types, t: A.TypeName, what: str) -> Type:
    resolved = types.resolve(t)
    if not resolved.scalar:
        raise DriverLangError(f"{what} must be an integer or a pointer, not {resolved}",
                              t.line, t.column)
    return resolved


def _global_data(g: A.Global, t: Type, syms: Symbols) -> list[str]:
    lines = [f"{g.name}:"]
    words = max(1, (t.size + 7) // 8)
    if g.value is None:
        return lines + ["dq 0"] * words
    if not t.scalar:
        raise DriverLangError(f"only an integer or pointer global takes a value, not a {t}",
                              g.value.line, g.value.column)
    known = ExprGen("", 0, syms).const(g.value)
    if known is None:
        raise DriverLangError("a global's value must be a constant", g.value.line,
                              g.value.column)
    if t.is_int and not fits(known[0], t):
        raise DriverLangError(f"value {known[0]} does not fit in {t}", g.value.line,
                              g.value.column)
    return lines + [f"dq {hexa(known[0] & ((1 << (8 * t.size)) - 1))}"]


def _string_data(s: A.String) -> list[str]:
    """A UNICODE_STRING and its buffer (the layout the scenario's strings use)."""
    units = [ord(c) for c in s.value]
    return [f"{s.name}:", f"dw {2 * len(units)}, {2 * len(units) + 2}", "dd 0",
            f"dq {s.name}_Buffer", f"{s.name}_Buffer:",
            "dw " + ", ".join(str(u) for u in [*units, 0]), "align 8"]


def _walk(node) -> Iterator:
    yield node
    if isinstance(node, list):
        for item in node:
            yield from _walk(item)
    elif isinstance(node, A.Node):
        for f in fields(node):
            value = getattr(node, f.name)
            if isinstance(value, A.Node | list):
                yield from _walk(value)


def _outgoing_args(body: list[A.Stmt]) -> int:
    """Bytes of stack arguments the routine's calls need beyond the home space."""
    most = 0
    for node in _walk(body):
        if isinstance(node, A.Call | A.CallPtr):
            most = max(most, len(node.args) - 4)
    return 8 * most


class _RoutineGen(ExprGen):
    def __init__(self, r: A.Routine, syms: Symbols) -> None:
        super().__init__(r.name, HOME_SPACE + _outgoing_args(r.body), syms)
        self.r = r
        self.sig = syms.routines[r.name]
        self.loops: list[tuple[str, str]] = []  # (continue, break) labels
        self.exit = f"{r.name}$exit"

    def compile(self) -> CompiledRoutine:
        r = self.r
        assert self.sig.params is not None
        self.where = (r.line, r.column)
        entry: list[tuple[str, tuple[int, int]]] = []
        params: list[tuple[int, int]] = []  # (slot, index)
        for i, (p, t) in enumerate(zip(r.params, self.sig.params, strict=True)):
            if p.name in self.scopes[0]:
                raise self.fail(f"'{p.name}' is already declared", p)
            offset = self.slot()
            self.scopes[0][p.name] = Place(t, "rsp", offset)
            params.append((offset, i))
        self.block(r.body, scope=False)
        ends_in_return = bool(self.lines) and self.lines[-1][0].strip() == f"jmp {self.exit}"
        if ends_in_return:
            self.lines.pop()
        else:
            self.where = (r.end_line, 1)
            self.emit("xor eax, eax")  # falling off the end returns 0
        body = self.lines
        self.lines = []
        frame = self.max_top + (8 - self.max_top) % 16
        self.where = (r.line, r.column)
        self.emit(f"sub rsp, {hexa(frame)}")
        for offset, i in params:
            if i < len(ARG_REGS):
                self.emit(f"mov qword ptr [rsp+{hexa(offset)}], {ARG_REGS[i]}")
            else:  # above our frame, the return address and the caller's home space
                caller = frame + 8 + HOME_SPACE + 8 * (i - 4)
                self.emit(f"mov rax, qword ptr [rsp+{hexa(caller)}]")
                self.emit(f"mov qword ptr [rsp+{hexa(offset)}], rax")
        entry, self.lines = self.lines, entry
        self.where = (r.end_line, 1)
        self.label(self.exit)
        self.emit(f"add rsp, {hexa(frame)}")
        self.emit("ret")
        lines = entry + body + self.lines
        return CompiledRoutine(r.name, "\n".join(text for text, _ in lines),
                               [where for _, where in lines])

    # statements

    def block(self, stmts: list[A.Stmt], scope: bool = True) -> None:
        if scope:
            self.scopes.append({})
        for s in stmts:
            self.statement(s)
        if scope:
            self.scopes.pop()

    def statement(self, s: A.Stmt) -> None:
        self.where = (s.line, s.column)
        if isinstance(s, A.Let):
            self.let(s)
        elif isinstance(s, A.Assign):
            self.assign(s)
        elif isinstance(s, A.If):
            self.if_(s)
        elif isinstance(s, A.While):
            top, end = self.new_label(), self.new_label()
            self.label(top)
            self.branch(s.cond, end, False)
            self.loop(s.body, top, end)
            self.emit(f"jmp {top}")
            self.label(end)
        elif isinstance(s, A.For):
            self.for_(s)
        elif isinstance(s, A.Break | A.Continue):
            word = "break" if isinstance(s, A.Break) else "continue"
            if not self.loops:
                raise self.fail(f"{word} outside a loop", s)
            target = self.loops[-1][1 if word == "break" else 0]
            self.emit(f"jmp {target}")
        elif isinstance(s, A.Return):
            if s.value is not None:
                self.value_as(s.value, self.sig.returns, "return")
            self.where = (s.line, s.column)
            self.emit(f"jmp {self.exit}")
        elif isinstance(s, A.ExprStmt):
            self.value(s.expr)
        elif isinstance(s, A.Breakpoint):
            self.emit("int 3")
        elif isinstance(s, A.Asm):
            for line, text in s.lines:
                self.lines.append(("    " + text.strip(), (line, 1)))

    def loop(self, body: list[A.Stmt], cont: str, end: str) -> None:
        self.loops.append((cont, end))
        self.block(body)
        self.loops.pop()

    def declare_local(self, name: str, t: Type, node: A.Node) -> Place:
        if name in self.scopes[-1]:
            raise self.fail(f"'{name}' is already declared", node)
        place = Place(t, "rsp", self.slot())
        self.scopes[-1][name] = place
        return place

    def let(self, s: A.Let) -> None:
        if s.type is not None:
            t = _scalar(self.syms.types, s.type, "a local")
            self.value_as(s.value, t, "store in a local")
        else:
            t = self.value(s.value)
            if not t.scalar:
                raise self.fail(f"a local holds an integer or pointer, not a {t}: "
                                "take its address with &", s.value)
        self.where = (s.line, s.column)
        self.store(self.declare_local(s.name, t, s), "rax", s)

    def assign(self, s: A.Assign) -> None:
        target = s.target
        if not self.is_place(target):
            if isinstance(target, A.Name) and self.local(target.name) is None \
                    and target.name not in self.syms.globals:
                what = "routine" if target.name in self.syms.routines else "constant" \
                    if self.constant_of(target.name) is not None else None
                if what is None:
                    raise self.fail(f"unknown name '{target.name}'", target)
                raise self.fail(f"cannot assign to {what} '{target.name}'", target)
            raise self.fail("cannot assign to this expression", target)
        static = self.static_place(target)
        if s.op == "=":
            self.value_as(s.value, static.type if static else self.target_type(target),
                          "assign")
            self.where = (s.line, s.column)
            if static is not None:
                self.store(static, "rax", s)
                return
            saved = self.save()
            place = self.place(target)
            assert place is not None
            self.where = (s.line, s.column)
            self.restore(saved, "rcx")
            self.store(place, "rcx", s)
            return
        op = s.op[0]
        if static is not None:
            self.load("rax", static, target)
            right = self.second(s.value, static.type)
            self.where = (s.line, s.column)
            result = self.apply(s, op, static.type, right)
            self.convert("rax", result, static.type)
            self.store(static, "rax", s)
            return
        place = self.place(target)
        assert place is not None
        self.where = (s.line, s.column)
        self.emit(f"lea rax, {place.mem}")
        saved = self.save()
        right = self.value(s.value)
        self.where = (s.line, s.column)
        self.emit("mov rcx, rax")
        self.restore(saved, "r10")
        held = Place(place.type, "r10", 0, place.bitfield)
        self.load("rax", held, target)
        result = self.apply(s, op, place.type, right)
        self.convert("rax", result, place.type)
        self.store(held, "rax", s)

    def target_type(self, target: A.Expr) -> Type:
        """The type of an assignment target, without emitting its code."""
        saved = (self.lines, self.top, self.max_top, self._labels)
        self.lines = []
        try:
            place = self.place(target)
        finally:
            self.lines, self.top, self.max_top, self._labels = saved
        assert place is not None
        return place.type

    def static_place(self, e: A.Expr) -> Place | None:
        """The place of a local, global, or field of a global: no code to find it."""
        if isinstance(e, A.Name):
            return self.local(e.name) or (Place(self.syms.globals[e.name], e.name)
                                          if e.name in self.syms.globals else None)
        if isinstance(e, A.Field) and not e.arrow:
            base = self.static_place(e.base)
            if base is not None:
                return self.field(e)
        if isinstance(e, A.Index) and self.const(e.index) is not None:
            base = self.static_place(e.base)
            if base is not None and base.type.kind == "array":
                return self.index(e)
        return None

    def if_(self, s: A.If) -> None:
        otherwise, end = self.new_label(), self.new_label()
        self.branch(s.cond, otherwise if s.otherwise else end, False)
        self.block(s.then)
        if s.otherwise:
            self.where = (s.line, s.column)
            self.emit(f"jmp {end}")
            self.label(otherwise)
            self.block(s.otherwise)
        self.where = (s.line, s.column)
        self.label(end)

    def for_(self, s: A.For) -> None:
        self.scopes.append({})
        known = [self.const(s.start), self.const(s.end)]
        start_t = self.value(s.start)
        end_t = self.value_type(s.end, known[1])
        t = _loop_type(start_t, end_t)
        if not t.is_int:
            raise self.fail(f"a for loop counts integers, not {t}", s)
        self.convert("rax", start_t, t)
        self.where = (s.line, s.column)
        counter = self.declare_local(s.var, t, s)
        self.store(counter, "rax", s)
        self.value(s.end)
        self.convert("rax", end_t, t)
        self.where = (s.line, s.column)
        limit = Place(t, "rsp", self.slot())
        self.store(limit, "rax", s)
        top, cont, end = self.new_label(), self.new_label(), self.new_label()
        self.label(top)
        self.load("rax", counter, s)
        self.load("rcx", limit, s)
        self.emit("cmp rax, rcx")
        self.emit(f"j{'ge' if t.signed else 'ae'} {end}")
        self.loop(s.body, cont, end)
        self.where = (s.line, s.column)
        self.label(cont)
        self.emit(f"inc {counter.sized()}")
        self.emit(f"jmp {top}")
        self.label(end)
        self.scopes.pop()

    def value_type(self, e: A.Expr, known) -> Type:
        if known is not None:
            return known[1]
        saved = (self.lines, self.top, self.max_top, self._labels)
        self.lines = []
        try:
            return self.value(e)
        finally:
            self.lines, self.top, self.max_top, self._labels = saved


def _loop_type(a: Type, b: Type) -> Type:
    from .typesys import common

    if not (a.is_int and b.is_int):
        return a if not a.is_int else b
    return common(a, b) if (a.size, a.signed) != (b.size, b.signed) else \
        (integer("i32") if a.size < 4 else a)
