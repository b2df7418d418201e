"""The object manager as a debugger reads it: object headers (TypeIndex decoded with
nt!ObHeaderCookie, types from nt!ObTypeIndexTable), optional name headers, directories
(every hash bucket walked, since the hash is the kernel's business) and symbolic links,
all from memory.  Shared by !object, !handle and the I/O commands."""

from __future__ import annotations

from dataclasses import dataclass

from commands.target import MemoryAccessError

OB_INFO_CREATOR = 0x1
OB_INFO_NAME = 0x2
DIRECTORY_BUCKETS = 37
MAX_CHAIN = 10_000  # a corrupted (cyclic) bucket chain must not hang the walk
MAX_REPARSE = 32
DOS_DEVICES = "\\GLOBAL??"


@dataclass
class ObjectInfo:
    body: int
    header: int
    type_object: int
    type_name: str
    handle_count: int
    pointer_count: int
    directory: int | None  # None: the object has no name header
    name: str | None


class ObjectManager:
    """Reads objects for one session."""

    def __init__(self, s) -> None:
        self.s = s
        self.r = s.reader
        self.body_offset = self.r.offset("_OBJECT_HEADER", "Body")
        self._cookie: int | None = None

    # -- headers and types ---------------------------------------------------------------

    def header(self, body: int) -> int:
        return body - self.body_offset

    def cookie(self) -> int:
        if self._cookie is None:
            self._cookie = self.r.int(self.s.nt("ObHeaderCookie"), 1)
        return self._cookie

    def type_index(self, body: int) -> int:
        header = self.header(body)
        stored = self.r.field("_OBJECT_HEADER", header, "TypeIndex")
        return stored ^ self.cookie() ^ ((header >> 8) & 0xFF)

    def type_object(self, body: int) -> int | None:
        """The _OBJECT_TYPE of an object, or None when the header names no type."""
        try:
            index = self.type_index(body)
            if index < 2:  # 0 and 1 are never types (1 is the "bad" marker)
                return None
            kind = self.r.u64(self.s.nt("ObTypeIndexTable") + 8 * index)
            if not kind or self.r.field("_OBJECT_TYPE", kind, "Index") != index:
                return None
        except MemoryAccessError:
            return None
        return kind

    def type_name(self, kind: int) -> str:
        return self.r.unicode_string(self.r.field_addr("_OBJECT_TYPE", kind, "Name"))

    def object_type_name(self, body: int) -> str | None:
        kind = self.type_object(body)
        return self.type_name(kind) if kind is not None else None

    # -- names -----------------------------------------------------------------------------

    def name_info(self, body: int) -> int | None:
        """The _OBJECT_HEADER_NAME_INFO before the header (after a creator-info header, if
        there is one, as nt!ObpInfoMaskToOffset places them)."""
        header = self.header(body)
        mask = self.r.field("_OBJECT_HEADER", header, "InfoMask")
        if not mask & OB_INFO_NAME:
            return None
        offset = self.s.target.types.sizeof("_OBJECT_HEADER_NAME_INFO")
        if mask & OB_INFO_CREATOR:
            offset += self.s.target.types.sizeof("_OBJECT_HEADER_CREATOR_INFO")
        return header - offset

    def name(self, body: int) -> str | None:
        info = self.name_info(body)
        if info is None:
            return None
        try:
            return self.r.unicode_string(self.r.field_addr("_OBJECT_HEADER_NAME_INFO", info,
                                                           "Name"))
        except MemoryAccessError:
            return None

    def directory_of(self, body: int) -> int | None:
        info = self.name_info(body)
        return None if info is None else self.r.field("_OBJECT_HEADER_NAME_INFO", info,
                                                      "Directory")

    def info(self, body: int) -> ObjectInfo | None:
        """What !object shows of an object; None if no valid type is found."""
        kind = self.type_object(body)
        if kind is None:
            return None
        header = self.header(body)
        return ObjectInfo(body, header, kind, self.type_name(kind),
                          self.r.field("_OBJECT_HEADER", header, "HandleCount"),
                          self.r.field("_OBJECT_HEADER", header, "PointerCount"),
                          self.directory_of(body), self.name(body))

    # -- directories and links --------------------------------------------------------------

    def root(self) -> int:
        return self.r.u64(self.s.nt("ObpRootDirectoryObject"))

    def entries(self, directory: int) -> list[tuple[int, int]]:
        """(bucket, object) for every entry, bucket by bucket, each chain in order."""
        out = []
        for bucket in range(DIRECTORY_BUCKETS):
            entry = self.r.field("_OBJECT_DIRECTORY", directory, f"HashBuckets[{bucket}]")
            seen = 0
            while entry and seen < MAX_CHAIN:
                out.append((bucket, self.r.field("_OBJECT_DIRECTORY_ENTRY", entry, "Object")))
                entry = self.r.field("_OBJECT_DIRECTORY_ENTRY", entry, "ChainLink")
                seen += 1
        return out

    def find_in(self, directory: int, name: str) -> int | None:
        low = name.lower()
        for _bucket, body in self.entries(directory):
            found = self.name(body)
            if found is not None and found.lower() == low:
                return body
        return None

    def link_target(self, body: int) -> str:
        return self.r.unicode_string(self.r.field_addr("_OBJECT_SYMBOLIC_LINK", body,
                                                       "LinkTarget"))

    def lookup(self, path: str, follow_last: bool = False) -> int | None:
        """The object a namespace path names, through the symbolic links met on the way
        (the last component too if follow_last)."""
        path = dos_path(path)
        for _ in range(MAX_REPARSE):
            current = self.root()
            parts = [p for p in path.split("\\") if p]
            for i, part in enumerate(parts):
                if self.object_type_name(current) != "Directory":
                    return None
                found = self.find_in(current, part)
                if found is None:
                    return None
                last = i == len(parts) - 1
                if self.object_type_name(found) == "SymbolicLink" and (follow_last or not last):
                    path = dos_path(self.link_target(found)
                                    + "".join("\\" + p for p in parts[i + 1:]))
                    break
                current = found
            else:
                return current
        return None

    def full_name(self, body: int) -> str | None:
        """`\\Driver\\MyFault`: the names up the directory chain."""
        parts = []
        for _ in range(64):
            name = self.name(body)
            if name is None:
                return None
            directory = self.directory_of(body)
            if not directory:
                if name == "\\":
                    return "\\" + "\\".join(reversed(parts))
                parts.append(name)
                return "\\".join(reversed(parts))
            parts.append(name)
            body = directory
        return None


def dos_path(path: str) -> str:
    """`\\??\\X` is the global DOS-devices directory, `\\GLOBAL??\\X`."""
    for prefix in ("\\??\\", "\\DosDevices\\"):
        if path[:len(prefix)].lower() == prefix.lower():
            return DOS_DEVICES + "\\" + path[len(prefix):]
    if path.lower() in ("\\??", "\\dosdevices"):
        return DOS_DEVICES
    return path
