"""`dt` rendering against the real type catalog and a fake memory."""

from __future__ import annotations

import hashlib
import re

import pytest

from commands.dt import UnknownType, render_dt, render_list_entry_walk
from machine.types.catalog import load_catalog
from tests.commands.fakes import ModuleSymbols, PagedMemory


@pytest.fixture(scope="module")
def types():
    return load_catalog()


NT_BASE = 0xFFFFF80211000000
DRV_BASE = 0xFFFFF8023FBC0000
SYMBOLS = ModuleSymbols(
    [("nt", NT_BASE, 0x1000000), ("BasicDrv", DRV_BASE, 0x7000)],
    [("nt", "IopInvalidDeviceRequest", 0xFFFFF8021134BB10),
     ("nt", "KiDpcRoutine", NT_BASE + 0x2000)],
)


# -- type only -----------------------------------------------------------------------------

IRP = [
    "nt!_IRP",
    "   +0x000 Type             : Int2B",
    "   +0x002 Size             : Uint2B",
    "   +0x004 AllocationProcessorNumber : Uint2B",
    "   +0x006 Reserved         : Uint2B",
    "   +0x008 MdlAddress       : Ptr64 _MDL",
    "   +0x010 Flags            : Uint4B",
    "   +0x018 AssociatedIrp    : <anonymous-tag>",
    "   +0x020 ThreadListEntry  : _LIST_ENTRY",
    "   +0x030 IoStatus         : _IO_STATUS_BLOCK",
    "   +0x040 RequestorMode    : Char",
    "   +0x041 PendingReturned  : UChar",
    "   +0x042 StackCount       : Char",
    "   +0x043 CurrentLocation  : Char",
    "   +0x044 Cancel           : UChar",
    "   +0x045 CancelIrql       : UChar",
    "   +0x046 ApcEnvironment   : Char",
    "   +0x047 AllocationFlags  : UChar",
    "   +0x048 UserIosb         : Ptr64 _IO_STATUS_BLOCK",
    "   +0x050 UserEvent        : Ptr64 _KEVENT",
    "   +0x058 Overlay          : <anonymous-tag>",
    "   +0x068 CancelRoutine    : Ptr64     void ",
    "   +0x070 UserBuffer       : Ptr64 Void",
    "   +0x078 Tail             : <anonymous-tag>",
]

IO_STACK_LOCATION = [
    "nt!_IO_STACK_LOCATION",
    "   +0x000 MajorFunction    : UChar",
    "   +0x001 MinorFunction    : UChar",
    "   +0x002 Flags            : UChar",
    "   +0x003 Control          : UChar",
    "   +0x008 Parameters       : <anonymous-tag>",
    "   +0x028 DeviceObject     : Ptr64 _DEVICE_OBJECT",
    "   +0x030 FileObject       : Ptr64 _FILE_OBJECT",
    "   +0x038 CompletionRoutine : Ptr64     long ",
    "   +0x040 Context          : Ptr64 Void",
]

DEVICE_OBJECT = [
    "nt!_DEVICE_OBJECT",
    "   +0x000 Type             : Int2B",
    "   +0x002 Size             : Uint2B",
    "   +0x004 ReferenceCount   : Int4B",
    "   +0x008 DriverObject     : Ptr64 _DRIVER_OBJECT",
    "   +0x010 NextDevice       : Ptr64 _DEVICE_OBJECT",
    "   +0x018 AttachedDevice   : Ptr64 _DEVICE_OBJECT",
    "   +0x020 CurrentIrp       : Ptr64 _IRP",
    "   +0x028 Timer            : Ptr64 _IO_TIMER",
    "   +0x030 Flags            : Uint4B",
    "   +0x034 Characteristics  : Uint4B",
    "   +0x038 Vpb              : Ptr64 _VPB",
    "   +0x040 DeviceExtension  : Ptr64 Void",
    "   +0x048 DeviceType       : Uint4B",
    "   +0x04c StackSize        : Char",
    "   +0x050 Queue            : <anonymous-tag>",
    "   +0x098 AlignmentRequirement : Uint4B",
    "   +0x0a0 DeviceQueue      : _KDEVICE_QUEUE",
    "   +0x0c8 Dpc              : _KDPC",
    "   +0x108 ActiveThreadCount : Uint4B",
    "   +0x110 SecurityDescriptor : Ptr64 Void",
    "   +0x118 DeviceLock       : _KEVENT",
    "   +0x130 SectorSize       : Uint2B",
    "   +0x132 Spare1           : Uint2B",
    "   +0x138 DeviceObjectExtension : Ptr64 _DEVOBJ_EXTENSION",
    "   +0x140 Reserved         : Ptr64 Void",
]

DRIVER_OBJECT = [
    "   +0x000 Type             : Int2B",
    "   +0x002 Size             : Int2B",
    "   +0x008 DeviceObject     : Ptr64 _DEVICE_OBJECT",
    "   +0x010 Flags            : Uint4B",
    "   +0x018 DriverStart      : Ptr64 Void",
    "   +0x020 DriverSize       : Uint4B",
    "   +0x028 DriverSection    : Ptr64 Void",
    "   +0x030 DriverExtension  : Ptr64 _DRIVER_EXTENSION",
    "   +0x038 DriverName       : _UNICODE_STRING",
    "   +0x048 HardwareDatabase : Ptr64 _UNICODE_STRING",
    "   +0x050 FastIoDispatch   : Ptr64 _FAST_IO_DISPATCH",
    "   +0x058 DriverInit       : Ptr64     long ",
    "   +0x060 DriverStartIo    : Ptr64     void ",
    "   +0x068 DriverUnload     : Ptr64     void ",
    "   +0x070 MajorFunction    : [28] Ptr64     long",
]


@pytest.mark.parametrize("name, expected", [
    ("_IRP", IRP),
    ("_IO_STACK_LOCATION", IO_STACK_LOCATION),
    ("_DEVICE_OBJECT", DEVICE_OBJECT),
])
def test_type_only_exact(types, name, expected):
    assert render_dt(types, name) == expected


def test_module_qualified_name_prints_no_header(types):
    # kd prints `nt!_TYPE` only when it had to search for the type.
    assert render_dt(types, "nt!_DRIVER_OBJECT") == DRIVER_OBJECT
    assert render_dt(types, "_DRIVER_OBJECT") == ["nt!_DRIVER_OBJECT"] + DRIVER_OBJECT
    assert render_dt(types, "nt!_irp")[0] == "   +0x000 Type             : Int2B"
    assert render_dt(types, "nt!_IRP", header=True) == IRP


# (line count, sha256 of the joined lines) of `dt _X`, checked line by line against the
# Windows 10 19045 x64 layouts; a few lines of each are spelled out below.
BIG_TYPES = {
    "_EPROCESS": (236, "46afe8364125c5d12578c18502a0e3e9e5839e144f9a556390870d6f2a3f6572"),
    "_KTHREAD": (205, "613c85a2a5b93027017429471c8388e14c140c4ed2d0293ed092d99fb8e5fd11"),
    "_KPRCB": (358, "55844434db75009831a9887976b618bc90034fec0a0bf8716ff8e49f93da6603"),
    "_ETHREAD": (121, "bf51f958f4bdea0568be963fe81664fdee792b5536ab0fc8c16b68f3f55ff239"),
    "_KPROCESS": (55, "6d7f4a11f66743559bb9a1d1785a6c0c67eb915a60e997b8d3e43cc51884e23b"),
}


@pytest.mark.parametrize("name", sorted(BIG_TYPES))
def test_type_only_big_types(types, name):
    lines = render_dt(types, name)
    count, digest = BIG_TYPES[name]
    assert len(lines) == count
    assert hashlib.sha256("\n".join(lines).encode()).hexdigest() == digest


def test_type_only_excerpts(types):
    eprocess = render_dt(types, "nt!_EPROCESS")
    assert eprocess[:6] == [
        "   +0x000 Pcb              : _KPROCESS",
        "   +0x438 ProcessLock      : _EX_PUSH_LOCK",
        "   +0x440 UniqueProcessId  : Ptr64 Void",
        "   +0x448 ActiveProcessLinks : _LIST_ENTRY",
        "   +0x458 RundownProtect   : _EX_RUNDOWN_REF",
        "   +0x460 Flags2           : Uint4B",
    ]
    for line in (
        "   +0x460 DefaultPagePriority : Pos 12, 3 Bits",
        "   +0x470 ProcessQuotaUsage : [2] Uint8B",
        "   +0x5a8 ImageFileName    : [15] UChar",
        "   +0x9d0 MitigationFlagsValues : <anonymous-tag>",
    ):
        assert line in eprocess
    kthread = render_dt(types, "nt!_KTHREAD")
    assert kthread[:4] == [
        "   +0x000 Header           : _DISPATCHER_HEADER",
        "   +0x018 SListFaultAddress : Ptr64 Void",
        "   +0x020 QuantumTarget    : Uint8B",
        "   +0x028 InitialStack     : Ptr64 Void",
    ]
    assert "   +0x072 Alerted          : [2] UChar" in kthread
    assert "   +0x074 SystemAffinityActive : Pos 3, 1 Bit" in kthread
    kprcb = render_dt(types, "nt!_KPRCB")
    for line in (
        "   +0x008 CurrentThread    : Ptr64 _KTHREAD",
        "   +0x30a0 CurrentDpcRoutine : Ptr64     void ",
        "   +0x7f40 Cycles           : [4] [2] Uint8B",
        "   +0x84a8 DpcWatchdogProfile : Ptr64 Ptr64 Void",
        "   +0x8738 StibpPairingTrace : <anonymous-tag>",
    ):
        assert line in kprcb


LINE = re.compile(r"^(?P<indent>(   )+)\+0x(?P<off>[0-9a-f]{3,}) (?P<name>\S+) +: (?P<value>.*)$")


def test_every_type_renders_in_kd_layout(types):
    for name in types.names():
        t = types.get(name)
        lines = render_dt(types, name)
        assert lines[0] == f"nt!{t.name}"
        if t.kind == "enum":
            assert all(re.fullmatch(r"   \S+ = 0n-?\d+", line) for line in lines[1:])
            continue
        assert len(lines) == len(t.fields) + 1
        for f, line in zip(t.fields, lines[1:], strict=True):
            m = LINE.match(line)
            assert m, line
            assert m["indent"] == "   "
            assert int(m["off"], 16) == f.offset
            assert m["name"] == f.name
            column = line.index(" ", 4) + 1
            assert line[column:column + max(16, len(f.name)) + 3] == f"{f.name:<16} : "
            assert m["value"].rstrip() == f.type
            assert m["value"].endswith(" ") == f.type.startswith("Ptr64     ")


def test_every_type_renders_over_zeroed_and_unreadable_memory(types):
    mem = PagedMemory()
    base = 0xFFFF800000000000
    mem.map(base, 0x10000)
    for name in types.names():
        t = types.get(name)
        if t.kind == "enum":
            continue
        zeroed = render_dt(types, "nt!" + name, base, mem.read, SYMBOLS)
        assert len(zeroed) == len(t.fields) + (1 if name in ("_LIST_ENTRY", "_UNICODE_STRING",
                                                             "_STRING", "_LARGE_INTEGER",
                                                             "_ULARGE_INTEGER") else 0)
        assert not any("??" in line for line in zeroed), name
        gone = render_dt(types, "nt!" + name, 0x1000, mem.read, SYMBOLS)
        failed = any("??" in line or "memory read error at" in line for line in gone)
        assert failed == gone[-1].startswith("Memory read error 000000000000"), name


def test_recursive_type_only(types):
    lines = render_dt(types, "nt!_DRIVER_OBJECT", fields=["DriverName"], recurse=1)
    assert lines == [
        "   +0x038 DriverName : _UNICODE_STRING",
        "      +0x000 Length     : Uint2B",
        "      +0x002 MaximumLength : Uint2B",
        "      +0x008 Buffer     : Ptr64 Wchar",
    ]
    # Pointers are followed too: _IO_STACK_LOCATION.DeviceObject -> _DEVICE_OBJECT.
    lines = render_dt(types, "nt!_IO_STACK_LOCATION", recurse=1)
    i = lines.index("   +0x028 DeviceObject     : Ptr64 _DEVICE_OBJECT")
    assert lines[i + 1] == "      +0x000 Type             : Int2B"
    assert "      +0x000 Create           : <anonymous-tag>" in lines


def test_enum_type_lists_values(types):
    lines = render_dt(types, "_POOL_TYPE")
    assert lines[:4] == [
        "nt!_POOL_TYPE",
        "   NonPagedPool = 0n0",
        "   NonPagedPoolExecute = 0n0",
        "   PagedPool = 0n1",
    ]


def test_unknown_type(types):
    with pytest.raises(UnknownType) as e:
        render_dt(types, "nt!_FOO")
    assert str(e.value) == "Symbol nt!_FOO not found."
    assert isinstance(e.value, ValueError)


# -- with an address ---------------------------------------------------------------------

DRV = 0xFFFFE70968A36320


def driver_object_memory() -> PagedMemory:
    mem = PagedMemory()
    mem.map(DRV, 0x150)
    mem.w(DRV + 0x00, 4)
    mem.w(DRV + 0x02, 336)
    mem.d(DRV + 0x10, 2)
    mem.q(DRV + 0x18, DRV_BASE)
    mem.d(DRV + 0x20, 0x7000)
    mem.q(DRV + 0x28, 0xFFFFE709675684C0)
    mem.q(DRV + 0x30, 0xFFFFE70968A36470)
    mem.unicode_string(DRV + 0x38, "\\Driver\\BasicDrv", 0xFFFFE70968A36500)
    hwdb = 0xFFFFF80211D53710
    mem.unicode_string(hwdb, "\\REGISTRY\\MACHINE\\HARDWARE\\DESCRIPTION\\SYSTEM", hwdb + 0x10)
    mem.q(DRV + 0x48, hwdb)
    mem.q(DRV + 0x58, DRV_BASE + 0x1480)
    mem.q(DRV + 0x68, DRV_BASE + 0x1270)
    for i in range(28):
        mem.q(DRV + 0x70 + 8 * i, 0xFFFFF8021134BB10)
    return mem


def test_driver_object_values(types):
    mem = driver_object_memory()
    assert render_dt(types, "nt!_DRIVER_OBJECT", DRV, mem.read, SYMBOLS) == [
        "   +0x000 Type             : 0n4",
        "   +0x002 Size             : 0n336",
        "   +0x008 DeviceObject     : (null) ",
        "   +0x010 Flags            : 2",
        "   +0x018 DriverStart      : 0xfffff802`3fbc0000 Void",
        "   +0x020 DriverSize       : 0x7000",
        "   +0x028 DriverSection    : 0xffffe709`675684c0 Void",
        "   +0x030 DriverExtension  : 0xffffe709`68a36470 _DRIVER_EXTENSION",
        '   +0x038 DriverName       : _UNICODE_STRING "\\Driver\\BasicDrv"',
        "   +0x048 HardwareDatabase : 0xfffff802`11d53710 _UNICODE_STRING"
        ' "\\REGISTRY\\MACHINE\\HARDWARE\\DESCRIPTION\\SYSTEM"',
        "   +0x050 FastIoDispatch   : (null) ",
        "   +0x058 DriverInit       : 0xfffff802`3fbc1480     long  +0",
        "   +0x060 DriverStartIo    : (null) ",
        "   +0x068 DriverUnload     : 0xfffff802`3fbc1270     void  +0",
        "   +0x070 MajorFunction    : [28] 0xfffff802`1134bb10     long "
        " nt!IopInvalidDeviceRequest+0",
    ]


def test_recursion_expands_embedded_structs_and_strings(types):
    mem = driver_object_memory()
    lines = render_dt(types, "nt!_DRIVER_OBJECT", DRV, mem.read, SYMBOLS, ["DriverName"],
                      recurse=1)
    assert lines == [
        '   +0x038 DriverName : _UNICODE_STRING "\\Driver\\BasicDrv"',
        "      +0x000 Length     : 0x20",
        "      +0x002 MaximumLength : 0x22",
        '      +0x008 Buffer     : 0xffffe709`68a36500  "\\Driver\\BasicDrv"',
    ]


def test_trailing_dot_expands_without_type_name(types):
    mem = driver_object_memory()
    lines = render_dt(types, "nt!_DRIVER_OBJECT", DRV, mem.read, SYMBOLS, ["DriverName."])
    assert lines == [
        '   +0x038 DriverName  :  "\\Driver\\BasicDrv"',
        "      +0x000 Length      : 0x20",
        "      +0x002 MaximumLength : 0x22",
        '      +0x008 Buffer      : 0xffffe709`68a36500  "\\Driver\\BasicDrv"',
    ]


def test_function_pointer_with_symbol_displacement(types):
    mem = PagedMemory()
    dpc = 0xFFFF910000001000
    mem.map(dpc, 0x40)
    mem.q(dpc + 0x18, NT_BASE + 0x2010)
    lines = render_dt(types, "nt!_KDPC", dpc, mem.read, SYMBOLS, ["DeferredRoutine"])
    assert lines == [
        "   +0x018 DeferredRoutine : 0xfffff802`11002010     void  nt!KiDpcRoutine+0x10"]


EPROCESS = 0xFFFF9189527E9080


def eprocess_memory() -> PagedMemory:
    mem = PagedMemory()
    mem.map(EPROCESS, 0xA40)
    mem.q(EPROCESS + 0x440, 4)
    mem.q(EPROCESS + 0x448, 0xFFFFF80211C1E5F0)
    mem.q(EPROCESS + 0x450, 0xFFFF8A8FB8FDA628)
    mem.d(EPROCESS + 0x460, 0xD000)
    mem.q(EPROCESS + 0x468, 0x01D536F99B1B4902)
    mem.q(EPROCESS + 0x470, 0x3838)
    mem.q(EPROCESS + 0x490, 0x000002010B3AD000)
    mem.q(EPROCESS + 0x498, 9)
    mem.write(EPROCESS + 0x5A8, b"System\0")
    mem.b(EPROCESS + 0x5B7, 2)
    mem.d(EPROCESS + 0x5F0, 7)
    mem.d(EPROCESS + 0x5F4, 0xC5670914)
    mem.d(EPROCESS + 0x7D4, 259)
    return mem


def test_eprocess_value_formats(types):
    mem = eprocess_memory()
    lines = render_dt(types, "nt!_EPROCESS", EPROCESS, mem.read, SYMBOLS)
    for line in (
        "   +0x000 Pcb              : _KPROCESS",
        "   +0x438 ProcessLock      : _EX_PUSH_LOCK",
        "   +0x440 UniqueProcessId  : 0x00000000`00000004 Void",
        "   +0x448 ActiveProcessLinks : _LIST_ENTRY [ 0xfffff802`11c1e5f0 - 0xffff8a8f`b8fda628 ]",
        "   +0x460 Flags2           : 0xd000",
        "   +0x460 JobNotReallyActive : 0y0",
        "   +0x460 DefaultPagePriority : 0y101",
        "   +0x460 PrimaryTokenFrozen : 0y1",
        "   +0x460 ProcessExecutionState : 0y00",
        "   +0x468 CreateTime       : _LARGE_INTEGER 0x01d536f9`9b1b4902",
        "   +0x470 ProcessQuotaUsage : [2] 0x3838",
        "   +0x490 PeakVirtualSize  : 0x00000201`0b3ad000",
        "   +0x498 VirtualSize      : 9",
        "   +0x4c0 MmReserved       : 0",
        "   +0x4d8 RotateInProgress : (null) ",
        '   +0x5a8 ImageFileName    : [15]  "System"',
        "   +0x5b7 PriorityClass    : 0x2 ''",
        "   +0x5f0 ActiveThreads    : 7",
        "   +0x5f4 ImagePathHash    : 0xc5670914",
        "   +0x5fc LastThreadExitStatus : 0n0",
        "   +0x840 ExitTime         : _LARGE_INTEGER 0x0",
        "   +0x7d4 ExitStatus       : 0n259",
        "   +0x9d0 MitigationFlagsValues : <anonymous-tag>",
    ):
        assert line in lines, line
    assert not lines[-1].startswith("Memory read error")


def test_field_selection_narrows_the_name_column(types):
    mem = eprocess_memory()
    lines = render_dt(types, "nt!_EPROCESS", EPROCESS, mem.read, SYMBOLS,
                      ["UniqueProcessId", "ImageFileName"])
    assert lines == [
        "   +0x440 UniqueProcessId : 0x00000000`00000004 Void",
        '   +0x5a8 ImageFileName   : [15]  "System"',
    ]
    lines = render_dt(types, "_EPROCESS", EPROCESS, mem.read, SYMBOLS, ["imagefilename"])
    assert lines == ["nt!_EPROCESS", '   +0x5a8 ImageFileName : [15]  "System"']
    lines = render_dt(types, "nt!_EPROCESS", EPROCESS, mem.read, SYMBOLS, ["Image*"])
    assert [line.split()[1] for line in lines] == [
        "ImageNotifyDone", "ImageFilePointer", "ImageFileName", "ImagePathHash"]
    assert render_dt(types, "nt!_EPROCESS", EPROCESS, mem.read, SYMBOLS, ["Nothing"]) == [
        "Cannot find specified field members."]


def test_dotted_field_expands_a_list_entry(types):
    mem = PagedMemory()
    thread = 0xFFFFC38E3D0E9080
    irp = 0xFFFFC38E3D311C70
    mem.map(thread, 0x900)
    mem.q(thread + 0x4B0, irp)
    mem.q(thread + 0x4B8, 0xFFFFC38E3A85E4A0)
    mem.q(irp, 0xFFFFC38E3A85E4A0)
    mem.q(irp + 8, thread + 0x4B0)
    lines = render_dt(types, "nt!_ETHREAD", thread, mem.read, SYMBOLS, ["IrpList.Flink"])
    assert lines == [
        "   +0x4b0 IrpList       :  [ 0xffffc38e`3d311c70 - 0xffffc38e`3a85e4a0 ]",
        "      +0x000 Flink         : 0xffffc38e`3d311c70 _LIST_ENTRY"
        " [ 0xffffc38e`3a85e4a0 - 0xffffc38e`3d0e9530 ]",
    ]


def test_chars_enums_bitfields_and_pointer_to_pointer(types):
    mem = PagedMemory()
    irp = 0xFFFF800000010000
    mem.map(irp, 0xD0)
    mem.w(irp, 6)
    mem.w(irp + 2, 0x118)
    mem.b(irp + 0x40, 1)
    mem.b(irp + 0x47, 6)
    mem.b(irp + 0x43, 0x77)
    lines = render_dt(types, "nt!_IRP", irp, mem.read, SYMBOLS)
    assert lines[:2] == ["   +0x000 Type             : 0n6", "   +0x002 Size             : 0x118"]
    assert "   +0x040 RequestorMode    : 1 ''" in lines
    assert "   +0x041 PendingReturned  : 0 ''" in lines
    assert "   +0x043 CurrentLocation  : 119 'w'" in lines
    assert "   +0x047 AllocationFlags  : 0x6 ''" in lines
    assert "   +0x068 CancelRoutine    : (null) " in lines

    init = 0xFFFF800000020000
    mem.map(init, 0x80)
    for value, text in ((0x200, "200 ( NonPagedPoolNx )"), (1, "1 ( PagedPool )"),
                        (999, "0x3e7 (No matching name)")):
        mem.d(init + 0x24, value)
        assert render_dt(types, "nt!_OBJECT_TYPE_INITIALIZER", init, mem.read, SYMBOLS,
                         ["PoolType"]) == [f"   +0x024 PoolType : {text}"]

    lock = 0xFFFF800000030000
    mem.q(lock, 0x21)
    assert render_dt(types, "nt!_EX_PUSH_LOCK", lock, mem.read, SYMBOLS) == [
        "   +0x000 Locked           : 0y1",
        "   +0x000 Waiting          : 0y0",
        "   +0x000 Waking           : 0y0",
        "   +0x000 MultipleShared   : 0y0",
        "   +0x000 Shared           : 0y" + "0" * 58 + "10 (0x2)",
        "   +0x000 Value            : 0x21",
        "   +0x000 Ptr              : 0x00000000`00000021 Void",
    ]
    mem.q(lock, 0)
    assert render_dt(types, "nt!_EX_PUSH_LOCK", lock, mem.read, SYMBOLS, ["Shared"]) == [
        "   +0x000 Shared : 0y" + "0" * 60 + " (0)"]

    peb = 0x000000643B114000
    heaps = 0x00007FFC46FA3C40
    mem.map(peb, 0x800)
    mem.q(peb + 0xF0, heaps)
    mem.q(heaps, 0x00000240E4B20000)
    assert render_dt(types, "nt!_PEB", peb, mem.read, SYMBOLS, ["ProcessHeaps"]) == [
        "   +0x0f0 ProcessHeaps : 0x00007ffc`46fa3c40  -> 0x00000240`e4b20000 Void"]


def test_top_level_list_entry_and_unicode_string(types):
    mem = PagedMemory()
    head = 0xFFFF800000040000
    mem.q(head, 0xFFFF800000040100)
    mem.q(head + 8, 0xFFFF800000040200)
    assert render_dt(types, "nt!_LIST_ENTRY", head, mem.read, SYMBOLS)[0] == (
        " [ 0xffff8000`00040100 - 0xffff8000`00040200 ]")
    us = 0xFFFF800000050000
    mem.unicode_string(us, "abc", us + 0x100)
    assert render_dt(types, "nt!_UNICODE_STRING", us, mem.read, SYMBOLS) == [
        ' "abc"',
        "   +0x000 Length           : 6",
        "   +0x002 MaximumLength    : 8",
        '   +0x008 Buffer           : 0xffff8000`00050100  "abc"',
    ]
    mem.q(us + 8, 0x1000)
    assert render_dt(types, "nt!_UNICODE_STRING", us, mem.read, SYMBOLS)[0] == (
        ' "--- memory read error at address 0x00000000`00001000 ---"')


def test_unreadable_memory(types):
    mem = PagedMemory()
    assert render_dt(types, "nt!_IO_STATUS_BLOCK", 0xFFFF800000001000, mem.read, SYMBOLS) == [
        "   +0x000 Status           : ??",
        "   +0x000 Pointer          : ???? ",
        "   +0x008 Information      : ??",
        "Memory read error ffff800000001008",
    ]
    lines = render_dt(types, "nt!_IRP", 0, mem.read, SYMBOLS)
    assert "   +0x020 ThreadListEntry  : _LIST_ENTRY" in lines
    assert "   +0x068 CancelRoutine    : ???? " in lines
    assert lines[-1] == "Memory read error 0000000000000070"


def test_partially_readable_structure(types):
    mem = PagedMemory()
    base = 0xFFFF800000060FF0  # the second half lies on an absent page
    mem.map(base, 0x10)
    mem.q(base, 0x1234)
    lines = render_dt(types, "nt!_KDPC", base, mem.read, SYMBOLS)
    assert lines[0] == "   +0x000 TargetInfoAsUlong : 0x1234"
    assert "   +0x018 DeferredRoutine  : ???? " in lines
    assert lines[-1] == "Memory read error ffff800000061028"


def test_list_entry_walk(types):
    mem = PagedMemory()
    a, b = 0xFFFF800000070000, 0xFFFF800000071000
    for irp, nxt in ((a, b), (b, a)):
        mem.map(irp, 0xD0)
        mem.w(irp, 6)
        mem.q(irp + 0x20, nxt + 0x20)
    lines = render_list_entry_walk(types, "nt!_IRP", a, mem.read, SYMBOLS,
                                   "ThreadListEntry.Flink", ["Type"])
    assert lines == [
        "ThreadListEntry.Flink at 0xffff8000`00070000",
        "---------------------------------------------",
        "   +0x000 Type : 0n6",
        "",
        "ThreadListEntry.Flink at 0xffff8000`00071000",
        "---------------------------------------------",
        "   +0x000 Type : 0n6",
        "",
    ]
