import contextlib
import logging
import signal
import time

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


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # URL parsers end the user info at the last `@` before the host: all of it is secret.
        ("redis://user:p@ss@host:6379", "redis://user:***@host:6379"),
        ("redis://:p@ss@w@rd@host:6379/0 refused", "redis://:***@host:6379/0 refused"),
        (
            "`redis://user:p@ss@host:notaport` is not a Redis URL",
            "`redis://user:***@host:notaport` is not a Redis URL",
        ),
        ("unix://:p@ss@/run/redis.sock?db=2", "unix://:***@/run/redis.sock?db=2"),
        ("s3://to@ken@bucket/prefix", "s3://***@bucket/prefix"),
        ("redis://a:b@h:1/0, redis://c:d@e@h:2/0", "redis://a:***@h:1/0, redis://c:***@h:2/0"),
    ],
)
def test_user_info_with_a_raw_at_sign_is_masked_whole(text, masked):
    assert redact(text) == masked


def test_a_bad_url_with_a_raw_at_sign_in_the_password_shows_none_of_it():
    with pytest.raises(ak.ConnectionFailed) as info:
        ak.connect("redis://auditor:hunt@er2@127.0.0.1:notaport/0")
    for shown in (str(info.value), repr(info.value), info.value.address or ""):
        assert "hunt" not in shown and "er2" not in shown


# Texts on which a backtracking pattern does work quadratic in their length: long runs of
# the characters a URL scheme, user info or `key=value` is made of, with no end in sight.
_LONG_TEXTS = {
    "stream key": lambda n: f"Stream `{'a' * n}` does not exist on redis://127.0.0.1:6379/0.",
    "scheme characters": lambda n: "a+.-" * (n // 4),
    "user info without host": lambda n: "redis://" + "u" * (n // 2) + ":" + "p" * (n // 2),
    "colons": lambda n: "a:" * (n // 2),
    "schemes": lambda n: "a://" * (n // 4),
    "at signs": lambda n: "a://b:" + "@" * n,
    "key and spaces": lambda n: "password" + " " * n,
    "auth and spaces": lambda n: "AUTH" + " " * n,
}


@contextlib.contextmanager
def _within(seconds: float, what: str):
    """Fail once `seconds` have passed; a regular expression stops for signals, too."""

    def late(signum, frame):
        raise AssertionError(f"{what} took more than {seconds:.3f} s")

    previous = signal.signal(signal.SIGALRM, late)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _best_seconds(text: str, *, limit: float | None, what: str) -> float:
    """The best of three runs; a run that takes ten times `limit` stops (quadratic work on a
    million characters would take hours), one that is only descheduled does not fail."""
    best = float("inf")
    for _ in range(3):
        with _within(10 * limit, what) if limit else contextlib.nullcontext():
            started = time.perf_counter()
            redact(text)
            best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
@pytest.mark.parametrize("shape", sorted(_LONG_TEXTS))
def test_masking_time_grows_linearly_with_the_text(shape):
    # Each text is ten times the one before: linear work takes about ten times as long,
    # quadratic work a hundred times. No absolute time is asserted, only the growth from the
    # first text, up to 1,000,000 characters: at most 1,000x over the two steps where
    # quadratic work grows 10,000x. Growth is not judged step by step, because one step of a
    # loaded machine (cache misses on the largest text, a busy neighbour) can exceed 30x
    # while linear work stays far under the bound.
    first: float | None = None
    for step, n in enumerate((10_000, 100_000, 1_000_000)):
        text = _LONG_TEXTS[shape](n)
        # Timings of a millisecond or less are noise: the limit never goes below that.
        limit = None if first is None else 1_000 ** (step / 2) * max(first, 1e-3)
        seconds = _best_seconds(text, limit=limit, what=f"masking {len(text):,} characters")
        assert limit is None or seconds < limit
        if first is None:
            first = seconds
