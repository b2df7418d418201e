"""Doubly linked `_LIST_ENTRY` lists in simulated memory (InitializeListHead and friends)."""

from __future__ import annotations


def initialize_list_head(space, head: int) -> None:
    space.write_u64(head, head)
    space.write_u64(head + 8, head)


def insert_tail_list(space, head: int, entry: int) -> None:
    blink = space.read_u64(head + 8)
    space.write_u64(entry, head)
    space.write_u64(entry + 8, blink)
    space.write_u64(blink, entry)
    space.write_u64(head + 8, entry)


def insert_head_list(space, head: int, entry: int) -> None:
    flink = space.read_u64(head)
    space.write_u64(entry, flink)
    space.write_u64(entry + 8, head)
    space.write_u64(flink + 8, entry)
    space.write_u64(head, entry)


def remove_entry_list(space, entry: int) -> None:
    flink = space.read_u64(entry)
    blink = space.read_u64(entry + 8)
    space.write_u64(blink, flink)
    space.write_u64(flink + 8, blink)


def iterate_list(space, head: int, limit: int = 1_000_000):
    """Entry addresses of a list, head excluded."""
    entry = space.read_u64(head)
    n = 0
    while entry != head and n < limit:
        yield entry
        entry = space.read_u64(entry)
        n += 1


def push_entry_list(space, head: int, entry: int) -> None:
    """Singly linked push (`_SINGLE_LIST_ENTRY`)."""
    space.write_u64(entry, space.read_u64(head))
    space.write_u64(head, entry)
