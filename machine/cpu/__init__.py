"""x64 instruction interpreter.

Instructions are decoded with iced-x86 and compiled into Python closures that are cached
per (virtual address, physical address) and shared by all CPUs of a machine
(:class:`DecodeCache`).  :class:`Cpu` executes them against an address space from
:mod:`machine.mm.paging`.

``hlt`` raises :class:`Halt` (a :class:`CpuException` with vector -1) after completing,
so its ``rip`` is the address after the ``hlt``.
"""

from machine.cpu.compiler import REG64
from machine.cpu.core import Cpu, DecodeCache
from machine.cpu.errors import CpuException, Halt

__all__ = ["REG64", "Cpu", "CpuException", "DecodeCache", "Halt"]
