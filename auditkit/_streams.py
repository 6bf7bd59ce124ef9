"""Finding streams and checking that a key is one."""

from __future__ import annotations

import redis

from auditkit._connection import read_with_retry, stream_not_found, wrong_key_type

__all__ = ["ensure_stream"]


def ensure_stream(client: redis.Redis, key: str) -> None:
    """Raise StreamNotFound or WrongKeyType unless `key` holds a stream."""
    raw = read_with_retry(client, lambda: client.type(key), stream=key, command="TYPE")
    key_type = raw.decode() if isinstance(raw, bytes) else str(raw)
    if key_type == "none":
        raise stream_not_found(client, key)
    if key_type != "stream":
        raise wrong_key_type(key, key_type)
