"""A minimal machine for running code snippets: one address space, code, stack and data.

Used by the CPU tests; handy anywhere a few instructions need executing without a kernel.
"""

from __future__ import annotations

from machine.cpu.core import Cpu, DecodeCache
from machine.mm.paging import AddressSpace
from machine.mm.physical import PhysicalMemory

CODE = 0xFFFFF80000100000
STACK_TOP = 0xFFFFF80000210000
STACK_PAGES = 4
DATA = 0xFFFFF80000300000


class Harness:
    def __init__(self, code: bytes = b"", *, code_pages: int = 2, data_pages: int = 2) -> None:
        self.phys = PhysicalMemory()
        self.mem = AddressSpace(self.phys)
        self.mem.map_new(CODE, code_pages * 0x1000, executable=True)
        self.mem.map_new(STACK_TOP - STACK_PAGES * 0x1000, STACK_PAGES * 0x1000)
        self.mem.map_new(DATA, data_pages * 0x1000)
        self.cache = DecodeCache(self.phys)
        self.cpu = Cpu(0, self.cache)
        self.cpu.mem = self.mem
        self.cpu.regs[4] = STACK_TOP
        self.end = CODE
        if code:
            self.load(code)

    def load(self, code: bytes, at: int = CODE) -> None:
        """Write code at ``at`` and point rip there."""
        self.mem.write(at, code)
        self.cpu.rip = at
        self.end = at + len(code)

    def run(self, max_steps: int = 100_000) -> int:
        """Step until rip reaches the end of the loaded code; returns the steps taken."""
        n = 0
        while self.cpu.rip != self.end:
            if n >= max_steps:
                raise RuntimeError("step limit reached")
            self.cpu.step()
            n += 1
        return n


def assemble(*lines: str, base: int = CODE) -> bytes:
    """Concatenate instruction bytes given as ``"<hex> <disassembly>"`` lines.

    The disassembly (iced-x86 MASM syntax, e.g. ``"4801d8 add rax,rbx"``) is checked
    against the bytes, so a typo in either shows up as an error rather than a wrong test.
    Hex may contain no spaces; the text is optional.  Branch targets in the text are
    absolute, for code placed at ``base``.
    """
    from iced_x86 import Decoder

    out = b""
    for line in lines:
        hexpart, _, text = line.strip().partition(" ")
        data = bytes.fromhex(hexpart)
        if text:
            dec = Decoder(64, data, ip=base + len(out))
            got = []
            while dec.can_decode:
                got.append(str(dec.decode()))
            want = " ".join(text.split()).lower()
            have = "; ".join(got).lower()
            if have != want:
                raise ValueError(f"{hexpart} decodes as {have!r}, not {want!r}")
        out += data
    return out
