"""Symbolic-link objects: `_OBJECT_SYMBOLIC_LINK` bodies in the namespace (`\\GLOBAL??\\C:`,
a driver's `\\??\\MyDevice`), whose LinkTarget a name lookup substitutes for the part of
the path it has consumed (ObpParseSymbolicLink).  `\\??` is the DOS-devices directory;
the machine has one, `\\GLOBAL??`, for every session."""

from __future__ import annotations

from machine.ob.object import (
    create_object,
    free_pool_block,
    lookup_in_directory,
    register_delete_procedure,
    type_of,
)
from machine.rtl.unicode import read_unicode_string
from machine.types.view import Struct

DOS_DEVICES = "\\GLOBAL??"
MAX_REPARSE = 32  # ObpLookupObjectName gives up on a loop of links (STATUS_REPARSE...)


def dos_path(path: str) -> str:
    """`\\??\\X` and `\\DosDevices\\X` name `\\GLOBAL??\\X`."""
    for prefix in ("\\??\\", "\\DosDevices\\"):
        if path[:len(prefix)].lower() == prefix.lower():
            return DOS_DEVICES + "\\" + path[len(prefix):]
    return path


def split_parent(path: str) -> tuple[str, str]:
    parent, _, name = dos_path(path).rstrip("\\").rpartition("\\")
    return parent or "\\", name


class LinkError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"status {status:#x}")
        self.status = status


STATUS_OBJECT_NAME_COLLISION = 0xC0000035
STATUS_OBJECT_PATH_NOT_FOUND = 0xC000003A


def create_symbolic_link(m, link: str, target: str) -> int:
    """ObCreateSymbolicLink: the link object named `link`, inserted in its directory.
    Raises LinkError when the directory does not exist or the name is taken."""
    from machine.ldr.loader import write_unicode_string

    parent_path, name = split_parent(link)
    parent = lookup_object(m, parent_path)
    if parent is None or type_of(m, parent) != "Directory" or not name:
        raise LinkError(STATUS_OBJECT_PATH_NOT_FOUND)
    if lookup_in_directory(m, parent, name) is not None:
        raise LinkError(STATUS_OBJECT_NAME_COLLISION)
    size = m.catalog.get("_OBJECT_SYMBOLIC_LINK").size
    body = create_object(m, "SymbolicLink", size, "Symb", 1, name=name, directory=parent)
    s = Struct(m.kspace, "_OBJECT_SYMBOLIC_LINK", body)
    s.set("CreationTime", m.system_time())
    write_unicode_string(m, s.addr("LinkTarget"), target, "SymT")
    s.set("AccessMask", 0xF0001)  # SYMBOLIC_LINK_ALL_ACCESS
    return body


def link_target(m, body: int) -> str:
    return read_unicode_string(
        m.kspace, Struct(m.kspace, "_OBJECT_SYMBOLIC_LINK", body).addr("LinkTarget"))


def lookup_object(m, path: str, follow_last: bool = True) -> int | None:
    """ObpLookupObjectName over the directories in memory, through symbolic links: a
    link met along the path is replaced by its target and the lookup starts again.  The
    last component is followed too unless `follow_last` is False (opening the link)."""
    path = dos_path(path)
    for _ in range(MAX_REPARSE):
        current = m.kspace.read_u64(m.sym("nt!ObpRootDirectoryObject"))
        parts = [p for p in path.split("\\") if p]
        for i, part in enumerate(parts):
            if type_of(m, current) != "Directory":
                return None
            found = lookup_in_directory(m, current, part)
            if found is None:
                return None
            last = i == len(parts) - 1
            if type_of(m, found) == "SymbolicLink" and (follow_last or not last):
                path = dos_path(link_target(m, found) + "".join(
                    "\\" + p for p in parts[i + 1:]))
                break
            current = found
        else:
            return current
    return None


def _delete_link(m, body: int) -> None:
    """The link type's delete procedure: its target string goes back to the pool."""
    buffer = Struct(m.kspace, "_UNICODE_STRING", Struct(
        m.kspace, "_OBJECT_SYMBOLIC_LINK", body).addr("LinkTarget")).get("Buffer")
    if buffer:
        free_pool_block(m, buffer)


register_delete_procedure("SymbolicLink", _delete_link)
