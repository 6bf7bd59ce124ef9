"""`unix://` URLs, against a real redis-server listening on a Unix domain socket."""

import os
import subprocess
import sys

import pytest

import auditkit as ak
from auditkit._redis.connection import address_of


@pytest.fixture
def unix_server(start_redis, tmp_path):
    """A server on a socket (and, to look behind auditkit's back, on a loopback port)."""

    def start(config=None):
        socket = tmp_path / "redis.sock"
        server = start_redis({"unixsocket": str(socket), "unixsocketperm": "700", **(config or {})})
        return server, socket

    return start


def test_connect_over_a_unix_socket(unix_server):
    server, socket = unix_server()
    client = ak.connect(f"unix://{socket}")
    client.xadd("orders", {"type": "Placed"}, id="1772323200000-0")
    # The same server, seen over TCP: the entry went through the socket to it.
    assert server.client().xlen("orders") == 1
    assert client.connection_pool.connection_kwargs["path"] == str(socket)
    assert address_of(client) == f"unix://{socket}"
    assert ak.read_arrow(client, "orders").num_rows == 1


def test_unix_socket_with_password_and_database(unix_server):
    server, socket = unix_server({"requirepass": "hunter2"})
    client = ak.connect(f"unix://:hunter2@{socket}?db=3")
    client.set("probe", "x")
    assert server.client(db=3).get("probe") == b"x"
    assert server.client(db=0).get("probe") is None
    assert address_of(client) == f"unix://{socket}?db=3"
    # A user name, as ACL users have: `default` is the one requirepass sets.
    assert ak.connect(f"unix://default:hunter2@{socket}?db=3").get("probe") == b"x"


def test_wrong_password_over_a_unix_socket_names_the_socket_not_the_password(unix_server):
    _, socket = unix_server({"requirepass": "right-horse"})
    with pytest.raises(ak.AuthenticationFailed) as info:
        ak.connect(f"unix://:wr@ng-horse@{socket}")
    text = str(info.value)
    assert "\n" not in text and f"unix://{socket}" in text
    assert "horse" not in text and "horse" not in repr(info.value)


def test_a_socket_nobody_listens_on_is_connection_failed(tmp_path):
    socket = tmp_path / "nobody.sock"
    with pytest.raises(ak.ConnectionFailed) as info:
        ak.connect(f"unix://{socket}")
    text = str(info.value)
    assert "\n" not in text and f"unix://{socket}" in text
    assert "Check that the server is running" in text


def test_the_command_line_over_a_unix_socket(unix_server, tmp_path):
    server, socket = unix_server({"requirepass": "hunter2"})
    server.client().xadd("orders", {"type": "Placed"}, id="1772323200000-0")
    environment = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "auditkit",
            "streams",
            "--format",
            "csv",
            "--redis-url",
            f"unix://:hunter2@{socket}",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env=environment,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith("orders,1,1772323200000-0")
