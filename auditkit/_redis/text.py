"""Redis replies as text: the one place bytes become `str`."""

from __future__ import annotations

from typing import Any

__all__ = ["text"]


def text(value: Any) -> str | None:
    """`value` as text: bytes decoded as UTF-8 (an invalid byte kept as `\\xNN`), None kept.

    Keys, IDs and names come back as bytes from a binary-safe client and as str from a
    decoding one; either way the caller gets str. Nothing is lost: `backslashreplace`
    shows a byte that is not UTF-8 instead of failing or dropping it.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)
