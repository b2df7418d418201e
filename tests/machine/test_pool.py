"""Pool blocks carry real headers; freeing checks them the way the pool does."""

from __future__ import annotations

from machine.ex.pool import NONPAGED_POOL, POOL_HEADER_SIZE, tag_value
from machine.types.view import Struct
from tests.machine.probe import boot_probe, start_system_thread

ALLOC_TWO = """
    sub     rsp, 28h
    mov     r8d, 74736554h          ; 'Test'
    mov     edx, 40h
    xor     ecx, ecx                ; NonPagedPool
    call    nt!ExAllocatePoolWithTag
    mov     qword ptr [BlockA], rax
    mov     r8d, 74736554h
    mov     edx, 40h
    xor     ecx, ecx
    call    nt!ExAllocatePoolWithTag
    mov     qword ptr [BlockB], rax
"""
ROUTINES = {
    "DoubleFree": ALLOC_TWO + """
    mov     edx, 74736554h
    mov     rcx, qword ptr [BlockA]
    call    nt!ExFreePoolWithTag
    mov     edx, 74736554h
    mov     rcx, qword ptr [BlockA]
    call    nt!ExFreePoolWithTag
df_park:
    jmp     df_park
""",
    "Overrun": ALLOC_TWO + """
    mov     rdi, qword ptr [BlockA]
    mov     eax, 4Fh                ; 'O', as NotMyFault writes it
    mov     ecx, 50h                ; 0x10 bytes past the end: over B's pool header
    rep     stosb
    mov     edx, 74736554h
    mov     rcx, qword ptr [BlockA]
    call    nt!ExFreePoolWithTag
ov_park:
    jmp     ov_park
""",
    "WrongTag": ALLOC_TWO + """
    mov     edx, 656E6F4Eh          ; 'None'
    mov     rcx, qword ptr [BlockA]
    call    nt!ExFreePoolWithTag
wt_park:
    jmp     wt_park
""",
}
GLOBALS = {"BlockA": 8, "BlockB": 8}


def crash(routine: str):
    m = boot_probe("pooler", ROUTINES, GLOBALS, cpus=1)
    start_system_thread(m, 0x8000, m.sym(f"pooler!{routine}"))
    result = m.run(100_000)
    assert result.reason == "bugcheck"
    return m


def test_blocks_have_pool_headers_with_tag_size_and_type():
    m = boot_probe("pooler", ROUTINES, GLOBALS, cpus=1)
    a = m.pool.allocate(NONPAGED_POOL, 0x40, "Test")
    b = m.pool.allocate(NONPAGED_POOL, 0x40, "Test")
    ha = Struct(m.kspace, "_POOL_HEADER", a - POOL_HEADER_SIZE)
    hb = Struct(m.kspace, "_POOL_HEADER", b - POOL_HEADER_SIZE)
    assert ha.get("PoolTag") == tag_value("Test") == 0x74736554
    assert ha.get("BlockSize") == 5 and ha.get("PoolType") == 1  # 0x50 bytes, in use
    assert b == a + 0x50 and hb.get("PreviousSize") == 5


def test_freeing_a_block_twice_is_bad_pool_caller_7():
    m = crash("DoubleFree")
    assert m.bugcheck.code == 0xC2
    p1, _, _, address = m.bugcheck.params
    assert p1 == 7 and address == m.kspace.read_u64(m.sym("pooler!BlockA"))


def test_freeing_with_another_tag_is_bad_pool_caller_a():
    m = crash("WrongTag")
    assert m.bugcheck.code == 0xC2
    assert m.bugcheck.params[0] == 0xA
    assert m.bugcheck.params[2:] == (0x74736554, 0x656E6F4E)


def test_an_overrun_into_the_next_header_is_found_at_free_as_bad_pool_header():
    m = crash("Overrun")
    a = m.kspace.read_u64(m.sym("pooler!BlockA"))
    assert m.bugcheck.code == 0x19
    assert m.bugcheck.params[:3] == (0x20, a - POOL_HEADER_SIZE, a + 0x40)
    # the next header really holds the fill pattern
    assert m.kspace.read(a + 0x40, 4) == b"OOOO"


OVERRUN_TEMPLATE = """
    sub     rsp, 28h
    mov     r8d, 74736554h                  ; 'Test'
    mov     edx, 40h
    xor     ecx, ecx                        ; NonPagedPool
    call    nt!ExAllocatePoolWithTag
    mov     qword ptr [BlockA], rax
    mov     rdi, rax
    mov     eax, 4Fh
    mov     ecx, 50h                        ; 0x10 bytes too many
    rep     stosb
sp_park:
    jmp     sp_park
"""


def test_special_pool_catches_an_overrun_at_the_first_byte_past_the_block():
    from machine.scenario import boot_scenario, parse_scenario
    from tests.machine.probe import probe_scenario

    text = probe_scenario("pooler", {"Overrun": OVERRUN_TEMPLATE}, GLOBALS, cpus=1)
    text = text.replace("cpus = 1\n", 'cpus = 1\nverifier = ["pooler"]\n')
    m = boot_scenario(parse_scenario(text, "pooler.toml"))
    start_system_thread(m, 0x8000, m.sym("pooler!Overrun"))
    assert m.run(100_000).reason == "bugcheck"
    block = m.kspace.read_u64(m.sym("pooler!BlockA"))
    assert m.pool.is_special(block) and (block + 0x40) & 0xFFF == 0  # ends at its page end
    assert m.bugcheck.code == 0xD6
    address, write, rip, _ = m.bugcheck.params
    assert address == block + 0x40 and write == 1
    assert m.sym("pooler!Overrun") < rip < m.sym("pooler!Overrun") + 0x40
