"""URLs that name no server, and a TLS URL for a server that does not speak TLS."""

import time

import pytest
import redis

import auditkit as ak
from auditkit._redis.connection import CONNECT_TIMEOUT


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis://", "names no host"),
        ("rediss://", "names no host"),
        ("redis://:hunter2@/0", "names no host"),
        ("redis://127.0.0.1:notaport/0", "Port could not be cast"),
        ("redis://127.0.0.1:0/0", "port 0"),
        ("unix://", "names no socket"),
        ("unix://:hunter2@", "names no socket"),
        ("redis://127.0.0.1:6379/0?db=three", "Invalid value for 'db'"),
        ("http://127.0.0.1:6379", "schemes"),
    ],
)
def test_a_url_that_names_no_server_is_refused_before_connecting(url, reason):
    with pytest.raises(ak.ConnectionFailed) as info:
        ak.connect(url)
    text = str(info.value)
    assert "\n" not in text and reason in text and "is not a Redis URL" in text
    assert "hunter2" not in text
    # The URL itself, not a server, is at fault: the cause says so.
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.heavy
def test_rediss_to_a_plaintext_server_fails_fast_and_says_to_use_redis(redis_server):
    url = f"rediss://127.0.0.1:{redis_server.port}/0"
    started = time.monotonic()
    with pytest.raises(ak.ConnectionFailed) as info:
        ak.connect(url)
    elapsed = time.monotonic() - started
    text = str(info.value)
    assert "\n" not in text
    assert f"{url} does not seem to speak TLS" in text
    assert f"`redis://127.0.0.1:{redis_server.port}/0`" in text
    # The handshake waits as long as opening the connection may, not a reply's minute.
    assert elapsed < 2 * CONNECT_TIMEOUT
    assert isinstance(info.value.__cause__, redis.ConnectionError)
    # The server is fine, and answers plain Redis.
    assert ak.connect(redis_server.url).ping()


def test_the_tls_handshake_wait_follows_socket_connect_timeout(redis_server):
    started = time.monotonic()
    with pytest.raises(ak.ConnectionFailed, match="does not seem to speak TLS"):
        ak.connect(f"rediss://127.0.0.1:{redis_server.port}/0", socket_connect_timeout=0.5)
    assert time.monotonic() - started < CONNECT_TIMEOUT


def test_an_unreachable_server_names_redis_url_only_when_it_is_redis_urls(monkeypatch):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(ak.ConnectionFailed) as given:
        ak.connect(dead)
    assert "Cannot reach Redis" in str(given.value) and "REDIS_URL" not in str(given.value)
    monkeypatch.setenv("REDIS_URL", dead)
    with pytest.raises(ak.ConnectionFailed) as from_environment:
        ak.connect()
    assert "unset REDIS_URL to use an embedded server" in str(from_environment.value)
