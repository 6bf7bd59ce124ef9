"""URLs that name no server."""

import pytest

import auditkit as ak


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
