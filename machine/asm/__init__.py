"""A small Intel-syntax (MASM-flavoured, as WinDbg prints it) x64 assembler.

Parsing uses the Lark grammar in ``asm.lark``; encoding uses iced-x86's instruction
constructors and block encoder.
"""

from .assembler import Assembly, assemble
from .errors import AsmError

__all__ = ["AsmError", "Assembly", "assemble"]
