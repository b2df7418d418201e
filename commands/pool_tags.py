"""Pool tag descriptions, as kd reads them from pooltag.txt: the tags the simulated kernel
allocates with.  A tag not listed is reported the way kd reports a tag pooltag.txt lacks."""

from __future__ import annotations

POOL_TAGS: dict[str, str] = {
    "Devi": "Device objects , Binary: nt!io",
    "Dire": "Directory objects , Binary: nt!ob",
    "Driv": "Driver objects , Binary: nt!io",
    "Even": "Event objects",
    "File": "File objects",
    "MmLd": "Mm load module database , Binary: nt!mm",
    "ObDi": "object directory , Binary: nt!ob",
    "ObNm": "object names , Binary: nt!ob",
    "ObjT": "object type objects , Binary: nt!ob",
    "Proc": "Process objects , Binary: nt!ps",
    "SymT": "Symbolic link target strings , Binary: nt!ob",
    "Symb": "Symbolic link objects , Binary: nt!ob",
    "Thre": "Thread objects , Binary: nt!ps",
    "Dmap": "Device map , Binary: nt!ob",
    "ExWq": "Executive work queue , Binary: nt!ex",
    "Intr": "Interrupt objects , Binary: nt!io",
    "IoSB": "Io system buffer , Binary: nt!io",
    "IoWI": "Io work item , Binary: nt!io",
    "Irp ": "Io, IRP packets",
    "KIdt": "Kernel IDT , Binary: nt!ke",
    "KeDw": "Kernel DPC watchdog , Binary: nt!ke",
    "Mdl ": "Io, Mdls",
    "MmSt": "Mm section object prototype ptes , Binary: nt!mm",
    "Obtb": "object tables via EX handle.c , Binary: nt!ob",
    "PsEx": "Process exit APC , Binary: nt!ps",
    "PsRp": "Thread reaper , Binary: nt!ps",
    "Psap": "Process APC , Binary: nt!ps",
    "Reso": "Executive resources , Binary: nt!ex",
    "SeOn": "Security object name , Binary: nt!se",
    "Strg": "Strings , Binary: nt!rtl",
}


def tag_text(tag: int) -> str:
    """The four characters of a tag (the protected-pool bit dropped), non-printable bytes
    as `.`, as the pool extensions print them."""
    raw = (tag & 0x7FFFFFFF).to_bytes(4, "little")
    return "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in raw)


def owning_component(tag: int) -> str:
    """The `Owning component` text of !pool."""
    return POOL_TAGS.get(tag_text(tag), "Unknown (update pooltag.txt)")


def used_description(tag: int) -> str:
    """The description column of !poolused."""
    text = tag_text(tag)
    return POOL_TAGS.get(text, f"UNKNOWN pooltag '{text}', please update pooltag.txt")
