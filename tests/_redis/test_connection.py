import logging

import pytest
import redis

import auditkit as ak
from auditkit._redis.connection import (
    READ_ATTEMPTS,
    read_with_retry,
    redis_errors,
    require_version,
    server_version,
)
from auditkit._redis.streams import ensure_stream


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, text
    return text


def test_connect_uses_redis_url(redis_server, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    client = ak.connect()
    assert client.connection_pool.connection_kwargs["port"] == redis_server.port
    assert client.ping()


def test_connect_without_url_starts_an_embedded_server(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    client = ak.connect()
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["host"] == "127.0.0.1"
    client.set("auditkit:probe", b"\xff")
    # The same throwaway server serves every connect() of the process.
    assert ak.connect().get("auditkit:probe") == b"\xff"


def test_connect_returns_a_given_client_untouched(r):
    assert ak.connect(r) is r
    with pytest.raises(TypeError, match="keyword"):
        ak.connect(r, socket_timeout=1)


def test_connect_sets_timeouts_and_bytes(redis_server):
    client = ak.connect(redis_server.url, decode_responses=True)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] and kwargs["socket_connect_timeout"]
    # auditkit is binary-safe: responses stay bytes whatever the caller asked.
    assert kwargs["decode_responses"] is False
    assert client.connection_pool.connection_kwargs["retry"].get_retries() == 0


def test_unreachable_server_is_one_actionable_line(start_redis):
    server = start_redis()
    url = server.url.replace("redis://", "redis://bob:hunter2@")
    server.stop()
    with pytest.raises(ak.ConnectionFailed) as info:
        ak.connect(url)
    text = _one_line(info.value)
    assert f"127.0.0.1:{server.port}" in text
    assert "hunter2" not in text and "hunter2" not in repr(info.value)
    assert "Check that the server is running" in text
    assert isinstance(info.value.__cause__, redis.ConnectionError)


def test_wrong_password_is_an_authentication_error(start_redis):
    server = start_redis({"requirepass": "right-horse"})
    url = f"redis://:wrong-horse@127.0.0.1:{server.port}/0"
    with pytest.raises(ak.AuthenticationFailed) as info:
        ak.connect(url)
    text = _one_line(info.value)
    assert "wrong-horse" not in text and "right-horse" not in text
    assert "password" in text
    assert ak.connect(f"redis://:right-horse@127.0.0.1:{server.port}/0").ping()


def test_acl_user_with_wrong_password(start_redis):
    server = start_redis()
    server.client().acl_setuser(
        "auditor", enabled=True, passwords=["+good-pass"], commands=["+@all"], keys=["*"]
    )
    with pytest.raises(ak.AuthenticationFailed):
        ak.connect(f"redis://auditor:bad-pass@127.0.0.1:{server.port}/0")
    assert ak.connect(f"redis://auditor:good-pass@127.0.0.1:{server.port}/0").ping()


def test_missing_stream(r):
    with pytest.raises(ak.StreamNotFound) as info:
        ensure_stream(r, "orders")
    text = _one_line(info.value)
    assert "`orders`" in text and "auditkit streams" in text
    assert info.value.stream == "orders"
    assert isinstance(info.value, KeyError)
    assert str(info.value) == info.value.message  # no KeyError quoting


def test_key_that_is_not_a_stream(r):
    r.hset("orders", "a", "1")
    with pytest.raises(ak.WrongKeyType) as info:
        ensure_stream(r, "orders")
    assert "hash" in _one_line(info.value)
    assert info.value.key_type == "hash"
    r.xadd("real", {"a": "1"})
    ensure_stream(r, "real")


def test_redis_wrongtype_reply_is_translated(r):
    r.set("counter", 1)
    with (
        pytest.raises(ak.WrongKeyType) as info,
        redis_errors(r, stream="counter", command="XRANGE"),
    ):
        r.xrange("counter")
    assert info.value.key_type == "string"
    assert isinstance(info.value.__cause__, redis.ResponseError)


def test_xinfo_on_missing_key_is_stream_not_found(r):
    with pytest.raises(ak.StreamNotFound), redis_errors(r, stream="nope", command="XINFO STREAM"):
        r.xinfo_stream("nope")


def test_acl_denial_is_permission_denied(start_redis):
    server = start_redis()
    server.client().acl_setuser(
        "narrow", enabled=True, passwords=["+pw"], commands=["+ping", "+hello", "+auth"], keys=["*"]
    )
    client = ak.connect(f"redis://narrow:pw@127.0.0.1:{server.port}/0")
    with pytest.raises(ak.PermissionDenied) as info:
        ensure_stream(client, "orders")
    text = _one_line(info.value)
    assert "TYPE" in text and "ACL" in text
    assert "pw@" not in text


def test_read_with_retry_recovers_from_transient_failures(r):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < READ_ATTEMPTS:
            raise redis.ConnectionError("connection reset by peer")
        return "answer"

    assert read_with_retry(r, flaky, command="XRANGE") == "answer"
    assert len(calls) == READ_ATTEMPTS


def test_read_with_retry_gives_up_after_the_bound(start_redis, caplog):
    server = start_redis()
    client = ak.connect(server.url)
    server.stop()
    caplog.set_level(logging.WARNING, logger="auditkit")
    with pytest.raises(ak.ConnectionFailed) as info:
        read_with_retry(client, client.ping, command="PING")
    assert "PING" in _one_line(info.value)
    assert (
        len([rec for rec in caplog.records if "retrying" in rec.getMessage()]) == READ_ATTEMPTS - 1
    )


def test_read_with_retry_survives_a_server_restart(start_redis):
    server = start_redis()
    client = ak.connect(server.url)
    client.xadd("s", {"a": "1"})
    server.restart()  # same port, empty data set
    assert read_with_retry(client, lambda: client.xlen("s"), command="XLEN") == 0


def test_read_with_retry_does_not_retry_command_errors(r):
    calls = []

    def bad():
        calls.append(1)
        raise redis.ResponseError("ERR syntax error")

    with pytest.raises(ak.AuditKitError, match="syntax error"):
        read_with_retry(r, bad, command="XRANGE")
    assert len(calls) == 1


def test_server_version_and_gate(r, r62):
    assert server_version(r) >= (7, 0, 0)
    assert server_version(r62)[:2] == (6, 2)
    require_version(r, (7, 0), needed_for="XINFO STREAM's entries-added")
    with pytest.raises(ak.ServerTooOld) as info:
        require_version(r62, (7, 0), needed_for="XINFO STREAM's entries-added")
    text = _one_line(info.value)
    assert "7.0" in text and "6.2" in text
    assert info.value.required == "7.0"


def test_bad_url_is_named_without_its_password():
    with pytest.raises(ak.ConnectionFailed) as info:
        ak.connect("http://user:topsecret@example.com")
    assert "topsecret" not in _one_line(info.value)
    assert "redis://" in str(info.value)
