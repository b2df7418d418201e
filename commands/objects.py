"""Object-manager views: !object (objects by address or namespace path, directories,
symbolic links) and !handle (handle tables walked from _HANDLE_TABLE.TableCode)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from commands import fmt
from commands.errors import KdError
from commands.obnamespace import OB_INFO_CREATOR, ObjectInfo, ObjectManager
from commands.process import Kernel, render_process
from commands.registry import Result, command
from commands.target import MemoryAccessError

OBJECT_DEFAULT_FLAGS = 0x9  # counts and name (1), directory contents and link target (8)
HANDLE_DEFAULT_FLAGS = 0x3  # the handle line (1) and its object (2)
ENTRY_SIZE = 0x10
PAGE_ENTRIES = 0x1000 // ENTRY_SIZE  # handle-table entries in one page of a table
POINTERS_PER_PAGE = 0x1000 // 8
ATTRIBUTES = ((0x1, "Protected"), (0x2, "Inherit"), (0x4, "Audit"))
SYSTEM_PID = 4


# -- !object -------------------------------------------------------------------------------


@dataclass
class ObjectView(ObjectInfo):
    """What !object shows: the header's facts plus what the flags ask for.  `name` is the
    name header's, or for a file object (which has none) its FileName and device."""

    optional_headers: list[tuple[str, int]] = field(default_factory=list)
    link_flags: int | None = None
    link_target: str | None = None
    drive_index: int = 0
    entries: list[tuple[int, int, str, str]] = field(default_factory=list)


def read_object(ob: ObjectManager, body: int, flags: int) -> ObjectView | None:
    info = ob.info(body)
    if info is None:
        return None
    view = ObjectView(**vars(info))
    r = ob.r
    if info.type_name == "File" and info.name is None:
        # A file object has no name header: kd names it by its FileName and device.
        file_name = r.unicode_string(r.field_addr("_FILE_OBJECT", body, "FileName"))
        device = r.field("_FILE_OBJECT", body, "DeviceObject")
        device_name = (ob.name(device) or "") if device else ""
        view.name = f"{file_name} {{{device_name}}}"
    if flags & 0x10:
        mask = r.field("_OBJECT_HEADER", info.header, "InfoMask")
        if mask & OB_INFO_CREATOR:
            view.optional_headers.append(
                ("CreatorInfo", info.header - ob.s.target.types.sizeof(
                    "_OBJECT_HEADER_CREATOR_INFO")))
        name_info = ob.name_info(body)
        if name_info is not None:
            view.optional_headers.append(("NameInfo", name_info))
    if flags & 0x8 and info.type_name == "SymbolicLink":
        t = "_OBJECT_SYMBOLIC_LINK"
        view.link_flags = r.field(t, body, "Flags")
        view.link_target = ob.link_target(body)
        view.drive_index = r.field(t, body, "DosDeviceDriveIndex")
    if flags & 0x8 and info.type_name == "Directory":
        for bucket, child in ob.entries(body):
            view.entries.append((bucket, child, ob.object_type_name(child) or "",
                                 ob.name(child) or ""))
    return view


def render_object(view: ObjectView, flags: int, indent: int = 4) -> list[str]:
    pad = " " * indent
    lines = [f"Object: {fmt.hex16(view.body)}  Type: ({fmt.hex16(view.type_object)}) "
             f"{view.type_name}",
             f"    ObjectHeader: {fmt.hex16(view.header)} (new version)"]
    if flags & 0x1:
        lines.append(f"{pad}HandleCount: {view.handle_count}  PointerCount: "
                     f"{view.pointer_count}")
        if view.name is not None:
            directory = fmt.hex16(view.directory) if view.directory else "00000000"
            lines.append(f"{pad}Directory Object: {directory}  Name: {view.name}")
    if view.optional_headers:
        lines.append("Optional Headers: ")
        lines += [f"    {name}({fmt.hex16(addr)})" for name, addr in view.optional_headers]
    if view.link_target is not None:
        assert view.link_flags is not None
        local = " ( Local )" if view.link_flags == 0 else ""
        lines.append(f"{pad}Flags: {view.link_flags:08x}{local}")
        lines.append(f"{pad}Target String is '{view.link_target}'")
        if view.drive_index:
            letter = chr(ord("A") + view.drive_index - 1)
            lines.append(f"{pad}Drive Letter Index is {view.drive_index} ({letter}:)")
    if flags & 0x8 and view.type_name == "Directory":
        lines += ["", "    Hash Address          Type          Name",
                  "    ---- -------          ----          ----"]
        last = None
        for bucket, child, type_name, name in view.entries:
            hash_text = f"{bucket:02d}" if bucket != last else "  "
            last = bucket
            lines.append(f"     {hash_text}  {fmt.hex16(child)} {type_name:<13} {name}")
    return lines


def not_an_object(address: int) -> str:
    return f"{fmt.hex16(address)}: Not a valid object (ObjectType invalid)"


@command("!object", syntax="!object address | path [flags]",
         help="Show an object by address or namespace path (`\\`, `\\Device`, "
              "`\\GLOBAL??\\MyFault`): type, header, counts, name; a directory's entries "
              "and a symbolic link's target. Flags 1 counts and name, 8 contents, 0x10 "
              "optional headers (default 9).")
def object_cmd(s, args: str) -> Result:
    text = args.strip()
    if not text:
        raise KdError("Usage: !object <address | path> [flags]")
    ob = ObjectManager(s)
    if text.startswith("\\"):
        path, _, rest = text.partition(" ")
        body = ob.lookup(path)
        if body is None:
            return Result([f"Object {path} not found"], {"error": path})
    else:
        body, rest = s.take(text)
    flags = s.take(rest)[0] if rest.strip() else OBJECT_DEFAULT_FLAGS
    try:
        view = read_object(ob, body, flags)
    except MemoryAccessError:
        view = None
    if view is None:
        line = not_an_object(body)
        return Result([line], {"address": body, "error": line})
    return Result(render_object(view, flags), asdict(view))


# -- !handle -------------------------------------------------------------------------------


@dataclass
class HandleEntry:
    handle: int
    entry: int
    object: int
    granted_access: int
    attributes: int
    view: ObjectView | None = None


@dataclass
class ProcessHandles:
    process: int
    table: int
    in_use: int
    kernel: bool
    handles: list[HandleEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class HandleTable:
    """One _HANDLE_TABLE's entries, through one, two or three levels of pages (the low
    two bits of TableCode)."""

    def __init__(self, s, table: int) -> None:
        self.r = s.reader
        code = self.r.field("_HANDLE_TABLE", table, "TableCode")
        self.levels = code & 3
        self.base = code & ~7

    def pages(self) -> list[tuple[int, int]]:
        """(first index, entry page) for every page of entries."""
        if self.levels == 0:
            return [(0, self.base)]
        if self.levels == 1:
            return [(i * PAGE_ENTRIES, p) for i, p in enumerate(self._pointers(self.base)) if p]
        out = []
        for t, middle in enumerate(self._pointers(self.base)):
            if middle:
                out += [((t * POINTERS_PER_PAGE + i) * PAGE_ENTRIES, p)
                        for i, p in enumerate(self._pointers(middle)) if p]
        return out

    def _pointers(self, page: int) -> list[int]:
        raw = self.r.read(page, 0x1000)
        return [int.from_bytes(raw[i:i + 8], "little") for i in range(0, 0x1000, 8)]

    def entry_address(self, index: int) -> int | None:
        for first, page in self.pages():
            if first <= index < first + PAGE_ENTRIES:
                return page + (index - first) * ENTRY_SIZE
        return None

    def in_use(self) -> list[tuple[int, int]]:
        """(index, entry address) of every entry that names an object."""
        out = []
        for first, page in self.pages():
            raw = self.r.read(page, 0x1000)
            for i in range(1, PAGE_ENTRIES):  # each page's first entry is never a handle
                low = int.from_bytes(raw[i * ENTRY_SIZE:i * ENTRY_SIZE + 8], "little")
                if low >> 20:
                    out.append((first + i, page + i * ENTRY_SIZE))
        return out


def read_entry(s, ob: ObjectManager, index: int, entry: int) -> HandleEntry:
    r = s.reader
    t = "_HANDLE_TABLE_ENTRY"
    header = (r.field(t, entry, "ObjectPointerBits") << 4) | 0xFFFF000000000000
    return HandleEntry(index * 4, entry, header + ob.body_offset,
                       r.field(t, entry, "GrantedAccessBits"), r.field(t, entry, "Attributes"))


def render_entry(h: HandleEntry, flags: int) -> list[str]:
    attrs = "".join(f" ({name})" for bit, name in ATTRIBUTES if h.attributes & bit)
    lines = [f"{h.handle:04x}: Object: {fmt.hex16(h.object)}  GrantedAccess: "
             f"{h.granted_access:08x}{attrs} Entry: {fmt.hex16(h.entry)}"]
    if flags & 2:
        if h.view is None:
            lines.append(not_an_object(h.object))
        else:
            lines += render_object(h.view, 0x1, indent=8)
    return lines + [""]


def _process_targets(s, k: Kernel, value: int | None) -> list[int]:
    if value is None or value == fmt.MASK64:
        return [s.current_process()]
    if value == 0:
        return k.process_list()
    for ep in k.process_list():
        if ep == value or k.r.field("_EPROCESS", ep, "UniqueProcessId") == value:
            return [ep]
    if value >= 0xFFFF800000000000:
        return [value]
    raise KdError(f"Cannot find process {value:x}")


def process_handles(s, ob: ObjectManager, ep: int, handle: int, flags: int,
                    type_name: str | None) -> ProcessHandles:
    r = s.reader
    table = r.field("_EPROCESS", ep, "ObjectTable")
    kernel = r.field("_EPROCESS", ep, "UniqueProcessId") == SYSTEM_PID
    out = ProcessHandles(ep, table, 0, kernel)
    if not table:
        return out
    ht = HandleTable(s, table)
    used = ht.in_use()
    out.in_use = len(used)
    if handle:
        entry = ht.entry_address(handle // 4)
        if entry is None:
            out.notes.append(f"Invalid Handle: 0x{handle:x}")
            return out
        if not any(index == handle // 4 for index, _ in used):
            nxt = r.u64(entry + 8)
            out.notes.append(f"{handle:04x}: free handle, Entry address {fmt.hex16(entry)}, "
                             f"Next Entry {fmt.hex16(nxt)}")
            return out
        used = [(handle // 4, entry)]
    for index, entry in used:
        h = read_entry(s, ob, index, entry)
        try:
            h.view = read_object(ob, h.object, 0x1)
        except MemoryAccessError:
            h.view = None
        if type_name is not None and (h.view is None
                                      or h.view.type_name.lower() != type_name.lower()):
            continue
        out.handles.append(h)
    return out


@command("!handle", syntax="!handle [handle [flags [process [type]]]]",
         help="Show handles: handle 0 (default) all of them; flags 1 the handle, 2 its "
              "object (default 3); process 0 every process, an address or pid one "
              "(default: the current process); type keeps handles to objects of that type.")
def handle_cmd(s, args: str) -> Result:
    rest = args.strip()
    handle, flags, process, type_name = 0, HANDLE_DEFAULT_FLAGS, None, None
    if rest:
        handle, rest = s.take(rest)
        rest = rest.strip()
    if rest:
        flags, rest = s.take(rest)
        rest = rest.strip()
    if rest:
        process, rest = s.take(rest)
        rest = rest.strip()
    if rest:
        type_name = rest.split()[0]
    k = Kernel(s)
    ob = ObjectManager(s)
    lines: list[str] = []
    if type_name is not None:
        lines += ["", f"Searching for handles of type {type_name}"]
    results = []
    for ep in _process_targets(s, k, process):
        ph = process_handles(s, ob, ep, handle, flags, type_name)
        results.append(ph)
        lines.append("")
        lines += render_process(k.process(ep, 0))
        lines.append("")
        if not ph.table:
            continue
        label = "Kernel handle table" if ph.kernel else "Handle table"
        lines += [f"{label} at {fmt.hex16(ph.table)} with {ph.in_use} entries in use", ""]
        lines += ph.notes
        for h in ph.handles:
            lines += render_entry(h, flags)
    return Result(lines, [asdict(p) for p in results])
