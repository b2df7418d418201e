"""Assembly for pool tests' drivers: calls that allocate into and free from the driver's
globals, and a wait for the test to say go.  Bind the tag a test uses with
functools.partial."""

from __future__ import annotations


def alloc(size: str, into: str = "", *, tag: int, pool: int = 0) -> str:
    """ExAllocatePoolWithTag(pool, size, tag), the block's address stored at [into]."""
    save = f"    mov     qword ptr [{into}], rax\n" if into else ""
    return f"""
    mov     r8d, {tag:#x}
    mov     rdx, {size}
    mov     ecx, {pool}
    call    nt!ExAllocatePoolWithTag
""" + save


def free(block: str, *, tag: int) -> str:
    """ExFreePoolWithTag of the block whose address is at [block]."""
    return f"""
    mov     edx, {tag:#x}
    mov     rcx, qword ptr [{block}]
    call    nt!ExFreePoolWithTag
"""


def wait_go(label: str) -> str:
    """Park until the test sets Go: the test looks at memory between the two halves."""
    return f"""
{label}:
    cmp     qword ptr [Go], 0
    je      {label}
"""
