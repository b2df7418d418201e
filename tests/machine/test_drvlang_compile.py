"""The driver language's parser and compiler, without a machine: every construct
compiles to the assembly expected of it, and every error names its line and column with
one clear message."""

from __future__ import annotations

import re

import pytest

from machine.asm import assemble
from machine.drvlang import DriverLangError, compile_driver, nt_routine_exists, parse
from machine.drvlang import ast as A
from machine.drvlang.emit import hexa
from machine.types.catalog import load_catalog

SOURCES = {
 "syntax_missing_semicolon": "routine F() {\n    let x = 1\n}\n",
 "syntax_bad_char": "routine F() { let x = 1 @ 2; }\n",
 "syntax_eof": "routine F() {\n",
 "unterminated_comment": "/* never closed\nroutine F() {}\n",
 "unknown_name": "routine F() {\n    let x = y;\n}\n",
 "unknown_type": "global G: _NOT_A_TYPE;\n",
 "unknown_field": "routine F(i: *_IRP) {\n    i->Statuss = 1;\n}\n",
 "unknown_sub_field": "routine F(i: *_IRP) {\n    i->IoStatus.Nope = 1;\n}\n",
 "wrong_arg_count": "routine G(a: u32, b: u32) {}\nroutine F() {\n    G(1);\n}\n",
 "duplicate_global": "global A: u32;\nglobal A: u64;\n",
 "duplicate_routine_global": "global F: u32;\nroutine F() {}\n",
 "duplicate_local": "routine F() {\n    let a = 1;\n    let a = 2;\n}\n",
 "duplicate_param": "routine F(a: u32, a: u32) {}\n",
 "break_outside": "routine F() {\n    break;\n}\n",
 "continue_outside": "routine F() {\n    if (1) { continue; }\n}\n",
 "too_large_let": "routine F() {\n    let x: u8 = 300;\n}\n",
 "too_large_global": "global G: u16 = 0x10000;\n",
 "too_large_assign": "global G: i8;\nroutine F() {\n    G = -129;\n}\n",
 "too_large_arg": "routine G(a: u8) {}\nroutine F() {\n    G(256);\n}\n",
 "too_large_literal": "global G: u64 = 0x10000000000000000;\n",
 "assign_constant": "routine F() {\n    STATUS_SUCCESS = 1;\n}\n",
 "assign_routine": "routine F() {\n    F = 1;\n}\n",
 "assign_expr": "routine F(a: u32) {\n    a + 1 = 2;\n}\n",
 "missing_entry": "routine F() {}\n",
 "unknown_nt": "routine F() {\n    nt!KeNoSuchThing();\n}\n",
 "too_many_params": "routine F(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8, i: u8) {}\n",
 "bad_tag": "global G: u32 = 'TooLong';\n",
 "deref_ptr": "routine F(p: ptr) {\n    let x = *p;\n}\n",
 "struct_value": "global D: _KDPC;\nroutine F() {\n    let x = D;\n}\n",
 "arrow_on_int": "routine F(a: u64) {\n    a->Type = 1;\n}\n",
 "register_name": "global rax: u64;\n",
 "array_index_const": "global A: u8[4];\nroutine F() {\n    A[4] = 1;\n}\n",
 "div_zero_const": "global G: u32 = 1 / 0;\n",
 "global_not_const": "global H: u32;\nglobal G: u32 = H;\n",
 "call_arg_count_builtin": "global C: u32;\nroutine F() {\n    InterlockedIncrement(&C, 1);\n}\n",
 "struct_local_type": "routine F() {\n    let x: _KDPC = 0;\n}\n",
}

# (case, line, column, message)
ERRORS = [
    ("syntax_missing_semicolon", 3, 1, "unexpected '}', expected ';', an operator"),
    ("syntax_bad_char", 1, 25, "unexpected character '@'"),
    ("syntax_eof", 2, 1, "unexpected end of input, expected '}', a statement"),
    ("unterminated_comment", 1, 1, 'unterminated comment'),
    ("unknown_name", 2, 13, "unknown name 'y'"),
    ("unknown_type", 1, 11, "unknown type '_NOT_A_TYPE'"),
    ("unknown_field", 2, 8, "_IRP has no field 'Statuss'"),
    ("unknown_sub_field", 2, 17, "_IO_STATUS_BLOCK has no field 'Nope'"),
    ("wrong_arg_count", 3, 5, 'G takes 2 arguments, not 1'),
    ("duplicate_global", 2, 8, "'A' is already declared"),
    ("duplicate_routine_global", 2, 9, "'F' is already declared"),
    ("duplicate_local", 3, 5, "'a' is already declared"),
    ("duplicate_param", 1, 19, "'a' is already declared"),
    ("break_outside", 2, 5, 'break outside a loop'),
    ("continue_outside", 2, 14, 'continue outside a loop'),
    ("too_large_let", 2, 17, 'value 300 does not fit in u8'),
    ("too_large_global", 1, 17, 'value 65536 does not fit in u16'),
    ("too_large_assign", 3, 9, 'value -129 does not fit in i8'),
    ("too_large_arg", 3, 7, 'value 256 does not fit in u8'),
    ("too_large_literal", 1, 17, 'number 0x10000000000000000 does not fit in 64 bits'),
    ("assign_constant", 2, 5, "cannot assign to constant 'STATUS_SUCCESS'"),
    ("assign_routine", 2, 5, "cannot assign to routine 'F'"),
    ("assign_expr", 2, 7, 'cannot assign to this expression'),
    ("missing_entry", 1, 1, 'entry routine DriverEntry is not defined'),
    ("unknown_nt", 2, 5, "unknown routine 'KeNoSuchThing': not in this driver nor in nt"),
    ("too_many_params", 1, 67, 'a routine takes at most 8 parameters'),
    ("bad_tag", 1, 17, "pool tag 'TooLong' must be 1 to 4 ASCII characters"),
    ("deref_ptr", 2, 13, "cannot dereference an untyped ptr: cast it, e.g. (*u32)p, "
                         "or read u8[p] .. u64[p]"),
    ("struct_value", 3, 13, "a _KDPC is a structure: read one of its fields, "
                            "or take its address with &"),
    ("arrow_on_int", 2, 8, "'->' needs a pointer to a structure, not u64"),
    ("register_name", 1, 8, "'rax' is a register or assembler word; "
                            "choose another name for this global"),
    ("array_index_const", 3, 7, 'index 4 is outside u8[4]'),
    ("div_zero_const", 1, 19, 'division by zero'),
    ("global_not_const", 2, 17, "a global's value must be a constant"),
    ("call_arg_count_builtin", 3, 5, 'InterlockedIncrement takes 1 argument, not 2'),
    ("struct_local_type", 2, 12, 'a local must be an integer or a pointer, not _KDPC'),
]


@pytest.mark.parametrize(("case", "line", "column", "message"), ERRORS,
                         ids=[e[0] for e in ERRORS])
def test_each_error_names_its_line_column_and_one_message(case, line, column, message):
    entry = "DriverEntry" if case == "missing_entry" else "F"
    with pytest.raises(DriverLangError) as info:
        compile_driver(SOURCES[case], entry=entry, nt_exists=nt_routine_exists)
    err = info.value
    assert (err.line, err.column, err.message) == (line, column, message)
    assert str(err) == f"{line}:{column}: {message}"


def test_every_error_case_is_listed():
    assert sorted(SOURCES) == sorted(e[0] for e in ERRORS)


# -- parsing ---------------------------------------------------------------------------------

def test_the_parser_builds_plain_ast_objects_with_positions():
    prog = parse("""// a comment
global G: u32 = 5; /* a
  block comment */
global Lock: _KSPIN_LOCK;
global Buf: u8[64];
string Name = "\\Device\\Foo";
routine R(a: u32, irp: *_IRP): i32 {
    let x: u64 = a + 2 * 3;
    x += 1;
    irp->IoStatus.Status = (i32)x;
    if (x < 3 && !a) { return 1; } else if (x) { breakpoint; } else { x = u32[&G]; }
    for i in 0..10 { continue; }
    while (1) { break; }
    call(&R, 1, 2);
    nt!KeBugCheckEx(1, 2, 3, 4, 5);
    asm {
        nop
    }
    return sizeof(_IRP) + 'Fult';
}
""")
    assert [g.name for g in prog.globals] == ["G", "Lock", "Buf"]
    assert prog.globals[2].type == A.TypeName(5, 13, "[]", A.TypeName(5, 13, "u8"), 64)
    assert prog.strings[0].value == "\\Device\\Foo"
    r = prog.routines[0]
    assert (r.name, r.line, r.column, r.end_line) == ("R", 7, 9, 20)
    assert [p.name for p in r.params] == ["a", "irp"]
    assert r.params[1].type.name == "*" and r.params[1].type.target.name == "_IRP"
    kinds = [type(s).__name__ for s in r.body]
    assert kinds == ["Let", "Assign", "Assign", "If", "For", "While", "ExprStmt", "ExprStmt",
                     "Asm", "Return"]
    let = r.body[0]
    assert isinstance(let.value, A.Binary) and let.value.op == "+"
    assert isinstance(let.value.right, A.Binary) and let.value.right.op == "*"  # precedence
    assert r.body[1].op == "+="
    status = r.body[2].target
    assert isinstance(status, A.Field) and status.name == "Status" and not status.arrow
    assert status.base.arrow and status.base.name == "IoStatus"
    branch = r.body[3]
    assert isinstance(branch.otherwise[0], A.If)  # else if
    assert isinstance(r.body[6].expr, A.CallPtr)
    assert r.body[7].expr.nt and r.body[7].expr.name == "KeBugCheckEx"
    assert r.body[8].lines == [(17, "        nop")]
    assert isinstance(r.body[9].value.right, A.Tag)


@pytest.mark.parametrize(("text", "op"), [("a << 2", "<<"), ("a >> 2", ">>"), ("a <= 2", "<="),
                                         ("a != 2", "!="), ("a && b", "&&"), ("a % b", "%")])
def test_two_character_operators_lex_as_one(text, op):
    expr = parse(f"routine F() {{ x = {text}; }}").routines[0].body[0].value
    assert isinstance(expr, A.Binary) and expr.op == op


def test_c_precedence_and_left_associativity():
    expr = parse("routine F() { x = a | b ^ c & d == e < f << g + h * i - j; }"
                 ).routines[0].body[0].value
    ops = []

    def walk(e):
        if isinstance(e, A.Binary):
            ops.append(e.op)
            walk(e.left)
            walk(e.right)

    walk(expr)
    assert ops == ["|", "^", "&", "==", "<", "<<", "-", "+", "*"]


# -- compiling ---------------------------------------------------------------------------------

def routine_code(source: str, name: str = "F") -> list[str]:
    compiled = compile_driver(source)
    return next(r.code for r in compiled.routines if r.name == name).splitlines()


def frame_of(lines: list[str]) -> int:
    match = re.fullmatch(r"    sub rsp, (\w+)", lines[0])
    assert match, lines[0]
    text = match.group(1)
    return int(text[:-1], 16) if text.endswith("h") else int(text)


@pytest.mark.parametrize("source", [
    "routine F() {}",
    "routine F(a: u64) { G(a, 1, 2, 3, 4); }\nroutine G(a: u64, b: u64, c: u64, d: u64, e: u64) {}",
    "routine F() { nt!KeBugCheckEx(1, 2, 3, 4, 5); }",
    "routine F(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8) { let x = a + h; }",
])
def test_one_frame_aligned_for_calls_and_one_epilogue(source):
    lines = routine_code(source)
    frame = frame_of(lines)
    assert frame % 16 == 8 and frame >= 0x28
    assert lines[-3:] == ["F$exit:", f"    add rsp, {lines[0].split()[-1]}", "    ret"]
    body = lines[1:-3]
    assert not any(w in line.split()[:1] for line in body for w in ("push", "pop", "ret"))
    assert not any("rsp" in line.split(",")[0] and "ptr" not in line for line in body)


def test_stack_arguments_go_above_the_home_space_and_parameters_to_slots():
    lines = routine_code("routine F(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64) "
                         "{ nt!KeBugCheckEx(a, b, c, d, f); }")
    frame = frame_of(lines)
    assert frame == 0x58  # 0x20 home + 8 for the stack argument + 6 parameter slots
    assert lines[1:5] == ["    mov qword ptr [rsp+28h], rcx", "    mov qword ptr [rsp+30h], rdx",
                          "    mov qword ptr [rsp+38h], r8", "    mov qword ptr [rsp+40h], r9"]
    # the fifth and sixth parameters are above the return address, in the caller's frame
    assert lines[5] == f"    mov rax, qword ptr [rsp+{hexa(frame + 8 + 0x20)}]"
    assert lines[7] == f"    mov rax, qword ptr [rsp+{hexa(frame + 8 + 0x28)}]"
    assert "    mov qword ptr [rsp+20h], rax" in lines
    assert "    call nt!KeBugCheckEx" in lines


def test_every_return_jumps_to_the_one_epilogue():
    lines = routine_code("routine F(a: u32): u32 { if (a) { return 1; } return 2; }")
    assert lines.count("    jmp F$exit") == 1  # the last return falls through
    assert lines.count("    ret") == 1
    assert lines[-4:-2] == ["    mov eax, 2", "F$exit:"]


def test_constants_fold_from_the_catalog_and_the_defines():
    compiled = compile_driver("""
global A: u32 = CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_NEITHER, FILE_ANY_ACCESS);
global B: u32 = 'Fult';
global C: u64 = sizeof(_IRP);
global D: u32 = SynchronizationEvent + NonPagedPool + PagedPool;
global E: u32 = STATUS_INVALID_DEVICE_REQUEST;
global F: u8 = IRP_MJ_DEVICE_CONTROL;
global G: i32 = -1;
global H: u8 = DISPATCH_LEVEL;
""")
    data = compiled.data.splitlines()

    def value(name: str) -> str:
        return data[data.index(f"{name}:") + 1]

    assert value("A") == "dq 222003h"
    assert value("B") == "dq 746C7546h"  # the tag's characters in memory order
    assert value("C") == f"dq {hexa(load_catalog().get('_IRP').size)}"
    assert value("D") == "dq 2"
    assert value("E") == "dq 0C0000010h"
    assert value("F") == "dq 0Eh"
    assert value("G") == "dq 0FFFFFFFFh"
    assert value("H") == "dq 2"


def test_structure_globals_are_sized_from_the_catalog_and_strings_are_unicode_strings():
    compiled = compile_driver("""
global Dpc: _KDPC;
global Ev: _KEVENT;
global Res: _ERESOURCE;
global T: _KTIMER;
global SpinLock: _KSPIN_LOCK;
global Buf: u8[20];
string Name = "\\Device\\Ab";
""")
    catalog = load_catalog()
    code = assemble(compiled.data, 0x10000)
    labels = code.labels
    order = ["Dpc", "Ev", "Res", "T", "SpinLock", "Buf", "Name"]
    sizes = [catalog.get(n).size for n in ("_KDPC", "_KEVENT", "_ERESOURCE", "_KTIMER")] + [8, 20]
    for name, nxt, size in zip(order[:-1], order[1:], sizes, strict=True):
        assert labels[nxt] - labels[name] == (size + 7) // 8 * 8
    name = labels["Name"] - 0x10000
    text = "\\Device\\Ab"
    assert code.code[name:name + 4] == bytes([2 * len(text), 0, 2 * len(text) + 2, 0])
    buffer = int.from_bytes(code.code[name + 8:name + 16], "little")
    assert buffer == labels["Name_Buffer"]
    start = buffer - 0x10000
    assert code.code[start:start + 2 * len(text)].decode("utf-16-le") == text


def test_asm_blocks_pass_through_verbatim_with_their_source_lines():
    compiled = compile_driver("routine F() {\n    asm {\n        lea rax, [G]\n"
                              "        mov rcx, cr8 ; comment\n    }\n    breakpoint;\n}\n"
                              "global G: u64;\n")
    r = compiled.routines[0]
    lines = r.code.splitlines()
    i = lines.index("    lea rax, [G]")
    assert lines[i + 1] == "    mov rcx, cr8 ; comment"
    assert r.origins[i][0] == 3 and r.origins[i + 1][0] == 4
    assert lines[i + 2] == "    int 3"


def test_interlocked_builtins_are_lock_prefixed_instructions_inline():
    lines = routine_code("""
global C: u32;
global Q: u64;
routine F() {
    InterlockedIncrement(&C);
    InterlockedDecrement(&C);
    InterlockedExchange(&C, 5);
    InterlockedCompareExchange(&Q, 7, 0);
}""")
    assert "    lock xadd dword ptr [rax], ecx" in lines
    assert "    xchg dword ptr [rax], ecx" in lines
    assert "    lock cmpxchg qword ptr [rcx], rdx" in lines
    assert not any(line.startswith("    call") for line in lines)


def test_fields_compile_to_the_catalogs_offsets_and_sizes():
    catalog = load_catalog()
    lines = routine_code("""
routine F(irp: *_IRP, dpc: *_KDPC) {
    irp->IoStatus.Information = 0x1234;
    let sl = irp->Tail.Overlay.CurrentStackLocation;
    let code = sl->Parameters.DeviceIoControl.IoControlCode;
    let kind = dpc->Type;
}""")
    info = catalog.resolve("_IRP", "IoStatus.Information")[0]
    csl = catalog.resolve("_IRP", "Tail.Overlay.CurrentStackLocation")[0]
    ioctl = catalog.resolve("_IO_STACK_LOCATION", "Parameters.DeviceIoControl.IoControlCode")[0]
    assert f"    mov qword ptr [rax+{hexa(info)}], rcx" in lines
    assert f"    mov rax, qword ptr [rax+{hexa(csl)}]" in lines
    assert f"    mov eax, dword ptr [rax+{hexa(ioctl)}]" in lines
    assert "    movzx eax, byte ptr [rax]" in lines  # _KDPC.Type is a UChar at 0


def test_signed_and_unsigned_operations_pick_their_instructions():
    lines = routine_code("""
routine F(a: i32, b: i32, c: u32, d: u32) {
    let q = a / b;
    let r = c / d;
    let s = a >> 1;
    let t = c >> 1;
    if (a < b) { q = 1; }
    if (c < d) { q = 2; }
}""")
    assert "    idiv rcx" in lines and "    div rcx" in lines
    assert "    sar rax, cl" in lines and "    shr rax, cl" in lines
    assert any(line.startswith("    jge ") for line in lines)
    assert any(line.startswith("    jae ") for line in lines)


def test_the_same_source_compiles_to_the_same_text():
    source = "global G: u32;\nroutine F(a: u32): u32 { for i in 0..a { G += i; } return G; }"
    assert compile_driver(source) == compile_driver(source)
