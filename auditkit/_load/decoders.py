"""Payload decoders: from a page's raw payload values to JSON text, extra fields and errors.

JSON payloads go to Arrow's bulk JSON reader as they are. The other formats are turned
into the same thing first: FastStream's binary frame splits into its headers (which
become fields of the entry) and its JSON body; msgpack and a user's callable decode each
value to an object that is written back as JSON. The flat decoder has no payload field:
`type_flat` types the entry's other fields instead (numbers where every value is one).

A value that cannot be decoded keeps its row: its payload is empty and the error says why.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from auditkit._load.envelope import Envelope

__all__ = [
    "FASTSTREAM_MAGIC",
    "Decoded",
    "decode_payloads",
    "encode_faststream_frame",
    "faststream_frame",
    "flat_mixed",
    "payload_texts",
    "type_flat",
]

FASTSTREAM_MAGIC = b"\x89BIN\r\n\x1a\n"
"""The first bytes of a FastStream binary message frame (format version 1)."""

_SNIPPET = 60
_INTEGER = r"^-?(0|[1-9][0-9]*)$"
_INT64_DIGITS = 18  # every integer of up to 18 digits fits in int64
_NUMBER = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$"


@dataclass(slots=True)
class Decoded:
    """A page's payloads after decoding: JSON text per entry, errors, and new fields."""

    payloads: list[bytes | None]
    errors: dict[int, str] = field(default_factory=dict)
    fields: dict[bytes, list[bytes | None]] = field(default_factory=dict)


def decode_payloads(envelope: Envelope, values: list[bytes | None]) -> Decoded:
    """Decode a page's payload field values with the envelope's decoder."""
    decoder = envelope.decoder
    if decoder == "json":
        return Decoded(values)
    if decoder == "faststream":
        return _faststream(values)
    if decoder == "msgpack":
        return _each(values, _msgpack_function(), "msgpack")
    function = envelope.decode_function()
    assert function is not None
    return _each(values, function, envelope.decoder_name)


def payload_texts(envelope: Envelope, values: list[bytes | None]) -> list[bytes | None]:
    """The payload as JSON text, per entry (None where it cannot be decoded)."""
    decoded = decode_payloads(envelope, values)
    return [None if i in decoded.errors else v for i, v in enumerate(decoded.payloads)]


def faststream_frame(value: bytes) -> tuple[dict[str, str], bytes]:
    """A FastStream message's headers and body, from its binary frame or its JSON form.

    The binary frame (FastStream 0.6 and later): the magic bytes, a 2-byte version (1),
    4-byte offsets of the headers and of the body, a 2-byte header count, then each
    header's name and value as 2-byte-length-prefixed UTF-8, then the body. Older
    versions wrote JSON: `{"data": "<body>", "headers": {...}}`. Big-endian throughout.
    """
    if value.startswith(FASTSTREAM_MAGIC):
        offset = len(FASTSTREAM_MAGIC)
        (version,) = struct.unpack_from(">H", value, offset)
        if version != 1:
            raise ValueError(f"FastStream frame version {version} is not known (1 is)")
        headers_start, data_start = struct.unpack_from(">II", value, offset + 2)
        if not headers_start <= data_start <= len(value):
            raise ValueError("FastStream frame offsets point outside the frame")
        (count,) = struct.unpack_from(">H", value, headers_start)
        position = headers_start + 2
        headers: dict[str, str] = {}
        for _ in range(count):
            pair = []
            for _part in range(2):
                (length,) = struct.unpack_from(">H", value, position)
                position += 2
                if position + length > data_start:
                    raise ValueError("FastStream frame header runs past the body")
                pair.append(value[position : position + length].decode("utf-8"))
                position += length
            headers[pair[0]] = pair[1]
        return headers, value[data_start:]
    try:
        legacy = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        legacy = None
    if isinstance(legacy, dict) and isinstance(legacy.get("data"), str):
        raw_headers = legacy.get("headers") or {}
        return {str(k): str(v) for k, v in raw_headers.items()}, legacy["data"].encode()
    raise ValueError(f"not a FastStream frame (no magic bytes, not its JSON form): {_snip(value)}")


def encode_faststream_frame(headers: dict[str, str], body: bytes) -> bytes:
    """The binary frame `faststream_frame` reads (version 1), for `headers` and `body`."""
    blob = b"".join(
        struct.pack(">H", len(part)) + part
        for name, value in headers.items()
        for part in (name.encode(), value.encode())
    )
    headers_start = len(FASTSTREAM_MAGIC) + 2 + 8
    data_start = headers_start + 2 + len(blob)
    return b"".join(
        (
            FASTSTREAM_MAGIC,
            struct.pack(">HII", 1, headers_start, data_start),
            struct.pack(">H", len(headers)),
            blob,
            body,
        )
    )


def _faststream(values: list[bytes | None]) -> Decoded:
    n = len(values)
    bodies: list[bytes | None] = [None] * n
    errors: dict[int, str] = {}
    headers: dict[bytes, list[bytes | None]] = {}
    for i, value in enumerate(values):
        if value is None:
            continue
        try:
            pairs, body = faststream_frame(value)
        except (ValueError, struct.error, UnicodeDecodeError) as exc:
            errors[i] = f"payload is not a FastStream message ({exc})"
            continue
        bodies[i] = body
        for name, text in pairs.items():
            column = headers.get(name.encode())
            if column is None:
                column = headers[name.encode()] = [None] * n
            column[i] = text.encode()
    return Decoded(bodies, errors, headers)


def _msgpack_function() -> Callable[[bytes], Any]:
    try:
        import msgpack  # type: ignore[import-untyped]
    except ImportError:
        raise ValueError(
            "the msgpack decoder needs the msgpack package: pip install 'auditkit[msgpack]'."
        ) from None

    def unpack(value: bytes) -> Any:
        # timestamp=3: the Timestamp extension (how msgpack libraries write a time) becomes
        # a UTC datetime, written out as ISO-8601, not the repr of msgpack's own class.
        return msgpack.unpackb(value, raw=False, strict_map_key=False, timestamp=3)

    return unpack


def _each(values: list[bytes | None], function: Callable[[bytes], Any], name: str) -> Decoded:
    out: list[bytes | None] = []
    errors: dict[int, str] = {}
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        try:
            decoded = function(value)
        except Exception as exc:  # a user's decoder may raise anything; the row is kept
            errors[i] = f"payload cannot be decoded by {name} ({type(exc).__name__}: {exc})"
            out.append(None)
            continue
        if not isinstance(decoded, dict):
            errors[i] = f"{name} decoded the payload to {type(decoded).__name__}, not an object"
            out.append(None)
            continue
        out.append(json.dumps(decoded, separators=(",", ":"), default=_jsonable).encode())
    return Decoded(out, errors)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _snip(value: bytes) -> str:
    text = value[:_SNIPPET].decode("utf-8", "backslashreplace")
    return repr(text + ("..." if len(value) > _SNIPPET else ""))


def flat_mixed(column: pa.Array) -> bool:
    """Whether a flat field `type_flat` left as text holds numbers beside other text
    (`35.0` beside `unpaid`): its values have several types, as a JSON payload's would."""
    if not pa.types.is_string(column.type):
        return False
    values = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column).drop_null()
    if not len(values):
        return False
    numeric = pc.sum(pc.match_substring_regex(values, _NUMBER)).as_py() or 0
    return 0 < numeric < len(values)


def type_flat(column: pa.Array) -> pa.Array:
    """A flat field's values typed: integers or numbers when every value is one, else text.

    An empty value is a missing one (null), in every column: flat exports (CSV, most
    loaders) write an empty cell where there is no value. An integer with a leading zero
    ("007") is text: it is an identifier, and a number would lose the zero.
    """
    if not pa.types.is_string(column.type) or column.null_count == len(column):
        return column
    present = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
    if present.null_count == len(present):
        return present
    values = present.drop_null()
    if pc.all(pc.match_substring_regex(values, _INTEGER)).as_py():
        longest = pc.max(pc.utf8_length(pc.replace_substring(values, "-", ""))).as_py()
        # Longer integers (ids, mostly) stay text: a float would round them.
        return pc.cast(present, pa.int64()) if longest <= _INT64_DIGITS else present
    if pc.all(pc.match_substring_regex(values, _NUMBER)).as_py():
        return pc.cast(present, pa.float64())
    return present
