"""Witnesses: places outside the archive that keep every checkpoint written to them.

A witness is worth what its writer cannot undo. Two kinds:

- a Redis stream of its own, `auditkit:witness:<stream>`, one entry per checkpoint (field
  `checkpoint`), on a server or an ACL user that lets the archive's writer XADD and read
  but not delete or trim;
- a second storage location (a folder, or `s3://...` with object lock), one file per
  checkpoint, `<key>/<chain length, 12 digits>-<time>.checkpoint`, never replaced.

Witnesses hold text; checkpoint.py reads it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from auditkit._archive.manifest import encode_key
from auditkit._archive.storage import LocalStorage, Storage, open_storage
from auditkit._redis.connection import Client, connect, redis_errors
from auditkit._redis.text import text

__all__ = ["WITNESS_PREFIX", "Witness", "WitnessSpec", "open_witness"]

WITNESS_PREFIX = "auditkit:witness:"
"""The key of a stream's Redis witness is this prefix and the stream key."""
_FIELD = "checkpoint"
_SUFFIX = ".checkpoint"
_REDIS_SCHEMES = ("redis", "rediss", "unix")

WitnessSpec = Any
"""A Redis client, a `redis://` URL, or a folder or object storage URL."""


class Witness:
    """Where checkpoints are kept apart from the archive: `append`, `latest`."""

    def append(self, stream: str, checkpoint: str, chain_length: int, time: str) -> str:
        """Keep `checkpoint`; returns where it went."""
        raise NotImplementedError

    def latest(self, stream: str) -> str | None:
        """The text of the last checkpoint of `stream` kept here, or None."""
        raise NotImplementedError


class RedisWitness(Witness):
    """Checkpoints as entries of `auditkit:witness:<stream>` on a Redis server."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __str__(self) -> str:
        return f"the Redis witness `{WITNESS_PREFIX}<stream>`"

    def append(self, stream: str, checkpoint: str, chain_length: int, time: str) -> str:
        key = WITNESS_PREFIX + stream
        with redis_errors(self.client, stream=key, command="XADD"):
            entry_id = self.client.xadd(key, {_FIELD: checkpoint.encode()})
        return f"`{key}` entry {text(entry_id)}"

    def latest(self, stream: str) -> str | None:
        key = WITNESS_PREFIX + stream
        with redis_errors(self.client, stream=key, command="XREVRANGE"):
            last = self.client.xrevrange(key, count=1)
        if not last:
            return None
        fields = {text(name): value for name, value in (last[0][1] or {}).items()}
        value = fields.get(_FIELD)
        if value is None:
            return ""  # an entry without the field: read as an unreadable checkpoint
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class StorageWitness(Witness):
    """Checkpoints as files in a folder or object storage, one file each."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def __str__(self) -> str:
        return f"the witness folder `{self.storage.url}`"

    def append(self, stream: str, checkpoint: str, chain_length: int, time: str) -> str:
        stamp = time.replace("-", "").replace(":", "")
        relative = f"{encode_key(stream)}/{chain_length:012d}-{stamp}{_SUFFIX}"
        # One file per checkpoint, never replaced: an earlier one stays as it was written.
        if not self.storage.exists(relative):
            self.storage.replace(relative, checkpoint.encode())
        return f"{self.storage.url}/{relative}"

    def latest(self, stream: str) -> str | None:
        kept = [f for f in self.storage.files(encode_key(stream)) if f.endswith(_SUFFIX)]
        if not kept:
            return None
        # Names sort by chain length, then time: the last is the longest chain, latest.
        data = self.storage.read_bytes(kept[-1])
        return data.decode("utf-8", "replace") if data is not None else None


def open_witness(spec: WitnessSpec, *, archive: Storage) -> Witness:
    """The witness `spec` names; refuses one inside the archive (its writer controls both)."""
    if isinstance(spec, Witness):
        return spec
    if isinstance(spec, str | os.PathLike):
        where = os.fspath(spec)
        if urlsplit(where).scheme in _REDIS_SCHEMES:
            return RedisWitness(connect(where))
        storage = open_storage(where)
        if _inside(storage, archive):
            raise ValueError(
                f"The witness `{where}` is inside the archive `{archive.url}`: whoever rewrites "
                "the archive could rewrite it too. Give a folder or bucket of its own."
            )
        return StorageWitness(storage)
    if hasattr(spec, "xadd") and hasattr(spec, "xrevrange"):
        return RedisWitness(spec)
    raise TypeError(
        "witness= takes a Redis client, a redis:// URL, or a folder or object storage URL, "
        f"got {type(spec).__name__}."
    )


def _inside(storage: Storage, archive: Storage) -> bool:
    if isinstance(storage, LocalStorage) and isinstance(archive, LocalStorage):
        return Path(storage.root).resolve().is_relative_to(Path(archive.root).resolve())
    return storage.url == archive.url or storage.url.startswith(archive.url + "/")
