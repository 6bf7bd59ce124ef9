import logging

import pytest

import auditkit as ak
from auditkit._logging import logger
from auditkit._secrets import redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("redis://user:s3cret@host:6379/0", "s3cret"),
        ("rediss://:s3cret@host:6380", "s3cret"),
        ("failed for redis://default:p%40ss@h/0 (refused)", "p%40ss"),
        ("s3://tok3n@bucket/prefix", "tok3n"),
        ("redis://h/0?password=s3cret&db=1", "s3cret"),
        ("https://x.example/obj?X-Amz-Signature=abcdef123&X-Amz-Credential=AKIA99", "abcdef123"),
        ("https://x.example/obj?X-Amz-Signature=abcdef123&X-Amz-Credential=AKIA99", "AKIA99"),
        ("Connection(password='s3cret', host='h')", "s3cret"),
        ('{"token": "ghp_abc123", "user": "x"}', "ghp_abc123"),
        ("api_key=sk-live-42 next", "sk-live-42"),
        ("AUTH bob s3cret", "s3cret"),
        ("auth s3cret", "s3cret"),
    ],
)
def test_secrets_are_masked(text, secret):
    out = redact(text)
    assert secret not in out
    assert "***" in out


@pytest.mark.parametrize(
    "text",
    [
        "redis://127.0.0.1:6379/0",
        "Stream `orders` does not exist",
        "passwordless login is disabled",
        "stream demo:accounts has 10 entries",
    ],
)
def test_ordinary_text_is_untouched(text):
    assert redact(text) == text


def test_username_is_kept():
    assert redact("redis://auditor:pw@h:1/0") == "redis://auditor:***@h:1/0"


def test_errors_never_carry_the_password():
    err = ak.ConnectionFailed(
        "cannot reach redis://bob:hunter2@h:1/0", address="redis://bob:hunter2@h:1"
    )
    for shown in (str(err), repr(err), err.message, err.address or "", str(err.args)):
        assert "hunter2" not in shown


def test_log_records_are_redacted(caplog):
    log = logger("auditkit.test")
    caplog.set_level(logging.INFO, logger="auditkit.test")
    log.info("connecting to %s", "redis://bob:hunter2@h:1/0")
    assert caplog.records
    assert "hunter2" not in caplog.text
    assert "redis://bob:***@h:1/0" in caplog.text


def test_client_and_server_reprs_hide_the_password(start_redis):
    server = start_redis({"requirepass": "hunter2"})
    client = ak.connect(f"redis://:hunter2@127.0.0.1:{server.port}/0")
    assert "hunter2" not in repr(client)
    assert "hunter2" not in str(client.connection_pool)
    assert "hunter2" not in repr(server)
    assert str(server.port) in repr(server)
