"""Arguments are checked before any I/O: a wrong value is named even when Redis is down.

Each call gets a client of a port where nothing listens, so any command it sent would fail
with ConnectionFailed; raising the argument's own error instead proves that nothing was
sent. The same calls with right arguments do reach for the server (and fail to).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import auditkit as ak


@pytest.fixture
def dead() -> Iterator[redis.Redis]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # No retries of redis-py's own: auditkit's reads retry, and that is enough waiting.
    client = redis.Redis(port=port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    yield client
    client.close()


def _first(iterator: Iterator[Any]) -> Any:
    return next(iterator, None)


CALLS: dict[str, tuple[Callable[[redis.Redis, Path, Any], Any], Any, Any, type[Exception]]] = {
    # name: (call(client, folder, value), a wrong value, a right value, the error)
    "read_arrow start": (
        lambda c, _, v: ak.read_arrow(c, "orders", start=v),
        "the day after tomorrow",
        "2026-03-01",
        ak.InvalidStreamID,
    ),
    "read_arrow end": (
        lambda c, _, v: ak.read_arrow(c, "orders", end=v),
        "2026-13-45",
        "1772323200000-0",
        ak.InvalidStreamID,
    ),
    "read_arrow count": (
        lambda c, _, v: ak.read_arrow(c, "orders", count=v),
        -1,
        10,
        ValueError,
    ),
    "read_pandas count": (
        lambda c, _, v: ak.read_pandas(c, "orders", count=v),
        "10",
        10,
        ValueError,
    ),
    "iter_batches start": (
        lambda c, _, v: _first(ak.iter_batches(c, "orders", start=v)),
        "soon",
        None,
        ak.InvalidStreamID,
    ),
    "iter_batches batch_size": (
        lambda c, _, v: _first(ak.iter_batches(c, "orders", batch_size=v)),
        0,
        100,
        ValueError,
    ),
    "trim before": (
        lambda c, folder, v: ak.Archive(folder).trim(c, "orders", before=v),
        "yesterday-ish",
        "2026-03-01",
        ak.InvalidStreamID,
    ),
    "pending_entries count": (
        lambda c, _, v: ak.pending_entries(c, "orders", count=v),
        0,
        5,
        ValueError,
    ),
    "schema_drift window": (
        lambda c, _, v: ak.schema_drift((c, "orders"), window=v),
        "year",
        "week",
        ValueError,
    ),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_a_wrong_argument_fails_before_any_command(name, dead, tmp_path):
    call, wrong, _, error = CALLS[name]
    with pytest.raises(error) as caught:
        call(dead, tmp_path, wrong)
    assert not isinstance(caught.value, ak.ConnectionFailed)
    assert str(wrong) in str(caught.value)  # the message names the value


@pytest.mark.parametrize("name", list(CALLS))
def test_a_right_argument_reaches_for_the_server(name, dead, tmp_path):
    call, _, right, _ = CALLS[name]
    with pytest.raises(ak.ConnectionFailed):
        call(dead, tmp_path, right)


def test_an_archive_repr_does_no_io():
    # An S3 endpoint where nothing listens: listing the archive would fail or hang.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{port}",
        scheme="http",
        access_key="key",
        secret_key="s3cret",
        region="us-east-1",
        connect_timeout=0.5,
        request_timeout=0.5,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
    )
    arc = ak.Archive("s3://bucket/prefix", filesystem=nowhere)
    assert repr(arc) == "<Archive 's3://bucket/prefix'>"
    with pytest.raises(OSError):
        arc.streams()  # the same archive does reach for the storage when asked
