"""Named constants of the language: the #defines drivers use, and every enum constant
of the type catalog.  Values come from the repository's own tables where it has them."""

from __future__ import annotations

from functools import cache
from importlib import resources

from machine.io import irp as io
from machine.ke import processor as ke

# wdm.h values the repository keeps no table of.
_WDM = {
    "IO_NO_INCREMENT": 0,
    "FILE_ANY_ACCESS": 0,
    "TRUE": 1,
    "FALSE": 0,
    "NULL": 0,
}


def _header_defines() -> dict[str, int]:
    """The NTSTATUS and IRP_MJ_* names of ntstatus.h and wdm.h (data/defines.tsv,
    generated from the reference facts by tools/gen_data.py)."""
    text = (resources.files("machine.drvlang") / "data" / "defines.tsv").read_text()
    out: dict[str, int] = {}
    for row in text.splitlines()[1:]:
        value, name = row.split("\t")
        out.setdefault(name, int(value, 16))
    return out


@cache
def defines() -> dict[str, int]:
    """The #define table (names are case-sensitive, as in C)."""
    table = _header_defines()
    table.update({
        "PASSIVE_LEVEL": ke.PASSIVE_LEVEL, "APC_LEVEL": ke.APC_LEVEL,
        "DISPATCH_LEVEL": ke.DISPATCH_LEVEL, "HIGH_LEVEL": ke.HIGH_LEVEL,
        "METHOD_BUFFERED": io.METHOD_BUFFERED, "METHOD_IN_DIRECT": io.METHOD_IN_DIRECT,
        "METHOD_OUT_DIRECT": io.METHOD_OUT_DIRECT, "METHOD_NEITHER": io.METHOD_NEITHER,
        "FILE_DEVICE_UNKNOWN": io.FILE_DEVICE_UNKNOWN,
    })
    table.update(_WDM)
    return table


@cache
def enum_constants() -> dict[str, int]:
    """Every enumerator of every enum in the type catalog (NonPagedPool, Executive, ...)."""
    from machine.types.catalog import load_catalog

    catalog = load_catalog()
    out: dict[str, int] = {}
    for name in catalog.names():
        t = catalog.get(name)
        if t is not None and t.kind == "enum":
            for n, v in t.values:
                out.setdefault(n, v)
    return out


def lookup(name: str) -> int | None:
    value = defines().get(name)
    return value if value is not None else enum_constants().get(name)


def ctl_code(device_type: int, function: int, method: int, access: int) -> int:
    """CTL_CODE from devioctl.h."""
    return (device_type << 16) | (access << 14) | (function << 2) | method
