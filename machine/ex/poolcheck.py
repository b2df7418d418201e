"""The pool's consistency checks and the bug checks they raise.

The pool trusts nothing it did not just write: before it unlinks a free block it checks
that block's links, before it links one in it checks the list head, and before it frees
a block it checks the headers around it.  A failed check raises `PoolCorruption`, which
the nt pool routine turns into KeBugCheckEx with the stop code and parameters of
commands/data/bugcheck-subcodes.tsv.
"""

from __future__ import annotations

BAD_POOL_HEADER = 0x19
BAD_POOL_CALLER = 0xC2

# BAD_POOL_HEADER subcodes (parameter 1)
LIST_LINKS_CORRUPT = 0x3  # (entry, entry->Flink->Blink, entry->Blink->Flink)
NEIGHBOURS_DISAGREE = 0x5  # (one entry, reserved, the other entry)
PREVIOUS_SIZE_TOO_LARGE = 0x6  # (entry, reserved, entry)
BLOCK_SIZE_ZERO = 0x8  # (0, reserved, entry)
BLOCK_SIZE_TOO_LARGE = 0x9  # (entry, reserved, entry)
FREED_HEADER_MODIFIED = 0xD  # reserved; here (header, its first ULONG, size expected or 0)
NEXT_PREVIOUS_SIZE_WRONG = 0x20  # (entry, next entry, reserved: the entry's first ULONG)
NO_TRACKING_ENTRY = 0x22  # (address freed, reserved, reserved)

# BAD_POOL_CALLER subcodes (parameter 1)
ALREADY_FREED = 0x7  # (reserved, header contents, address)
WRONG_TAG = 0xA  # (address, allocator's tag, tag freed with)
USER_ADDRESS = 0x40  # (address, start of system space, 0)
INVALID_ADDRESS = 0x46  # (address, 0, 0)

SYSTEM_RANGE_START = 0xFFFF800000000000  # MmSystemRangeStart on x64
LIST_ENTRY_SIZE = 0x10


class PoolCorruption(Exception):
    """A check failed: the bug check the pool raises for it."""

    def __init__(self, code: int, params: tuple[int, int, int, int]) -> None:
        super().__init__(f"bugcheck {code:#x} {params[0]:#x}")
        self.code = code
        self.params = params


def bad_header(subcode: int, p2: int = 0, p3: int = 0, p4: int = 0) -> PoolCorruption:
    return PoolCorruption(BAD_POOL_HEADER, (subcode, p2, p3, p4))


def bad_caller(subcode: int, p2: int = 0, p3: int = 0, p4: int = 0) -> PoolCorruption:
    return PoolCorruption(BAD_POOL_CALLER, (subcode, p2, p3, p4))


def _read_back(mem, link: int, offset: int) -> int:
    """What following a link reads.  A link that leads nowhere readable (a use after free
    wrote a non-pointer over it) is reported as the link itself, which shows the bytes
    that were written there."""
    value = mem.peek_u64(link + offset)
    return link if value is None else value


def check_entry(mem, entry: int) -> None:
    """Before unlinking: both neighbours must point back at the entry (subcode 3)."""
    flink, blink = mem.read_u64(entry), mem.read_u64(entry + 8)
    forward = _read_back(mem, flink, 8)
    backward = _read_back(mem, blink, 0)
    if forward != entry or backward != entry:
        raise bad_header(LIST_LINKS_CORRUPT, entry, forward, backward)


def check_head(mem, head: int) -> None:
    """Before linking in at a list head: its neighbours must point back at it."""
    check_entry(mem, head)
