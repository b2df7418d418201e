"""Pool tag descriptions, as kd reads them from pooltag.txt: the tags the simulated kernel
allocates with.  A tag not listed is reported the way kd reports a tag pooltag.txt lacks."""

from __future__ import annotations

# tag -> (description, binary) as pooltag.txt lists them; "" where it names no binary.
POOL_TAGS: dict[str, tuple[str, str]] = {
    "Devi": ("Device objects", "nt!io"),
    "Dire": ("Directory objects", "nt!ob"),
    "Driv": ("Driver objects", "nt!io"),
    "Even": ("Event objects", ""),
    "File": ("File objects", ""),
    "MmLd": ("Mm load module database", "nt!mm"),
    "ObDi": ("object directory", "nt!ob"),
    "ObNm": ("object names", "nt!ob"),
    "ObjT": ("object type objects", "nt!ob"),
    "Proc": ("Process objects", "nt!ps"),
    "SymT": ("Symbolic link target strings", "nt!ob"),
    "Symb": ("Symbolic link objects", "nt!ob"),
    "Thre": ("Thread objects", "nt!ps"),
    "Dmap": ("Device map", "nt!ob"),
    "ExWq": ("Executive work queue", "nt!ex"),
    "Intr": ("Interrupt objects", "nt!io"),
    "IoSB": ("Io system buffer", "nt!io"),
    "IoWI": ("Io work item", "nt!io"),
    "Irp ": ("Io, IRP packets", ""),
    "KIdt": ("Kernel IDT", "nt!ke"),
    "KeDw": ("Kernel DPC watchdog", "nt!ke"),
    "Mdl ": ("Io, Mdls", ""),
    "MmSt": ("Mm section object prototype ptes", "nt!mm"),
    "Obtb": ("object tables via EX handle.c", "nt!ob"),
    "PsEx": ("Process exit APC", "nt!ps"),
    "PsRp": ("Thread reaper", "nt!ps"),
    "Psap": ("Process APC", "nt!ps"),
    "Reso": ("Executive resources", "nt!ex"),
    "SeOn": ("Security object name", "nt!se"),
    "Strg": ("Strings", "nt!rtl"),
}


def tag_text(tag: int) -> str:
    """The four characters of a tag (the protected-pool bit dropped), non-printable bytes
    as `.`, as the pool extensions print them."""
    raw = (tag & 0x7FFFFFFF).to_bytes(4, "little")
    return "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in raw)


def pooltag_line(tag: int) -> str:
    """The line !pool prints under the block it marks: the tag's pooltag.txt entry, or
    kd's request to update the file."""
    text = tag_text(tag)
    if text not in POOL_TAGS:
        return "\t\tOwning component : Unknown (update pooltag.txt)"
    description, binary = POOL_TAGS[text]
    tail = f", Binary : {binary}" if binary else ""
    return f"\t\tPooltag {text} : {description}{tail}"


def used_description(tag: int) -> str:
    """The description column of !poolused (its own punctuation: `Thread objects ,
    Binary: nt!ps`, a trailing space where no binary is named)."""
    text = tag_text(tag)
    if text not in POOL_TAGS:
        return f"UNKNOWN pooltag '{text}', please update pooltag.txt"
    description, binary = POOL_TAGS[text]
    return f"{description} , Binary: {binary}" if binary else f"{description} "
