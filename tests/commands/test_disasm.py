"""`u` / `ub` / current-instruction rendering over raw code bytes in a fake memory."""

from __future__ import annotations

from commands.disasm import disassemble, disassemble_before, disassemble_one
from commands.target import MemoryAccessError
from tests.commands.fakes import ModuleSymbols


class Memory:
    def __init__(self) -> None:
        self.bytes: dict[int, int] = {}

    def write(self, address: int, data: bytes | str) -> int:
        if isinstance(data, str):
            data = bytes.fromhex(data.replace(" ", ""))
        for i, b in enumerate(data):
            self.bytes[address + i] = b
        return address + len(data)

    def read(self, address: int, size: int) -> bytes:
        out = bytearray()
        for i in range(size):
            if address + i not in self.bytes:
                raise MemoryAccessError(address + i)
            out.append(self.bytes[address + i])
        return bytes(out)


NT = 0xFFFFF80240C00000
SUBTREE = 0xFFFFF80240D322F0


def subtree_memory() -> Memory:
    mem = Memory()
    mem.write(SUBTREE, "4883ec28 cc cc cc cc cc")
    mem.write(SUBTREE + 9, "488b4810 eb07 488bc1 488b4910 4885c9 75f4 c3 c3")
    return mem


SYMS = ModuleSymbols([("nt", NT, 0x1000000)],
               [("nt", "RtlSubtreePredecessor", SUBTREE), ("nt", "RtlNext", SUBTREE + 0x1C)])


def test_u_layout():
    lines, nxt = disassemble(subtree_memory().read, SYMS, SUBTREE + 9)
    assert lines == [
        "nt!RtlSubtreePredecessor+0x9:",
        "fffff802`40d322f9 488b4810        mov     rcx,qword ptr [rax+10h]",
        "fffff802`40d322fd eb07            jmp     "
        "nt!RtlSubtreePredecessor+0x16 (fffff802`40d32306)",
        "fffff802`40d322ff 488bc1          mov     rax,rcx",
        "fffff802`40d32302 488b4910        mov     rcx,qword ptr [rcx+10h]",
        "fffff802`40d32306 4885c9          test    rcx,rcx",
        "fffff802`40d32309 75f4            jne     "
        "nt!RtlSubtreePredecessor+0xf (fffff802`40d322ff)",
        "fffff802`40d3230b c3              ret",
        "nt!RtlNext:",
        "fffff802`40d3230c c3              ret",
    ]
    assert nxt == SUBTREE + 0x1D


def test_u_count_and_continuation():
    mem = subtree_memory()
    lines, nxt = disassemble(mem.read, SYMS, SUBTREE + 9, 2)
    assert len(lines) == 3 and nxt == SUBTREE + 0xF
    lines, _ = disassemble(mem.read, SYMS, nxt, 1)
    assert lines == ["nt!RtlSubtreePredecessor+0xf:",
                     "fffff802`40d322ff 488bc1          mov     rax,rcx"]


NTFS = 0xFFFFF80208400000
CHANGE = 0xFFFFF802084D9033 - 0x363
WRITE_LOG = 0xFFFFF802084D6B20
NTFS_SYMS = ModuleSymbols([("Ntfs", NTFS, 0x200000)],
                    [("Ntfs", "NtfsChangeAttributeValue", CHANGE), ("Ntfs", "NtfsWriteLog",
                                                                     WRITE_LOG)])


def test_ub_lands_on_the_address():
    mem = Memory()
    mem.write(CHANGE, bytes([0x90]) * 0x363)
    end = mem.write(CHANGE + 0x363, "48897c2420 41b907000000 4c8b8424e8000000 4d8b00 488b5130"
                                    " 488b8c24d0000000 e8c6daffff 4c8bbc24a8000000")
    mem.write(end, "c3")
    lines, nxt = disassemble_before(mem.read, NTFS_SYMS, end)
    assert lines == [
        "Ntfs!NtfsChangeAttributeValue+0x363:",
        "fffff802`084d9033 48897c2420      mov     qword ptr [rsp+20h],rdi",
        "fffff802`084d9038 41b907000000    mov     r9d,7",
        "fffff802`084d903e 4c8b8424e8000000 mov     r8,qword ptr [rsp+0E8h]",
        "fffff802`084d9046 4d8b00          mov     r8,qword ptr [r8]",
        "fffff802`084d9049 488b5130        mov     rdx,qword ptr [rcx+30h]",
        "fffff802`084d904d 488b8c24d0000000 mov     rcx,qword ptr [rsp+0D0h]",
        "fffff802`084d9055 e8c6daffff      call    Ntfs!NtfsWriteLog (fffff802`084d6b20)",
        "fffff802`084d905a 4c8bbc24a8000000 mov     r15,qword ptr [rsp+0A8h]",
    ]
    assert nxt == end


def test_ub_prefers_a_start_that_lands_exactly():
    mem = Memory()
    base = 0xFFFFF80240E00000
    # Bytes that decode differently depending on where decoding starts.
    code = "b848894c24 4889542410 4c89442418 c3"
    end = mem.write(base, code)
    syms = ModuleSymbols([("nt", NT, 0x1000000)], [("nt", "Fn", base)])
    lines, _ = disassemble_before(mem.read, syms, end, 2)
    assert lines == [
        "nt!Fn+0xa:",
        "fffff802`40e0000a 4c89442418      mov     qword ptr [rsp+18h],r8",
        "fffff802`40e0000f c3              ret",
    ]


DRIVER = 0xFFFFF8073D050000
DRIVER_SYMS = ModuleSymbols([("Driver", DRIVER, 0x3000)])


def test_module_without_symbols_and_rip_relative_memory():
    mem = Memory()
    mem.write(DRIVER + 0x1000, "48895c2408 4889742418 55 57 4156 488d6c24b9 4881ecf0000000")
    mem.write(DRIVER + 0x1066, "0f114d1f 48ffc0 6644393442 75f6 66894c4505 ff15c90f0000")
    lines, _ = disassemble(mem.read, DRIVER_SYMS, DRIVER + 0x1000, 7)
    assert lines == [
        "Driver+0x1000:",
        "fffff807`3d051000 48895c2408      mov     qword ptr [rsp+8],rbx",
        "fffff807`3d051005 4889742418      mov     qword ptr [rsp+18h],rsi",
        "fffff807`3d05100a 55              push    rbp",
        "fffff807`3d05100b 57              push    rdi",
        "fffff807`3d05100c 4156            push    r14",
        "fffff807`3d05100e 488d6c24b9      lea     rbp,[rsp-47h]",
        "fffff807`3d051013 4881ecf0000000  sub     rsp,0F0h",
    ]
    lines, _ = disassemble(mem.read, DRIVER_SYMS, DRIVER + 0x1066, 6)
    assert lines[1:] == [
        "fffff807`3d051066 0f114d1f        movups  xmmword ptr [rbp+1Fh],xmm1",
        "fffff807`3d05106a 48ffc0          inc     rax",
        "fffff807`3d05106d 6644393442      cmp     word ptr [rdx+rax*2],r14w",
        "fffff807`3d051072 75f6            jne     Driver+0x106a (fffff807`3d05106a)",
        "fffff807`3d051074 66894c4505      mov     word ptr [rbp+rax*2+5],cx",
        "fffff807`3d051079 ff15c90f0000    call    qword ptr [Driver+0x2048 (fffff807`3d052048)]",
    ]


def test_immediates_strings_and_odd_opcodes():
    mem = Memory()
    base = 0xFFFFF80240F00000
    mem.write(base, "b89a0000c0 4883e4f0 48b8efbeaddeefbeadde f348ab a4 cc 0f0b 06 c3")
    syms = ModuleSymbols([("nt", NT, 0x1000000)], [("nt", "Odd", base)])
    lines, nxt = disassemble(mem.read, syms, base, 9)
    assert lines == [
        "nt!Odd:",
        "fffff802`40f00000 b89a0000c0      mov     eax,0C000009Ah",
        "fffff802`40f00005 4883e4f0        and     rsp,0FFFFFFFFFFFFFFF0h",
        "fffff802`40f00009 48b8efbeaddeefbeadde mov     rax,0DEADBEEFDEADBEEFh",
        "fffff802`40f00013 f348ab          rep stos qword ptr [rdi]",
        "fffff802`40f00016 a4              movs    byte ptr [rdi],byte ptr [rsi]",
        "fffff802`40f00017 cc              int     3",
        "fffff802`40f00018 0f0b            ud2",
        "fffff802`40f0001a 06              ???",
        "fffff802`40f0001b c3              ret",
    ]
    assert nxt == base + 0x1C


def test_unreadable_memory_and_no_symbols():
    mem = Memory()
    page = 0xFFFFF803712E5000
    mem.write(page - 2, "eb00")
    lines, nxt = disassemble(mem.read, None, page - 2, 3)
    assert lines == [
        "fffff803`712e4ffe eb00            jmp     fffff803`712e5000",
        "fffff803`712e5000 ??              ???",
        "fffff803`712e5001 ??              ???",
    ]
    assert nxt == page + 2


def test_current_instruction_with_effective_address():
    mem = Memory()
    fault = 0xFFFFF80060DA1981
    mem.write(fault, "8b03")
    syms = ModuleSymbols([("myfault", 0xFFFFF80060DA0000, 0x8000)])
    lines, nxt = disassemble_one(mem.read, syms, fault, {"rbx": 0, "rip": fault})
    assert lines == [
        "myfault+0x1981:",
        "fffff800`60da1981 8b03            mov     eax,dword ptr [rbx]"
        " ds:00000000`00000000=????????",
    ]
    assert nxt == fault + 2
    # Without registers: no annotation.
    assert disassemble_one(mem.read, syms, fault, None)[0][1].endswith("dword ptr [rbx]")


def test_effective_address_selector_value_and_symbol():
    mem = Memory()
    at = 0xFFFFF8076624F3D4
    syms = ModuleSymbols([("nt", 0xFFFFF80766000000, 0x1000000)],
                   [("nt", "RtlpHpVsFreeChunkInsert", at - 0x1B4), ("nt", "KiInitialProcess",
                                                                    0xFFFFF80766830B40)])
    mem.write(at, "3300")
    regs = {"rax": 0x4141414141414139, "ds": 0x2B, "ss": 0x18, "rsp": 0xFFFFA1088A4AEE30}
    lines, _ = disassemble_one(mem.read, syms, at, regs)
    assert lines[1] == ("fffff807`6624f3d4 3300            xor     eax,dword ptr [rax]"
                        " ds:002b:41414141`41414139=????????")
    # A readable qword that is a symbol prints {symbol (address)}; stack operands use ss.
    mem.write(regs["rsp"] + 8, (0xFFFFF80766830B40).to_bytes(8, "little"))
    mem.write(at, "488b442408")
    lines, _ = disassemble_one(mem.read, syms, at, regs)
    assert lines[1] == ("fffff807`6624f3d4 488b442408      mov     rax,qword ptr [rsp+8]"
                        " ss:0018:ffffa108`8a4aee38={nt!KiInitialProcess (fffff807`66830b40)}")
    mem.write(regs["rsp"] + 8, (0x1234).to_bytes(8, "little"))
    lines, _ = disassemble_one(mem.read, syms, at, {**regs, "ss": 0})
    assert lines[1].endswith(" ss:ffffa108`8a4aee38=0000000000001234")
    # lea computes an address but reads nothing: no annotation.
    mem.write(at, "488d442408")
    lines, _ = disassemble_one(mem.read, syms, at, regs)
    assert lines[1] == "fffff807`6624f3d4 488d442408      lea     rax,[rsp+8]"
    # A byte operand shows two digits.
    mem.write(at, "8a4001")
    mem.write(0x4141414141414139 + 1, b"\x7f")
    lines, _ = disassemble_one(mem.read, syms, at, regs)
    assert lines[1].endswith("mov     al,byte ptr [rax+1] ds:002b:41414141`4141413a=7f")
