"""MASM expression evaluation: numbers, symbols, registers, memory, operators, errors."""

from __future__ import annotations

import pytest

from commands.errors import (
    KdBadRegisterError,
    KdError,
    KdExtraCharacterError,
    KdMemoryError,
    KdMissingExpressionError,
    KdOperandError,
    KdOverflowError,
    KdResolveError,
    KdSyntaxError,
)
from commands.expr import (
    Binary,
    Name,
    Num,
    Paren,
    Symbol,
    Unary,
    evaluate,
    parse_expression,
    parse_expression_prefix,
    parse_number,
    take_expression,
)
from commands.target import MemoryAccessError

NT = 0xFFFFF8054D400000
BUGCHECK = NT + 0x1F0A40
ROUTINE = 0xFFFFF80612341230
RSP = 0xFFFFF80000001000


class FakeContext:
    """Registers, symbols and a little memory, as the debugger would answer."""

    def __init__(self) -> None:
        self.registers = {
            "rax": 0x1234,
            "rbx": 0xFFFF_FFFF_FFFF_FFFF,
            "rsp": RSP,
            "rip": NT + 0x1000,
            "eax": 0x80000001,
            "r8d": 0x7FFFFFFF,
            "ax": 0x8001,
            "cr3": 0x1AA000,
            "$ip": NT + 0x1000,
            "$t0": 0x42,
            "$ptrsize": 8,
            "efl": 0x246,
        }
        self.symbols = {
            "nt": NT,
            "nt!kebugcheckex": BUGCHECK,
            "kebugcheckex": BUGCHECK,
            "myfault": 0xFFFFF80612340000,
            "myfault!routine": ROUTINE,
            "add": 0x5555,  # a symbol that is also a hex number
            "cr3": 0x7777,  # a symbol that shadows a (less common) register
            "rsp": 0x8888,  # a symbol that a common register wins over
        }
        self.memory = {
            RSP: (NT + 0x10).to_bytes(8, "little") + bytes.fromhex("efbeadde11223344"),
            0x1000: bytes(range(0x10, 0x20)),
        }
        self.physical = {0x2000: bytes.fromhex("0102030405060708")}
        self.lookups: list[str] = []

    def register(self, name: str) -> int | None:
        self.lookups.append(f"reg:{name}")
        return self.registers.get(name)

    def symbol(self, name: str) -> int | None:
        self.lookups.append(f"sym:{name}")
        return self.symbols.get(name.lower())

    def read_memory(self, address: int, size: int) -> bytes:
        return self._read(self.memory, address, size)

    def read_physical(self, address: int, size: int) -> bytes:
        return self._read(self.physical, address, size)

    @staticmethod
    def _read(space: dict[int, bytes], address: int, size: int) -> bytes:
        for base, data in space.items():
            if base <= address and address + size <= base + len(data):
                return data[address - base : address - base + size]
        raise MemoryAccessError(address)


class NoPhysical(FakeContext):
    read_physical = None  # type: ignore[assignment]


@pytest.fixture
def ctx() -> FakeContext:
    return FakeContext()


def ev(text: str, ctx: FakeContext | None = None, radix: int = 16) -> int:
    return evaluate(text, ctx or FakeContext(), radix)


def error(text: str, ctx: FakeContext | None = None) -> KdError:
    with pytest.raises(KdError) as info:
        evaluate(text, ctx or FakeContext())
    return info.value


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10", 0x10),
        ("0x10", 0x10),
        ("0X4aB3", 0x4AB3),
        ("4AB3h", 0x4AB3),
        ("4aB3H", 0x4AB3),
        ("0ffh", 0xFF),
        ("ah", 0xA),  # `h` suffix: a number, not the register
        ("0n10", 10),
        ("0N255", 255),
        ("0t17", 0o17),
        ("0y1011", 0b1011),
        ("0x", 0),
        ("0n", 0),
        ("0t", 0),
        ("0y", 0),
        ("0", 0),
        ("dead", 0xDEAD),
        ("DEAD", 0xDEAD),
        ("add", 0xADD),  # a valid hex number is a number even if a symbol has its name
        ("fffff805`4d400000", 0xFFFFF8054D400000),
        ("0xfffff805`4d400000", 0xFFFFF8054D400000),
        ("ffffffffffffffff", 0xFFFFFFFFFFFFFFFF),
        ("1`1", 0x11),
        ("1`", 1),
        ("  7  ", 7),
    ],
)
def test_number_forms(text: str, value: int) -> None:
    assert ev(text) == value


def test_decimal_radix() -> None:
    assert ev("10", radix=10) == 10
    assert ev("10h", radix=10) == 0x10
    assert ev("0x10", radix=10) == 0x10
    assert ev("0n10", radix=10) == 10
    # Not a decimal number any more: looked up as a symbol.
    assert ev("add", radix=10) == 0x5555
    assert ev("10", radix=8) == 8


def test_parse_number() -> None:
    assert parse_number("fffff805`4d400000") == (0xFFFFF8054D400000, True)
    assert parse_number("10h") == (0x10, False)
    assert parse_number("rax") is None
    assert parse_number("h") is None
    assert parse_number("0n1f") is None
    assert parse_number("`1") is None
    assert parse_number("12", 10) == (12, False)
    with pytest.raises(ValueError):
        parse_number("1", 7)


def test_prefix_without_digits_is_zero() -> None:
    # `0n-123` is `0n` (zero) minus hex 123, as kd evaluates it.
    assert ev("0n-123") == (-0x123) & (2**64 - 1)
    assert ev("-0n123") == (-123) & (2**64 - 1)


def test_kernel_mode_sign_extension_of_constants(ctx: FakeContext) -> None:
    assert ev("80000000") == 0xFFFFFFFF80000000
    assert ev("EEAA1122") == 0xFFFFFFFFEEAA1122
    assert ev("00000000EEAA1122") == 0xFFFFFFFFEEAA1122
    assert ev("0n4294967295") == 0xFFFFFFFFFFFFFFFF
    assert ev("00000000`EEAA1122") == 0xEEAA1122
    assert ev("0`EEAA1122") == 0xEEAA1122
    assert ev("7fffffff") == 0x7FFFFFFF
    assert ev("100000000") == 0x100000000
    # Only constants are extended, not results: mask to get the 32-bit value.
    assert ev("0x0`FFFFFFFF & ffffffff") == 0xFFFFFFFF
    assert ev("7fffffff + 1") == 0x80000000
    assert evaluate("80000000", ctx, sign_extend=False) == 0x80000000


def test_overflow() -> None:
    err = error("1 + 10000000000000000")
    assert isinstance(err, KdOverflowError)
    assert str(err) == "Overflow error at '10000000000000000'"


def test_bad_digits_are_a_syntax_error() -> None:
    err = error("1 + 0n1f")
    assert isinstance(err, KdSyntaxError)
    assert str(err) == "Syntax error at '0n1f'"
    assert str(error("12z")) == "Syntax error at '12z'"


# ----------------------------------------------------------------------------- symbols


def test_symbols(ctx: FakeContext) -> None:
    assert ev("nt!KeBugCheckEx", ctx) == BUGCHECK
    assert ev("NT!kebugcheckex", ctx) == BUGCHECK
    assert ev("nt!KeBugCheckEx+0x10", ctx) == BUGCHECK + 0x10
    assert ev("nt!KeBugCheckEx + 10", ctx) == BUGCHECK + 0x10
    assert ev("nt!KeBugCheckEx-8", ctx) == BUGCHECK - 8
    assert ev("myfault!Routine+0n16", ctx) == ROUTINE + 16
    assert ev("KeBugCheckEx", ctx) == BUGCHECK
    assert ev("nt", ctx) == NT
    assert ev("nt+1000", ctx) == NT + 0x1000
    assert ev("myfault", ctx) == 0xFFFFF80612340000


def test_bang_forces_a_symbol(ctx: FakeContext) -> None:
    assert ev("add", ctx) == 0xADD
    assert ev("!add", ctx) == 0x5555
    assert ev("1+!add", ctx) == 0x5556


def test_unresolved_symbol_quotes_the_rest() -> None:
    err = error("foo+1")
    assert isinstance(err, KdResolveError)
    assert str(err) == "Couldn't resolve error at 'foo+1'"
    assert err.rest == "foo+1" and err.position == 0
    assert str(error("1 + nt!Nothing + 2")) == "Couldn't resolve error at 'nt!Nothing + 2'"
    assert str(error("zzz!Foo")) == "Couldn't resolve error at 'zzz!Foo'"


def test_module_bang_without_symbol_is_a_syntax_error() -> None:
    err = error("ping!+0x3c")
    assert type(err) is KdSyntaxError
    assert str(err) == "Syntax error at 'ping!+0x3c'"


def test_wildcards_are_not_expressions() -> None:
    # kd looks `nt!Ke` up before it sees the `*` has no operand.
    assert str(error("nt!Ke*")) == "Couldn't resolve error at 'nt!Ke*'"
    ctx = FakeContext()
    ctx.symbols["nt!ke"] = NT
    assert str(error("nt!Ke*", ctx)) == "Numeric expression missing from '<EOL>'"


# --------------------------------------------------------------------------- registers


def test_registers(ctx: FakeContext) -> None:
    assert ev("@rax", ctx) == 0x1234
    assert ev("@RAX", ctx) == 0x1234
    assert ev("rax", ctx) == 0x1234
    assert ev("rsp+8", ctx) == RSP + 8
    assert ev("@rsp+8", ctx) == RSP + 8
    assert ev("@$t0", ctx) == 0x42
    assert ev("$t0", ctx) == 0x42
    assert ev("@$ip", ctx) == NT + 0x1000
    assert ev("$ip", ctx) == NT + 0x1000
    assert ev(".", ctx) == NT + 0x1000
    assert ev(". + 4", ctx) == NT + 0x1004
    assert ev("$ptrsize * 2", ctx) == 0x10


def test_common_register_wins_over_symbol(ctx: FakeContext) -> None:
    assert ev("rsp", ctx) == RSP
    assert ev("!rsp", ctx) == 0x8888


def test_other_register_only_when_no_symbol(ctx: FakeContext) -> None:
    assert ev("cr3", ctx) == 0x7777
    assert ev("@cr3", ctx) == 0x1AA000
    del ctx.symbols["cr3"]
    assert ev("cr3", ctx) == 0x1AA000
    assert ctx.lookups[-2:] == ["sym:cr3", "reg:cr3"]


def test_32_bit_registers_are_sign_extended(ctx: FakeContext) -> None:
    assert ev("eax", ctx) == 0xFFFFFFFF80000001
    assert ev("@eax", ctx) == 0xFFFFFFFF80000001
    assert ev("@r8d", ctx) == 0x7FFFFFFF
    assert ev("@ax", ctx) == 0x8001
    assert ev("efl", ctx) == 0x246


def test_bad_register() -> None:
    err = error("@foo + 1")
    assert isinstance(err, KdBadRegisterError)
    assert isinstance(err, KdResolveError)
    assert str(err) == "Bad register error at '@foo + 1'"
    assert str(error("1 + @$bp14 == 0")) == "Bad register error at '@$bp14 == 0'"


def test_missing_instruction_pointer() -> None:
    ctx = FakeContext()
    del ctx.registers["$ip"]
    assert str(error(".", ctx)) == "Bad register error at '.'"


# ------------------------------------------------------------------------------ memory


def test_poi_and_sized_reads(ctx: FakeContext) -> None:
    assert ev("poi(rsp)", ctx) == NT + 0x10
    assert ev("poi rsp", ctx) == NT + 0x10
    assert ev("POI(@rsp)", ctx) == NT + 0x10
    assert ev("qwo(rsp)", ctx) == NT + 0x10
    assert ev("dwo(rsp+8)", ctx) == 0xDEADBEEF
    assert ev("wo(rsp+8)", ctx) == 0xBEEF
    assert ev("by(rsp+8)", ctx) == 0xEF
    assert ev("by 1001", ctx) == 0x11
    assert ev("poi(poi(rsp)-10+rsp-(poi(rsp)-10))", ctx) == NT + 0x10


def test_unary_operators_bind_tighter_than_binary(ctx: FakeContext) -> None:
    assert ev("poi rsp+8", ctx) == NT + 0x18
    assert ev("poi(rsp)+8", ctx) == NT + 0x18
    assert ev("poi(rsp+8)", ctx) == int.from_bytes(bytes.fromhex("efbeadde11223344"), "little")
    assert ev("-1+2") == 1
    assert ev("not 1 + 1") == 1
    assert ev("hi 12345678 + 1") == 0x1235


def test_physical_reads(ctx: FakeContext) -> None:
    assert ev("$pby(2000)", ctx) == 1
    assert ev("$pwo(2000)", ctx) == 0x0201
    assert ev("$pdwo(2000)", ctx) == 0x04030201
    assert ev("$pqwo(2000)", ctx) == 0x0807060504030201
    assert ev("$ppoi 2000", ctx) == 0x0807060504030201
    assert str(error("$ppoi(2000)", NoPhysical())) == "Memory access error at ')'"


def test_memory_errors_as_kd_reports_them() -> None:
    err = error("poi(0)")
    assert isinstance(err, KdMemoryError)
    assert str(err) == "Memory access error at ')'"
    assert str(error("dwo(0) == 100")) == "Memory access error at ') == 100'"
    assert str(error("poi 0 + 1")) == "Memory access error at '+ 1'"
    assert str(error("poi 0")) == "Memory access error at ''"
    assert str(error("by(ffffffff`ffffffff)")) == "Memory access error at ')'"


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1+2*3", 7),
        ("(1+2)*3", 9),
        ("1 + 2 * 3 + 4", 0xB),
        ("1 + 2 * 3 / 4", 2),
        ("10 - 1 - 1", 0xE),
        ("100 / 10 / 2", 8),
        ("7 mod 3", 1),
        ("7 % 3", 1),
        ("7 MOD 3", 1),
        ("-1", 2**64 - 1),
        ("--1", 1),
        ("+-1", 2**64 - 1),
        ("0 - 1", 2**64 - 1),
        ("ffffffff`ffffffff + 2", 1),
        ("1 << 4", 0x10),
        ("1 << 3f", 1 << 63),
        ("1 << 40", 1),  # the count is hex 40 = 64, taken mod 64 as the processor does
        ("100 >> 4", 0x10),
        ("-8 >> 2", 0x3FFFFFFFFFFFFFFE),
        ("-8 >>> 2", 2**64 - 2),
        ("1 + 1 << 2", 8),
        ("3 = 3", 1),
        ("3 == 3", 1),
        ("3 != 3", 0),
        ("2 < 3", 1),
        ("3 < 2", 0),
        ("3 > 2", 1),
        ("3 <= 3", 1),
        ("3 >= 4", 0),
        ("-1 > 1", 1),  # comparisons are unsigned
        ("1 < 2 == 1", 1),
        ("6 and 3", 2),
        ("6 & 3", 2),
        ("6 xor 3", 5),
        ("6 ^ 3", 5),
        ("6 or 3", 7),
        ("6 | 3", 7),
        ("1 or 2 and 0", 1),
        ("1 xor 3 and 1", 0),
        ("1 or 3 xor 3", 1),
        ("2 & 3 == 3", 0),
        ("not 0", 1),
        ("not 5", 0),
        ("NOT not 5", 1),
        ("hi 12345678", 0x1234),
        ("low 12345678", 0x5678),
        ("hi(fffff805`4d400000)", 0x4D40),
        ("-7 / 2", 2**64 - 3),  # signed division truncates toward zero
        ("-7 mod 2", 2**64 - 1),
        ("7 / -2", 2**64 - 3),
        ("-0n10 / -0n5", 2),
        ("8000000000000000 / -1", 1 << 63),
        ("( ( 1 ) )", 1),
        ("+5", 5),
    ],
)
def test_operators(text: str, value: int) -> None:
    assert ev(text) == value


def test_division_by_zero_is_an_operand_error() -> None:
    err = error("1/0")
    assert isinstance(err, KdOperandError)
    assert str(err) == "Operand error at ''"
    assert str(error("5 mod 0 + 1")) == "Operand error at '+ 1'"
    assert str(error("(5 % (1-1))")) == "Operand error at ')'"


def test_evaluation_is_left_to_right() -> None:
    assert str(error("foo + @bar")) == "Couldn't resolve error at 'foo + @bar'"
    assert str(error("poi(0) + foo")) == "Memory access error at ') + foo'"
    assert str(error("foo + 1/0")) == "Couldn't resolve error at 'foo + 1/0'"


# ------------------------------------------------------------------------------ syntax


def test_missing_operand() -> None:
    err = error("1 +")
    assert isinstance(err, KdMissingExpressionError)
    assert isinstance(err, KdSyntaxError)
    assert str(err) == "Numeric expression missing from '<EOL>'"
    assert str(error("")) == "Numeric expression missing from '<EOL>'"
    assert str(error("   ")) == "Numeric expression missing from '<EOL>'"
    assert str(error("1 && 2")) == "Numeric expression missing from '& 2'"
    assert str(error("*1")) == "Numeric expression missing from '*1'"
    assert str(error("[rsp]")) == "Numeric expression missing from '[rsp]'"
    assert str(error("1 + ~1")) == "Numeric expression missing from '~1'"
    assert str(error("(")) == "Numeric expression missing from '<EOL>'"


def test_unclosed_parenthesis() -> None:
    err = error("(1+1")
    assert type(err) is KdSyntaxError
    assert str(err) == "Syntax error at ''"
    assert str(error("(1+1 2")) == "Syntax error at '2'"


def test_text_after_the_expression_is_an_extra_character_error() -> None:
    err = error("1+1)")
    assert isinstance(err, KdExtraCharacterError)
    assert str(err) == "^ Extra character error in '1+1)'"
    assert err.column == 3
    relocated = err.relocate("? 1+1)", 2)
    assert relocated.line("0: kd> ") == " " * 12 + "^ Extra character error in '? 1+1)'"
    assert str(error("1 2")) == "^ Extra character error in '1 2'"
    # kd evaluates before it looks at what follows.
    assert str(error("foo bar")) == "Couldn't resolve error at 'foo bar'"


def test_bad_at_sign() -> None:
    assert str(error("@")) == "Syntax error at '@'"
    assert str(error("1 + @@c++(1)")) == "Syntax error at '@@c++(1)'"


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(KdSyntaxError):
        ev("-" * 5000 + "1")
    assert ev("(" * 200 + "1" + ")" * 200) == 1


# ------------------------------------------------------------------------ parse helpers


def test_parse_expression_prefix_stops_where_the_grammar_does() -> None:
    expr, rest = parse_expression_prefix("rsp+8 L2")
    assert expr.source == "rsp+8" and rest == "L2"
    assert isinstance(expr.node, Binary) and expr.node.op == "+"
    expr, rest = parse_expression_prefix("(rsp + 8) L2")
    assert expr.source == "(rsp + 8)" and rest == "L2"
    assert isinstance(expr.node, Paren)
    expr, rest = parse_expression_prefix("1 + 2")
    assert expr.source == "1 + 2" and rest == ""
    expr, rest = parse_expression_prefix("  nt!KeBugCheckEx  rest of it")
    assert isinstance(expr.node, Symbol) and rest == "rest of it"
    expr, rest = parse_expression_prefix("rsp rsp+10")
    assert isinstance(expr.node, Name) and rest == "rsp+10"
    expr, rest = parse_expression_prefix('poi(rsp) "text"')
    assert isinstance(expr.node, Unary) and rest == '"text"'
    expr, rest = parse_expression_prefix("10 -1")
    assert expr.source == "10 -1" and rest == ""
    expr, _ = parse_expression_prefix("0`80000000")
    assert expr.node == Num(0x80000000, True, 0, 10)


def test_parse_expression_prefix_does_not_look_anything_up() -> None:
    expr, _ = parse_expression_prefix("nosuchthing + 1")
    with pytest.raises(KdResolveError):
        expr.evaluate(FakeContext())
    ctx = FakeContext()
    ctx.symbols["nosuchthing"] = 5
    assert expr.evaluate(ctx) == 6


def test_parse_expression_prefix_errors() -> None:
    with pytest.raises(KdMissingExpressionError):
        parse_expression_prefix("")
    with pytest.raises(KdMissingExpressionError):
        parse_expression_prefix("1 + ) L2")
    expr, rest = parse_expression_prefix("1 + L 2")  # `L` is a name here
    assert expr.source == "1 + L" and rest == "2"
    with pytest.raises(KdSyntaxError):
        parse_expression_prefix("(1")


def test_parse_expression_whole() -> None:
    expr = parse_expression("1 + 2")
    assert expr.evaluate(FakeContext()) == 3
    with pytest.raises(KdExtraCharacterError):
        parse_expression("1 + 2 3")


def test_take_expression(ctx: FakeContext) -> None:
    assert take_expression("rsp+8 L2", ctx) == (RSP + 8, "L2")
    assert take_expression("  @rax  ", ctx) == (0x1234, "")
    assert take_expression("1 + 2", ctx) == (3, "")
    assert take_expression("nt!KeBugCheckEx 1 2 3", ctx) == (BUGCHECK, "1 2 3")


def test_take_expression_quotes_only_its_argument(ctx: FakeContext) -> None:
    with pytest.raises(KdBadRegisterError) as info:
        take_expression("@$ea - 10*$ptrsize L10", ctx)
    assert str(info.value) == "Bad register error at '@$ea - 10*$ptrsize '"
    with pytest.raises(KdResolveError) as info:
        take_expression("foo+1 L2", ctx)
    assert str(info.value) == "Couldn't resolve error at 'foo+1 '"
    with pytest.raises(KdMissingExpressionError) as info:
        take_expression("rsp + ", ctx)
    assert str(info.value) == "Numeric expression missing from '<EOL>'"
