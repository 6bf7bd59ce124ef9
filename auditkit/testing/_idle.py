"""Consumers' idle times, which no Redis command sets: the stream's DUMP, patched, RESTOREd.

A consumer's `seen-time` (XINFO CONSUMERS `idle`) is set to "now" by every command that
names it, seeding included. The DUMP payload of a stream (Redis's RDB serialisation) holds
it as 8 bytes per consumer after the groups' pending entries; they are rewritten to the
time the sample says, the payload's CRC-64 recomputed, and the key RESTOREd in place. Only
the stream encodings of Redis 6.2 to 7.x are known; another leaves the times as they are.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

__all__ = ["set_consumer_idle"]

# RDB_TYPE_STREAM_LISTPACKS (6.2), _2 (7.0: first id, max deleted id, entries added and
# each group's entries read) and _3 (7.2: each consumer's active time too).
_STREAM_TYPES = {15: 1, 19: 2, 21: 3}
_POLY = 0x95AC9329AC4BC9B5  # Redis's CRC-64 (Jones), reflected


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _table()


def crc64(data: bytes) -> int:
    """Redis's CRC-64, as DUMP payloads end with."""
    crc = 0
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def set_consumer_idle(client: Any, stream: str, idle: Mapping[str, Mapping[str, int]]) -> bool:
    """Set each `idle[group][consumer]` (ms) as the consumer's idle time; False when the
    server's stream encoding is not one known here (nothing is changed then)."""
    if not any(idle.values()):
        return True
    payload = client.dump(stream)
    if payload is None or len(payload) < 11 or payload[0] not in _STREAM_TYPES:
        return False
    body, footer = payload[:-10], payload[-10:-8]
    if struct.unpack("<Q", payload[-8:])[0] != crc64(payload[:-8]):
        return False
    seconds, micros = client.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    patched = bytearray(body)
    try:
        consumers = _Reader(body, _STREAM_TYPES[body[0]]).consumers()
    except (ValueError, IndexError, struct.error):
        return False  # an encoding this reader does not know: leave the key as it is
    for group, consumer, offsets in consumers:
        wanted = idle.get(group, {}).get(consumer)
        if wanted is None:
            continue
        for offset in offsets:
            patched[offset : offset + 8] = struct.pack("<Q", max(0, now - int(wanted)))
    data = bytes(patched) + footer
    client.restore(stream, 0, data + struct.pack("<Q", crc64(data)), replace=True)
    return True


class _Reader:
    """Walks a stream's DUMP body to where each consumer's times are."""

    def __init__(self, data: bytes, version: int) -> None:
        self.data = data
        self.version = version
        self.at = 1  # after the type byte

    def consumers(self) -> list[tuple[str, str, list[int]]]:
        found = []
        for _ in range(self.length()):  # listpacks: master ID, then the listpack
            self.string()
            self.string()
        self.length()  # entries
        self.ids(1)  # last ID
        if self.version >= 2:
            self.ids(2)  # first ID, max deleted ID
            self.length()  # entries added
        for _ in range(self.length()):
            group = self.string().decode("utf-8", "surrogateescape")
            self.ids(1)
            if self.version >= 2:
                self.length()  # entries read
            for _ in range(self.length()):  # the group's pending entries
                self.at += 16 + 8  # ID, delivery time
                self.length()  # delivery count
            for _ in range(self.length()):
                name = self.string().decode("utf-8", "surrogateescape")
                offsets = [self.at]
                self.at += 8
                if self.version >= 3:
                    offsets.append(self.at)
                    self.at += 8
                held = self.length()  # the consumer's pending IDs
                self.at += 16 * held
                found.append((group, name, offsets))
        return found

    def ids(self, count: int) -> None:
        for _ in range(2 * count):
            self.length()

    def length(self) -> int:
        first = self.data[self.at]
        kind = first >> 6
        if kind == 0:
            self.at += 1
            return first & 0x3F
        if kind == 1:
            value = ((first & 0x3F) << 8) | self.data[self.at + 1]
            self.at += 2
            return value
        if first == 0x80:
            value = int(struct.unpack(">I", self.data[self.at + 1 : self.at + 5])[0])
            self.at += 5
            return value
        if first == 0x81:
            value = int(struct.unpack(">Q", self.data[self.at + 1 : self.at + 9])[0])
            self.at += 9
            return value
        raise ValueError(f"unexpected length byte {first:#x} at {self.at}")

    def string(self) -> bytes:
        first = self.data[self.at]
        if first >> 6 != 3:
            size = self.length()
            value = self.data[self.at : self.at + size]
            self.at += size
            return value
        self.at += 1
        encoding = first & 0x3F
        if encoding in (0, 1, 2):  # an integer in 1, 2 or 4 bytes
            size = 1 << encoding
            number = int.from_bytes(self.data[self.at : self.at + size], "little", signed=True)
            self.at += size
            return str(number).encode()
        if encoding == 3:  # LZF-compressed (listpacks, and long names that compress)
            compressed = self.length()
            self.length()
            packed = self.data[self.at : self.at + compressed]
            self.at += compressed
            return _lzf(packed)
        raise ValueError(f"unexpected string encoding {encoding} at {self.at}")


def _lzf(data: bytes) -> bytes:
    """LZF decompression (Redis compresses RDB strings longer than 20 bytes with it)."""
    out = bytearray()
    at = 0
    while at < len(data):
        control = data[at]
        at += 1
        if control < 32:  # a literal run
            out += data[at : at + control + 1]
            at += control + 1
            continue
        size = control >> 5
        if size == 7:
            size += data[at]
            at += 1
        ref = len(out) - ((control & 0x1F) << 8) - 1 - data[at]
        at += 1
        for _ in range(size + 2):
            out.append(out[ref])
            ref += 1
    return bytes(out)
