"""The driver language: drivers for scenarios written without assembly.

`compile_driver(source)` parses a driver (grammar in driver.lark) and compiles it to
assembly text in machine.asm's syntax, which the scenario loader assembles like any
hand-written routine.  The language is described in docs/driver-language.md.
"""

from __future__ import annotations

from .compiler import CompiledDriver, CompiledRoutine, compile_driver
from .errors import DriverLangError
from .parser import parse


def nt_routine_exists(name: str) -> bool:
    """Whether the machine's nt has a routine of this name (its native registry)."""
    import machine.routines  # noqa: F401  (fills the registry)
    from machine.ke.native import REGISTRY

    spec = REGISTRY.get(name)
    return spec is not None and spec.module == "nt"


__all__ = ["CompiledDriver", "CompiledRoutine", "DriverLangError", "compile_driver",
           "nt_routine_exists", "parse"]
