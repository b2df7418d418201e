"""Counted UTF-16 strings (`_UNICODE_STRING`) as kernel code reads them."""

from __future__ import annotations

from machine.types.view import Struct


def read_unicode_string(space, us_addr: int) -> str:
    """The text of the `_UNICODE_STRING` at us_addr: Length bytes at Buffer."""
    us = Struct(space, "_UNICODE_STRING", us_addr)
    return space.read(us.get("Buffer"), us.get("Length")).decode("utf-16-le")
