"""Assembly text for one routine: lines with their source positions, labels, frame
slots, and the loads, stores and conversions every construct is built from.

Values are computed in rax (a second operand in rcx) and always kept *canonical*: a
value of a type narrower than 64 bits is zero- or sign-extended to 64 bits by its
signedness, so comparisons and divisions can work on whole registers.
"""

from __future__ import annotations

from dataclasses import dataclass

from machine.types.catalog import Field

from .errors import DriverLangError
from .typesys import Type

HOME_SPACE = 0x20  # the four register parameters' home space every caller provides
ARG_REGS = ("rcx", "rdx", "r8", "r9")

# 64-bit name -> (32, 16, 8-bit names)
_REGS = {
    "rax": ("eax", "ax", "al"), "rcx": ("ecx", "cx", "cl"), "rdx": ("edx", "dx", "dl"),
    "r8": ("r8d", "r8w", "r8b"), "r9": ("r9d", "r9w", "r9b"),
    "r10": ("r10d", "r10w", "r10b"), "r11": ("r11d", "r11w", "r11b"),
}
_PTR = {1: "byte", 2: "word", 4: "dword", 8: "qword"}


def hexa(value: int) -> str:
    """A number as the assembler (and `u`) writes it: 28h, 0C0000010h, -8."""
    if value < 0:
        return "-" + hexa(-value)
    if value < 10:
        return str(value)
    text = f"{value:X}h"
    return "0" + text if text[0] in "ABCDEF" else text


def reg(name: str, size: int) -> str:
    """`rax` at a size: eax, ax, al."""
    return name if size == 8 else _REGS[name][{4: 0, 2: 1, 1: 2}[size]]


@dataclass(frozen=True)
class Place:
    """A memory operand holding a value of `type`: [reg+disp], [label+disp]."""

    type: Type
    base: str  # a register (rsp, rax, r10) or a label
    disp: int = 0
    bitfield: Field | None = None

    def at(self, offset: int, type_: Type, bitfield: Field | None = None) -> Place:
        return Place(type_, self.base, self.disp + offset, bitfield)

    @property
    def mem(self) -> str:
        if self.disp == 0:
            return f"[{self.base}]"
        sign = "+" if self.disp > 0 else "-"
        return f"[{self.base}{sign}{hexa(abs(self.disp))}]"

    def sized(self, size: int | None = None) -> str:
        return f"{_PTR[size or self.type.size]} ptr {self.mem}"


class Emitter:
    """Collects a routine's lines; each carries the source position it came from."""

    def __init__(self, routine: str, frame_base: int) -> None:
        self.routine = routine
        self.lines: list[tuple[str, tuple[int, int]]] = []
        self.top = frame_base  # next free frame offset (slots grow up from the args area)
        self.max_top = frame_base
        self._labels = 0
        self.where = (1, 1)

    def fail(self, message: str, node) -> DriverLangError:
        return DriverLangError(message, node.line, node.column)

    # lines and labels

    def emit(self, text: str) -> None:
        self.lines.append(("    " + text, self.where))

    def label(self, name: str) -> None:
        self.lines.append((f"{name}:", self.where))

    def new_label(self) -> str:
        self._labels += 1
        return f"{self.routine}${self._labels}"

    # frame slots: locals and temporaries, 8 bytes each

    def slot(self) -> int:
        offset = self.top
        self.top += 8
        self.max_top = max(self.max_top, self.top)
        return offset

    def free(self, offset: int) -> None:
        assert offset == self.top - 8, "temporaries are freed in reverse order"
        self.top = offset

    def save(self, source: str = "rax") -> int:
        offset = self.slot()
        self.emit(f"mov qword ptr [rsp+{hexa(offset)}], {source}")
        return offset

    def restore(self, offset: int, target: str) -> None:
        self.emit(f"mov {target}, qword ptr [rsp+{hexa(offset)}]")
        self.free(offset)

    # moving values

    def constant(self, target: str, value: int) -> None:
        value &= (1 << 64) - 1
        if value == 0:
            self.emit(f"xor {reg(target, 4)}, {reg(target, 4)}")
        elif value < 1 << 32:
            self.emit(f"mov {reg(target, 4)}, {hexa(value)}")  # zero-extends
        elif value >= (1 << 64) - (1 << 31):
            self.emit(f"mov {target}, {hexa(value - (1 << 64))}")
        else:
            self.emit(f"mov {target}, {hexa(value)}")

    def load(self, target: str, place: Place, node) -> None:
        """Read the place into register `target`, canonical for its type."""
        t = place.type
        if t.kind == "array":
            self.emit(f"lea {target}, {place.mem}")
            return
        if not t.scalar:
            raise self.fail(f"a {t} is a structure: read one of its fields, or take its "
                            "address with &", node)
        f = place.bitfield
        if f is not None:
            self._load_sized(target, place, False)
            if f.bit_position:
                self.emit(f"shr {target}, {f.bit_position}")
            self.keep_low_bits(target, f.bit_length)
            return
        self._load_sized(target, place, t.signed)

    def _load_sized(self, target: str, place: Place, signed: bool) -> None:
        size = place.type.size
        if size == 8:
            self.emit(f"mov {target}, {place.sized()}")
        elif size == 4:
            if signed:
                self.emit(f"movsxd {target}, {place.sized()}")
            else:
                self.emit(f"mov {reg(target, 4)}, {place.sized()}")
        elif signed:
            self.emit(f"movsx {target}, {place.sized()}")
        else:
            self.emit(f"movzx {reg(target, 4)}, {place.sized()}")

    def store(self, place: Place, source: str, node) -> None:
        """Write register `source` to the place (its low bytes, by the place's size)."""
        t = place.type
        if not t.scalar:
            raise self.fail(f"cannot assign to a {t}: assign its fields", node)
        f = place.bitfield
        if f is not None:
            # read-modify-write of the storage unit, in r11 (never a place's base)
            mask = (1 << f.bit_length) - 1
            self.keep_low_bits(source, f.bit_length)
            if f.bit_position:
                self.emit(f"shl {source}, {f.bit_position}")
            self._load_sized("r11", place, False)
            keep = ~(mask << f.bit_position) & ((1 << (8 * t.size)) - 1)
            self.constant("rdx", keep)
            self.emit("and r11, rdx")
            self.emit(f"or r11, {source}")
            source = "r11"
        self.emit(f"mov {place.sized()}, {reg(source, t.size)}")

    def keep_low_bits(self, target: str, bits: int) -> None:
        """Clear all but the low `bits` bits of a 64-bit register."""
        if bits < 32:
            self.emit(f"and {target}, {hexa((1 << bits) - 1)}")
        elif bits == 32:
            self.emit(f"mov {reg(target, 4)}, {reg(target, 4)}")
        elif bits < 64:
            self.emit(f"shl {target}, {64 - bits}")
            self.emit(f"shr {target}, {64 - bits}")

    def convert(self, target: str, src: Type, dst: Type) -> None:
        """Make a canonical `src` value in `target` a canonical `dst` value (C's rules)."""
        if not dst.is_int or dst.size == 8:
            return  # 64-bit: the canonical extension already is C's conversion
        if src.is_int and src.size == dst.size and src.signed == dst.signed:
            return
        if src.is_int and src.size < dst.size and (not src.signed or dst.signed):
            return
        self.normalize(target, dst)

    def normalize(self, target: str, t: Type) -> None:
        """Truncate and extend `target` to the canonical form of a narrow type."""
        if not t.is_int or t.size == 8:
            return
        if t.size == 4:
            if t.signed:
                self.emit(f"movsxd {target}, {reg(target, 4)}")
            else:
                self.emit(f"mov {reg(target, 4)}, {reg(target, 4)}")
        elif t.signed:
            self.emit(f"movsx {target}, {reg(target, t.size)}")
        else:
            self.emit(f"movzx {reg(target, 4)}, {reg(target, t.size)}")
