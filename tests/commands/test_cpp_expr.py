"""The C++ evaluator (`??`) against the real type catalog, fake memory and fake symbols."""

from __future__ import annotations

import struct

import pytest

from commands.cpp_expr import GlobalSymbol, evaluate, evaluate_int
from commands.errors import (
    KdBadRegisterError,
    KdError,
    KdMemoryError,
    KdMissingExpressionError,
    KdOperandError,
    KdResolveError,
    KdSyntaxError,
)
from machine.types.catalog import load_catalog
from tests.commands.fakes import PagedMemory

PROC = 0xFFFFC983E3E18040
THREAD = 0xFFFFC983E3E1F080
HEAD = 0xFFFFF80554E00000
NAME = 0xFFFFC983E3E40000


class FakeContext:
    def __init__(self) -> None:
        self.types = load_catalog()
        self.mem = PagedMemory()
        self.regs = {"rax": 0x1122334455667788, "rcx": 7, "$thread": THREAD, "$proc": PROC,
                     "$t0": 0x10}
        self.symbols = {"nt!PsActiveProcessHead": GlobalSymbol(HEAD, False, "_LIST_ENTRY"),
                        "nt!KeNumberProcessors": GlobalSymbol(HEAD + 0x50, False),
                        "nt!KeBugCheckEx": GlobalSymbol(HEAD - 0x1000, True)}

    def register(self, name: str) -> int | None:
        return self.regs.get(name)

    def global_symbol(self, name: str) -> GlobalSymbol | None:
        return self.symbols.get(name)

    def read_memory(self, address: int, size: int) -> bytes:
        return self.mem.read(address, size)

    def masm(self, text: str) -> int:
        return int(text, 16)


@pytest.fixture()
def ctx() -> FakeContext:
    c = FakeContext()
    t = c.types
    off = t.resolve("_EPROCESS", "ActiveProcessLinks")[0]
    c.mem.map(PROC, t.get("_EPROCESS").size)
    c.mem.q(PROC + t.resolve("_EPROCESS", "UniqueProcessId")[0], 4)
    c.mem.q(PROC + off, HEAD)
    c.mem.q(PROC + off + 8, HEAD)
    c.mem.write(PROC + t.resolve("_EPROCESS", "ImageFileName")[0], b"System\0")
    c.mem.b(PROC + t.resolve("_EPROCESS", "Pcb.BasePriority")[0], 8)
    c.mem.map(THREAD, t.get("_ETHREAD").size)
    c.mem.q(THREAD + t.resolve("_ETHREAD", "Tcb.ApcState.Process")[0], PROC)
    c.mem.q(HEAD, PROC + off)
    c.mem.q(HEAD + 8, PROC + off)
    c.mem.d(HEAD + 0x50, 2)
    c.mem.write(NAME, b"hello\0")
    return c


def value(ctx, text):
    v = evaluate(text, ctx)
    return v.type.spelled(), v.value


@pytest.mark.parametrize("text, type_, val", [
    ("1+2", "int", 3),
    ("0x10", "int", 16),
    ("10", "int", 10),
    ("010", "int", 8),
    ("0xffffffff", "unsigned int", 0xFFFFFFFF),
    ("4294967296", "int64", 1 << 32),
    ("1u", "unsigned int", 1),
    ("1ui64 << 63", "unsigned int64", 1 << 63),
    ("-1", "int", -1),
    ("-1 + 0u", "unsigned int", 0xFFFFFFFF),
    ("-1 < 0u", "bool", 0),
    ("7 / -2", "int", -3),
    ("7 % -2", "int", 1),
    ("~0", "int", -1),
    ("!5", "bool", 0),
    ("1 ? 2 : 3", "int", 2),
    ("0 ? 2 : 3", "int", 3),
    ("1 + 2 * 3", "int", 7),
    ("(1 + 2) * 3", "int", 9),
    ("1 << 2 + 1", "int", 8),
    ("1 | 2 ^ 3 & 4", "int", 3),
    ("1 < 2 == 1", "bool", 1),
    ("2 > 1 && 0", "bool", 0),
    ("0 || 3", "bool", 1),
    ("(unsigned char)0x172", "unsigned char", 0x72),
    ("(char)0xff", "char", -1),
    ("(short)-1 + 0", "int", -1),
    ("(unsigned long)-1", "unsigned long", 0xFFFFFFFF),
    ("(ULONG64)-1", "unsigned int64", (1 << 64) - 1),
    ("(unsigned __int64)1", "unsigned int64", 1),
    ("(long)1 + 1u", "unsigned long", 2),
    ("true", "bool", 1),
    ("sizeof(nt!_EPROCESS)", "unsigned int64", 0xA40),
    ("sizeof(_LIST_ENTRY)", "unsigned int64", 0x10),
    ("sizeof(int)", "unsigned int64", 4),
    ("sizeof(void*)", "unsigned int64", 8),
    ("#FIELD_OFFSET(nt!_EPROCESS, ActiveProcessLinks)", "long", 0x448),
    ("#FIELD_OFFSET(_KTHREAD, ApcState.Process)", "long", 0x98 + 0x20),
    ("@rax", "unsigned int64", 0x1122334455667788),
    ("@$t0 + 1", "unsigned int64", 0x11),
    ("@@masm(10) + 1", "unsigned int64", 0x11),
    ("@@c++(2 * 3)", "int", 6),
])
def test_values(ctx, text, type_, val):
    assert value(ctx, text) == (type_, val)


def test_pseudo_registers_are_typed_pointers(ctx):
    assert value(ctx, "@$proc") == ("struct _EPROCESS *", PROC)
    assert value(ctx, "@$thread") == ("struct _ETHREAD *", THREAD)


def test_members_read_memory(ctx):
    assert value(ctx, "@$proc->UniqueProcessId") == ("void *", 4)
    assert value(ctx, "((nt!_EPROCESS*)0xffffc983e3e18040)->UniqueProcessId") == ("void *", 4)
    assert value(ctx, "(*@$proc).Pcb.BasePriority") == ("char", 8)
    assert value(ctx, "@$thread->Tcb.ApcState.Process") == ("struct _KPROCESS *", PROC)
    v = evaluate("@$proc->ImageFileName", ctx)
    assert v.type.spelled() == "unsigned char [15]"
    assert value(ctx, "@$proc->ImageFileName[1]") == ("unsigned char", ord("y"))


def test_address_of_and_pointer_arithmetic(ctx):
    off = ctx.types.resolve("_EPROCESS", "ActiveProcessLinks")[0]
    assert value(ctx, "&@$proc->ActiveProcessLinks") == ("struct _LIST_ENTRY *", PROC + off)
    assert value(ctx, "&(@$thread->Tcb.ApcState.Process)")[0] == "struct _KPROCESS **"
    assert value(ctx, "@$proc + 1") == ("struct _EPROCESS *", PROC + 0xA40)
    assert value(ctx, "(char*)@$proc + 1") == ("char *", PROC + 1)
    assert value(ctx, "(@$proc + 3) - @$proc") == ("int64", 3)
    assert value(ctx, "@$proc == (nt!_EPROCESS*)0xffffc983e3e18040") == ("bool", 1)


def test_globals_are_their_content(ctx):
    off = ctx.types.resolve("_EPROCESS", "ActiveProcessLinks")[0]
    assert value(ctx, "nt!PsActiveProcessHead.Flink") == ("struct _LIST_ENTRY *", PROC + off)
    assert value(ctx, "&nt!PsActiveProcessHead") == ("struct _LIST_ENTRY *", HEAD)
    assert value(ctx, "nt!KeNumberProcessors") == ("unsigned int64", 2)
    assert value(ctx, "nt!KeBugCheckEx") == ("<function> *", HEAD - 0x1000)


def test_containing_record(ctx):
    assert value(ctx, "#CONTAINING_RECORD(nt!PsActiveProcessHead.Flink, nt!_EPROCESS, "
                      "ActiveProcessLinks)") == ("struct _EPROCESS *", PROC)
    assert value(ctx, "#CONTAINING_RECORD(nt!PsActiveProcessHead.Flink, nt!_EPROCESS, "
                      "ActiveProcessLinks)->UniqueProcessId") == ("void *", 4)


def test_char_pointer(ctx):
    assert value(ctx, "((char*)0xffffc983e3e40000)[4]") == ("char", ord("o"))
    assert evaluate_int("(char*)0xffffc983e3e40000", ctx) == NAME


@pytest.mark.parametrize("text, error, message", [
    ("foo", KdResolveError, "Couldn't resolve error at 'foo'"),
    ("1 + foo", KdResolveError, "Couldn't resolve error at 'foo'"),
    ("@$proc->Nope", KdResolveError, "Couldn't resolve error at 'Nope'"),
    ("@nosuch", KdBadRegisterError, "Bad register error at '@nosuch'"),
    ("1 +", KdMissingExpressionError, "Numeric expression missing from '<EOL>'"),
    ("", KdMissingExpressionError, "Numeric expression missing from '<EOL>'"),
    ("1 2", KdSyntaxError, "Syntax error at '2'"),
    ("(1", KdSyntaxError, "Syntax error at ''"),
    ("1 / 0", KdOperandError, "Operand error at '0'"),
    ("*(int*)0", KdMemoryError, "Memory access error at '*(int*)0'"),
    ("1->x", KdError, "Type conflict error at '1->x'"),
    ("*1", KdError, "Type conflict error at '*1'"),
    ("&1", KdError, "Type conflict error at '&1'"),
    ("1 $ 2", KdSyntaxError, "Syntax error at '$ 2'"),
])
def test_errors(ctx, text, error, message):
    with pytest.raises(error) as info:
        evaluate(text, ctx)
    assert str(info.value) == message


def test_float_cast(ctx):
    assert value(ctx, "(double)3") == ("double", 3.0)
    assert struct.pack("<d", 3.0)  # the renderer prints %g of the value
