"""keylog-filter: inputext.sys attaches a filter over \\Device\\KeyboardClass0 and copies
every key out of completed reads in its completion routine (medium, find)."""

from __future__ import annotations

import pytest

from machine.rtl.lists import iterate_list
from machine.types.view import Struct
from tests.library import labkit

NAME = "keylog-filter"
RIGHT = ".submit driver=inputext.sys routine=IkxReadComplete cause=device-filter"
WRONG = ".submit driver=kbdclass.sys routine=KeyboardClassRead cause=irp-not-completed"
SCAN_CODES = bytes([0x23, 0x16, 0x31, 0x14, 0x12, 0x13, 0x03, 0x1C])  # "hunter2", Enter


@pytest.fixture(scope="module")
def m():
    return labkit.stopped(NAME).machine


def g(m, symbol: str) -> int:
    return m.kspace.read_u64(m.sym(symbol))


def test_the_filter_sits_on_the_keyboard_stack_and_copies_every_key(m):
    assert m.bugcheck is None
    keyboard, filt = g(m, "kbdclass!DeviceObject"), g(m, "inputext!FilterDevice")
    kbd = Struct(m.kspace, "_DEVICE_OBJECT", keyboard)
    flt = Struct(m.kspace, "_DEVICE_OBJECT", filt)
    # Attached: the filter is the top of the keyboard's stack, one location deeper.
    assert kbd.get("AttachedDevice") == filt and flt.get("AttachedDevice") == 0
    dox = Struct(m.kspace, "_DEVOBJ_EXTENSION", flt.get("DeviceObjectExtension"))
    assert dox.get("AttachedTo") == keyboard and g(m, "inputext!LowerDevice") == keyboard
    assert (kbd.get("StackSize"), flt.get("StackSize")) == (1, 2)
    # It found the keyboard by name: a file object on the class device, referenced.
    file_obj = Struct(m.kspace, "_FILE_OBJECT", g(m, "inputext!KeyboardFile"))
    assert file_obj.get("DeviceObject") == keyboard == g(m, "inputext!KeyboardDevice")
    # A read is pending in kbdclass, issued by csrss's thread and queued on it; the
    # location the filter filled for kbdclass carries its completion routine.
    irp_addr = g(m, "kbdclass!PendingRead")
    irp = Struct(m.kspace, "_IRP", irp_addr)
    thread = irp.get("Tail.Overlay.Thread")
    owner = Struct(m.kspace, "_KTHREAD", thread).get("Process")
    assert m.kspace.read(Struct(m.kspace, "_EPROCESS", owner).addr("ImageFileName"), 9) \
        == b"csrss.exe"
    irp_list = Struct(m.kspace, "_ETHREAD", thread).addr("IrpList")
    assert irp.addr("ThreadListEntry") in list(iterate_list(m.kspace, irp_list))
    assert irp.get("CurrentLocation") == 1
    bottom = Struct(m.kspace, "_IO_STACK_LOCATION", irp.get("Tail.Overlay.CurrentStackLocation"))
    assert bottom.get("DeviceObject") == keyboard and bottom.get("MajorFunction") == 3
    assert bottom.get("CompletionRoutine") == m.sym("inputext!IkxReadComplete")
    assert bottom.get("Control") & 0xE0 == 0xE0  # invoked on success, error and cancel
    # Every key delivered so far went through the completion routine into its buffer.
    delivered = g(m, "kbdclass!KeysDelivered")
    assert delivered >= 8 and g(m, "inputext!CaptureCount") == delivered
    captured = m.kspace.read(g(m, "inputext!CaptureBuffer"), delivered)
    assert captured == (SCAN_CODES * 4)[:delivered]


def solution(m) -> list[str]:
    return ["!devstack \\Device\\KeyboardClass0", f"!devobj {g(m, 'inputext!FilterDevice'):x}",
            "!drvobj inputext 2", "!irpfind", f"!irp {g(m, 'kbdclass!PendingRead'):x}"]


def test_the_solution_reveals_the_key_and_is_graded(m, tmp_path):
    out = labkit.transcript(NAME, [*solution(m), RIGHT, WRONG], tmp_path)
    parts = labkit.outputs(out)
    filt, keyboard = g(m, "inputext!FilterDevice"), g(m, "kbdclass!DeviceObject")
    # !devstack: the filter's device above the keyboard class device.
    stack = parts[1].splitlines()
    assert stack[1].split()[:2] == [f"{filt:x}", "\\Driver\\inputext"]
    assert stack[2].split()[:4] == [">", f"{keyboard:x}", "\\Driver\\kbdclass", "00000000"]
    # !devobj: attached to the keyboard class device.
    assert f"AttachedTo (Lower) {keyboard:x} \\Driver\\kbdclass" in parts[2]
    # !drvobj: its own read dispatch routine.
    assert "[03] IRP_MJ_READ" in parts[3] and "inputext!IkxDispatchRead" in parts[3]
    # !irpfind: the pending read at kbdclass; !irp: its completion routine is inputext's.
    assert f"{g(m, 'kbdclass!PendingRead'):x}" in parts[4] and "\\Driver\\kbdclass" in parts[4]
    assert "\\Driver\\kbdclass\tinputext!IkxReadComplete" in parts[5]
    assert f"{m.sym('inputext!IkxReadComplete'):x}-{filt:x} Success Error Cancel" in parts[5]
    labkit.assert_right_then_wrong(out, RIGHT, WRONG)


def test_same_seed_same_transcript(m, tmp_path):
    commands = solution(m)
    assert labkit.transcript(NAME, commands, tmp_path / "a") == \
        labkit.transcript(NAME, commands, tmp_path / "b")
