"""Redis replies as text: the one place bytes become `str`, and keys become bytes again.

Two kinds of text come back from Redis. Keys are names auditkit sends back: `key_text`
keeps every byte (a byte that is not UTF-8 as a surrogate escape, `b"\\xff"` -> `"\\udcff"`,
as Python does for file names), and auditkit's connections send such a `str` as the same
bytes (`KeyBytes`). Everything else (types, group and consumer names, values shown in a
report) is `text`: a byte that is not UTF-8 is shown as `\\xNN`. `shown` turns a key into
that display form, for messages and tables printed to a terminal.
"""

from __future__ import annotations

import codecs
from typing import Any

__all__ = ["SHOWN", "KeyBytes", "is_utf8", "key_bytes", "key_text", "shown", "text"]

SHOWN = "auditkit.shown"
"""An error handler for `str.encode` and text streams: a byte carried as a surrogate
escape is written `\\xNN`, any other character the encoding cannot hold `\\uNNNN`."""


def text(value: Any) -> str | None:
    """`value` as text: bytes decoded as UTF-8 (an invalid byte kept as `\\xNN`), None kept.

    For what is shown, not sent back: a type, a group or consumer name. Keys come back
    through `key_text` instead.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def key_text(value: bytes | str) -> str:
    """A key as auditkit's `str`: UTF-8, with each byte that is not UTF-8 as a surrogate
    escape, so that `key_bytes(key_text(raw)) == raw` for any bytes."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def key_bytes(key: str) -> bytes:
    """The bytes of a key as Redis holds them (the inverse of `key_text`)."""
    return key.encode("utf-8", "surrogateescape")


def is_utf8(key: str) -> bool:
    """Whether a key's bytes are UTF-8 (it holds no surrogate escape)."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(key: str) -> str:
    """A key for display: a byte that is not UTF-8 written `\\xNN` (`orders:\\xff`).

    Shown keys can be ambiguous (`orders:\\xff` is also a key of eight characters);
    only the `str` from `key_text` names the key.
    """
    return key.encode("utf-8", SHOWN).decode("utf-8")


def _escape(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    out = []
    for char in error.object[error.start : error.end]:
        point = ord(char)
        if 0xDC80 <= point <= 0xDCFF:
            out.append(f"\\x{point - 0xDC00:02x}")
        elif point <= 0xFF:
            out.append(f"\\x{point:02x}")
        elif point <= 0xFFFF:
            out.append(f"\\u{point:04x}")
        else:
            out.append(f"\\U{point:08x}")
    return "".join(out), error.end


codecs.register_error(SHOWN, _escape)


class KeyBytes:
    """A redis-py connection mixin: `str` arguments are sent as `key_bytes` gives them.

    redis-py's `encoding_errors` does not reach command arguments when hiredis packs
    them (hiredis encodes `str` strictly), so the arguments are made bytes first.
    """

    def _construct_command_packer(self, packer: Any) -> Any:
        return _KeyPacker(super()._construct_command_packer(packer))  # type: ignore[misc]


class _KeyPacker:
    """Wraps redis-py's command packer; `str` arguments become UTF-8 with surrogate escapes."""

    def __init__(self, packer: Any) -> None:
        self._packer = packer

    def pack(self, *args: Any) -> Any:
        return self._packer.pack(*(key_bytes(a) if isinstance(a, str) else a for a in args))
