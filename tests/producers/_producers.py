"""What the producer tests share: importing a producer library, reading entries raw,
searching an archive's files."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pyarrow.parquet as pq
import pytest
import redis

T = TypeVar("T")


def require(module: str) -> ModuleType:
    """Import a producer library, or skip the tests that need it.

    In CI (AUDITKIT_REQUIRE_ALL_SERVERS set) a missing library fails instead: the extra
    `producers` installs them, and a skipped suite would hide a broken install.
    """
    if os.environ.get("AUDITKIT_REQUIRE_ALL_SERVERS"):
        try:
            return __import__(module, fromlist=["_"])
        except ImportError as exc:
            pytest.fail(
                f"AUDITKIT_REQUIRE_ALL_SERVERS is set: {exc} (pip install 'auditkit[producers]')"
            )
    return pytest.importorskip(module)


def raw_entries(r: redis.Redis, key: str) -> list[tuple[bytes, list[bytes]]]:
    """Every entry of a stream as Redis sends it: the ID and the flat field/value list."""
    # Not redis-py's xrange: it makes each entry's fields a dict, which would hide a field
    # name written twice or a change of field order.
    raw = redis.Redis(connection_pool=r.connection_pool)
    raw.response_callbacks.pop("XRANGE", None)
    reply = raw.execute_command("XRANGE", key, "-", "+")
    return [(entry_id, list(fields)) for entry_id, fields in reply]


def archive_holds(root: Path, needle: str) -> bool:
    """Whether any value in any Parquet file under `root` contains `needle` (decoded, so
    compression cannot hide it): typed columns and the raw `fields` alike."""
    wanted = needle.encode()
    for path in sorted(root.rglob("*.parquet")):
        for column in pq.read_table(path).columns:
            for value in _leaves(column.to_pylist()):
                if isinstance(value, str) and needle in value:
                    return True
                if isinstance(value, bytes) and wanted in value:
                    return True
    return False


def _leaves(values: Any) -> Iterator[Any]:
    for value in values:
        if isinstance(value, list):
            yield from _leaves(value)
        elif isinstance(value, dict):
            yield from _leaves(list(value.values()))
        else:
            yield value


def url_of(client: redis.Redis) -> str:
    """The URL a producer library connects with, to the server `client` talks to."""
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def run_async(work: Coroutine[Any, Any, T], *, seconds: float = 180) -> T:
    """Run a producer library's coroutine to its end, or fail after `seconds`.

    A producer client that waits on a connection forever then fails the test that used it
    rather than stalling the whole suite. (BullMQ's `Worker.close()` without `force` waits for
    its blocking read and, once cancelled, retries forever: the tests close workers with
    `force=True` after every job is done.)
    """

    async def bounded() -> T:
        return await asyncio.wait_for(work, seconds)

    try:
        return asyncio.run(bounded())
    except TimeoutError:
        pytest.fail(f"the producer library did not finish within {seconds:.0f} s")
