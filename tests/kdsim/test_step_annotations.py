"""The annotations kd appends to the current instruction when the target stops (`p`, `t`,
a breakpoint hit) and in `r`: a memory operand's segment, effective address and current
value (`ds:002b:<ea>=<value>`), and whether a conditional branch will be taken
(`[br=1]` / `[br=0]`).  Each annotation is checked against what the machine then does:
the value against memory read from the machine, the branch against where the next step
lands."""

from __future__ import annotations

import re

from commands.session import Session
from kdsim.live import LiveTarget
from tests.conftest import run
from tests.machine.probe import boot_probe, start_system_thread

ROUTINES = {
    "Brancher": """
    mov     ecx, 3
b_loop:
    mov     qword ptr [Spins], rcx
    cmp     rcx, 2
    jne     b_skip
    lock inc qword ptr [Count]
b_skip:
    dec     rcx
    jnz     b_loop
    mov     ecx, 2
l_loop:
    loop    l_loop
    jrcxz   b_park
    nop
b_park:
    pause
    jmp     b_park
""",
    "Signed": """
    mov     eax, -1
    cmp     eax, 1
    jl      g_less
    nop
g_less:
    cmp     eax, 1
    jb      g_below
    nop
g_below:
    xor     eax, eax
    mov     rax, qword ptr [rax]
    ret
""",
}
GLOBALS = {"Spins": 8, "Count": 8}
LINE = re.compile(r"^[0-9a-f]{8}`[0-9a-f]{8} [0-9a-f]+ +(\S+)(?: +(.*))?$")
BRANCH = re.compile(r"\((?P<target>[0-9a-f]{8}`[0-9a-f]{8})\) \[br=(?P<taken>[01])\]$")
MEMORY = re.compile(r" (?P<seg>ds|ss):(?P<sel>[0-9a-f]{4}:)?(?P<ea>[0-9a-f]{8}`[0-9a-f]{8})"
                    r"=(?P<value>[0-9a-f?]+)$")


def session_at(routine: str):
    m = boot_probe("st", ROUTINES, GLOBALS)
    start_system_thread(m, 0x4000, m.sym(f"st!{routine}"))
    target = LiveTarget(m)
    s = Session(target, processor=target.stop_processor)
    s.run_budget = 200_000
    run(s, f"bp st!{routine}")
    out = run(s, "g")
    assert out[0] == "Breakpoint 0 hit"
    return m, s


def rip(s) -> int:
    return s.target.registers(s.processor)["rip"]


def from_backticks(text: str) -> int:
    return int(text.replace("`", ""), 16)


def test_conditional_branches_say_whether_the_step_takes_them():
    m, s = session_at("Brancher")
    seen = {"0": 0, "1": 0}
    mnemonics = set()
    pending = None
    for _ in range(24):
        line = run(s, "p")[-1]
        if pending is not None:
            taken = rip(s) == from_backticks(pending["target"])
            assert pending["taken"] == str(int(taken)), pending.string
            seen[pending["taken"]] += 1
        pending = BRANCH.search(line)
        if pending is not None:
            mnemonics.add(LINE.match(line).group(1))
    # jne both ways, the loop instruction both ways, jrcxz taken
    assert seen["0"] >= 3 and seen["1"] >= 4
    assert {"jne", "loop", "jrcxz"} <= mnemonics


def test_signed_and_unsigned_conditions_read_the_flags():
    m, s = session_at("Signed")
    out = run(s, "p 2")
    assert re.search(r"jl +st!Signed\+0x\w+ \(\S+\) \[br=1\]$", out[-1])  # -1 < 1 signed
    out = run(s, "p 3")
    assert re.search(r"jb +st!Signed\+0x\w+ \(\S+\) \[br=0\]$", out[-1])  # 0xffffffff > 1


def test_memory_operands_show_the_value_before_the_instruction_runs():
    m, s = session_at("Brancher")
    spins = m.sym("st!Spins")
    shown = []
    for _ in range(20):
        line = run(s, "p")[-1]
        match = MEMORY.search(line)
        if match is None:
            continue
        ea = from_backticks(match["ea"])
        assert match["seg"] == "ds" and match["sel"] == "002b:"  # the kernel's flat ds
        size = len(match["value"]) // 2
        assert int(match["value"], 16) == int.from_bytes(m.kspace.read(ea, size), "little")
        if ea == spins:
            shown.append(int(match["value"], 16))
    # Spins is written with rcx = 3, 2, 1: each store shows the value left by the last one
    assert shown[:3] == [0, 3, 2]


def test_register_display_carries_the_same_annotations():
    m, s = session_at("Brancher")
    stepped = run(s, "p 3")
    assert BRANCH.search(stepped[-1])
    out = run(s, "r")
    assert out[-2:] == stepped[-2:]
    plain = run(s, "u . L1")[-1]  # u shows no annotation
    assert "[br=" not in plain and stepped[-1].startswith(plain + " ")


def test_unreadable_operands_print_question_marks():
    m, s = session_at("Signed")
    out = []
    for _ in range(12):
        out = run(s, "p")
        if "mov     rax,qword ptr [rax]" in out[-1]:
            break
    assert out[-1].endswith("ds:002b:00000000`00000000=????????????????")


def test_unconditional_flow_has_no_branch_annotation():
    m, s = session_at("Brancher")
    for _ in range(30):
        line = run(s, "p")[-1]
        assert LINE.match(line), line
        mnemonic = LINE.match(line).group(1)
        if mnemonic in ("jmp", "pause", "nop", "dec", "cmp", "mov"):
            assert "[br=" not in line
