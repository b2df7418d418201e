"""!peb and !teb: a user process's environment block and a user thread's environment
block, read through the process's DirectoryTableBase (user addresses mean nothing in
another process: kd needs `.process /p` first for them, kdsim reads the implicit
process's space)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from commands.errors import KdError
from commands.pe_cmds import NT, NoFileHeader, nt_headers
from commands.reader import Reader
from commands.registry import Result, command
from commands.target import MemoryAccessError

MAX_MODULES = 1024


def process_reader(s, eprocess: int) -> Reader:
    dtb = s.reader.field("_KPROCESS", eprocess, "DirectoryTableBase")
    return Reader(s.target, dtb)


def _yes_no(value: int) -> str:
    return "Yes" if value else "No"


def _hex(value: int) -> str:
    return f"{value:016x}"


@dataclass
class LdrModule:
    base: int
    timestamp: int | None
    path: str


@dataclass
class PebInfo:
    address: int
    fields: dict[str, int] = field(default_factory=dict)
    lists: dict[str, tuple[int, int]] = field(default_factory=dict)
    modules: list[LdrModule] = field(default_factory=list)
    ldr_readable: bool = True
    strings: dict[str, str | None] = field(default_factory=dict)


def _timestamp(r: Reader, base: int) -> int | None:
    try:
        return r.field(NT, nt_headers(r, base), "FileHeader.TimeDateStamp")
    except (MemoryAccessError, NoFileHeader):
        return None


def _string(r: Reader, address: int) -> str | None:
    try:
        return r.unicode_string(address)
    except MemoryAccessError:
        return None


def read_peb(r: Reader, peb: int) -> PebInfo:
    info = PebInfo(peb)
    for name in ("InheritedAddressSpace", "ReadImageFileExecOptions", "BeingDebugged",
                 "ImageBaseAddress", "NtGlobalFlag", "NtGlobalFlag2", "Ldr", "SubSystemData",
                 "ProcessHeap", "ProcessParameters"):
        info.fields[name] = r.field("_PEB", peb, name)
    ldr = info.fields["Ldr"]
    try:
        info.fields["Ldr.Initialized"] = r.field("_PEB_LDR_DATA", ldr, "Initialized")
        for name in ("InInitializationOrderModuleList", "InLoadOrderModuleList",
                     "InMemoryOrderModuleList"):
            head = r.field_addr("_PEB_LDR_DATA", ldr, name)
            info.lists[name] = (r.u64(head), r.u64(head + 8))
        head = r.field_addr("_PEB_LDR_DATA", ldr, "InLoadOrderModuleList")
        entry = r.u64(head)
        while entry != head and len(info.modules) < MAX_MODULES:
            base = r.field("_LDR_DATA_TABLE_ENTRY", entry, "DllBase")
            path = _string(r, r.field_addr("_LDR_DATA_TABLE_ENTRY", entry, "FullDllName"))
            info.modules.append(LdrModule(base, _timestamp(r, base), path or ""))
            entry = r.u64(entry)
    except MemoryAccessError:
        info.ldr_readable = False
    params = info.fields["ProcessParameters"]
    t = "_RTL_USER_PROCESS_PARAMETERS"
    for label, path in (("CurrentDirectory", "CurrentDirectory.DosPath"),
                        ("WindowTitle", "WindowTitle"), ("ImageFile", "ImagePathName"),
                        ("CommandLine", "CommandLine"), ("DllPath", "DllPath")):
        try:
            info.strings[label] = _string(r, r.field_addr(t, params, path)) if params else None
        except MemoryAccessError:
            info.strings[label] = None
    try:
        info.fields["Environment"] = r.field(t, params, "Environment") if params else 0
    except MemoryAccessError:
        info.fields["Environment"] = 0
    return info


def _stamp(ts: int) -> str:
    return time.strftime("%b %d %H:%M:%S %Y", time.gmtime(ts))


def render_peb(p: PebInfo) -> list[str]:
    f = p.fields
    out = [f"PEB at {_hex(p.address)}",
           f"    InheritedAddressSpace:    {_yes_no(f['InheritedAddressSpace'])}",
           f"    ReadImageFileExecOptions: {_yes_no(f['ReadImageFileExecOptions'])}",
           f"    BeingDebugged:            {_yes_no(f['BeingDebugged'])}",
           f"    ImageBaseAddress:         {_hex(f['ImageBaseAddress'])}",
           f"    NtGlobalFlag:             {f['NtGlobalFlag']:x}",
           f"    NtGlobalFlag2:            {f['NtGlobalFlag2']:x}",
           f"    Ldr                       {_hex(f['Ldr'])}"]
    if not p.ldr_readable:
        out.append(f"    *** unable to read Ldr table at {_hex(f['Ldr'])}")
    else:
        out.append(f"    Ldr.Initialized:          {_yes_no(f['Ldr.Initialized'])}")
        for name, pad in (("InInitializationOrderModuleList", ""),
                          ("InLoadOrderModuleList", "          "),
                          ("InMemoryOrderModuleList", "        ")):
            flink, blink = p.lists[name]
            out.append(f"    Ldr.{name}: {pad}{_hex(flink)} . {_hex(blink)}")
        out.append("                    Base TimeStamp                     Module")
        for mod in p.modules:
            stamp = (f"{mod.timestamp:08x} {_stamp(mod.timestamp)}"
                     if mod.timestamp is not None else f"{'':8} {'':20}")
            out.append(f"        {mod.base:16x} {stamp} {mod.path}")
    out.append(f"    SubSystemData:     {_hex(f['SubSystemData'])}")
    out.append(f"    ProcessHeap:       {_hex(f['ProcessHeap'])}")
    out.append(f"    ProcessParameters: {_hex(f['ProcessParameters'])}")
    if f["ProcessParameters"]:
        def quoted(label: str) -> str:
            text = p.strings.get(label)
            return f"'{text}'" if text is not None else "'< Name not readable >'"

        out.append(f"    CurrentDirectory:  {quoted('CurrentDirectory')}")
        out.append(f"    WindowTitle:  {quoted('WindowTitle')}")
        out.append(f"    ImageFile:    {quoted('ImageFile')}")
        out.append(f"    CommandLine:  {quoted('CommandLine')}")
        out.append(f"    DllPath:      {quoted('DllPath')}")
        out.append(f"    Environment:  {_hex(f['Environment'])}")
    return out


def _address_arg(s, args: str) -> int | None:
    text = args.strip()
    return s.evaluate(text) if text else None


@command("!peb", syntax="!peb [address]",
         help="Show a process environment block (default: the implicit process's), read "
              "in that process's address space: loader lists, modules, process parameters.")
def peb_cmd(s, args: str) -> Result:
    ep = s.current_process()
    r = process_reader(s, ep)
    peb = _address_arg(s, args)
    if peb is None:
        peb = s.reader.field("_EPROCESS", ep, "Peb")
    if not peb:
        raise KdError("PEB NULL...")
    try:
        info = read_peb(r, peb)
    except MemoryAccessError:
        raise KdError(f"error 1 InitTypeRead( nt!_PEB at {_hex(peb)})") from None
    data = {"address": peb, "fields": dict(info.fields), "ldr_readable": info.ldr_readable,
            "modules": [{"base": m.base, "timestamp": m.timestamp, "path": m.path}
                        for m in info.modules],
            "strings": dict(info.strings)}
    return Result(render_peb(info), data)


TEB_LABELS = (
    ("ExceptionList", "NtTib.ExceptionList"), ("StackBase", "NtTib.StackBase"),
    ("StackLimit", "NtTib.StackLimit"), ("SubSystemTib", "NtTib.SubSystemTib"),
    ("FiberData", "NtTib.FiberData"), ("ArbitraryUserPointer", "NtTib.ArbitraryUserPointer"),
    ("Self", "NtTib.Self"), ("EnvironmentPointer", "EnvironmentPointer"),
)


@command("!teb", syntax="!teb [address]",
         help="Show a thread environment block (default: the current thread's), read in "
              "the implicit process's address space.")
def teb_cmd(s, args: str) -> Result:
    teb = _address_arg(s, args)
    if teb is None:
        teb = s.reader.field("_KTHREAD", s.current_thread(), "Teb")
    if not teb:
        raise KdError("TEB NULL...")
    r = process_reader(s, s.current_process())
    try:
        values = {label: r.field("_TEB", teb, path) for label, path in TEB_LABELS}
        pid = r.field("_TEB", teb, "ClientId.UniqueProcess")
        tid = r.field("_TEB", teb, "ClientId.UniqueThread")
        values.update({
            "RpcHandle": r.field("_TEB", teb, "ActiveRpcHandle"),
            "Tls Storage": r.field("_TEB", teb, "ThreadLocalStoragePointer"),
            "PEB Address": r.field("_TEB", teb, "ProcessEnvironmentBlock"),
            "LastErrorValue": r.field("_TEB", teb, "LastErrorValue"),
            "LastStatusValue": r.field("_TEB", teb, "LastStatusValue"),
            "Count Owned Locks": r.field("_TEB", teb, "CountOfOwnedCriticalSections"),
            "HardErrorMode": r.field("_TEB", teb, "HardErrorMode"),
        })
    except MemoryAccessError:
        raise KdError(f"error InitTypeRead( TEB ) at {_hex(teb)}") from None
    width = len("ArbitraryUserPointer: ")
    out = [f"TEB at {_hex(teb)}"]
    for label, _ in TEB_LABELS:
        out.append(f"    {label + ':':<{width}}{_hex(values[label])}")
    out.append(f"    {'ClientId:':<{width}}{_hex(pid)} . {_hex(tid)}")
    out.append(f"    {'RpcHandle:':<{width}}{_hex(values['RpcHandle'])}")
    out.append(f"    {'Tls Storage:':<{width}}{_hex(values['Tls Storage'])}")
    out.append(f"    {'PEB Address:':<{width}}{_hex(values['PEB Address'])}")
    out.append(f"    {'LastErrorValue:':<{width}}{values['LastErrorValue']}")
    out.append(f"    {'LastStatusValue:':<{width}}{values['LastStatusValue']:x}")
    out.append(f"    {'Count Owned Locks:':<{width}}{values['Count Owned Locks']}")
    out.append(f"    {'HardErrorMode:':<{width}}{values['HardErrorMode']}")
    data = dict(values, address=teb, client_id=[pid, tid])
    return Result(out, data)
