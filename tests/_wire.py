"""Producers' wire formats, written byte for byte from their published layouts, for tests
that must not depend on the producer library being installed."""

from __future__ import annotations

import struct

FASTSTREAM_MAGIC = b"\x89BIN\r\n\x1a\n"


def faststream_frame(headers: dict[str, str], body: bytes) -> bytes:
    """A FastStream (0.6+) binary message frame, version 1, as its Redis stream field holds.

    Big-endian: the magic bytes, a 2-byte version, 4-byte offsets of the header block and
    of the body, a 2-byte header count, each header's name and value as 2-byte-length-
    prefixed UTF-8, then the body.
    """
    blob = b"".join(
        struct.pack(">H", len(k.encode()))
        + k.encode()
        + struct.pack(">H", len(v.encode()))
        + v.encode()
        for k, v in headers.items()
    )
    headers_start = len(FASTSTREAM_MAGIC) + 2 + 8
    data_start = headers_start + 2 + len(blob)
    return (
        FASTSTREAM_MAGIC
        + struct.pack(">H", 1)
        + struct.pack(">II", headers_start, data_start)
        + struct.pack(">H", len(headers))
        + blob
        + body
    )
