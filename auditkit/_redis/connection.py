"""Reaching Redis: `connect()`, retried reads, and redis-py errors turned into ours."""

from __future__ import annotations

import contextlib
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from auditkit._exceptions import (
    AuditKitError,
    AuthenticationFailed,
    ConnectionFailed,
    PermissionDenied,
    ServerTooOld,
    StreamNotFound,
    WrongKeyType,
)
from auditkit._logging import logger
from auditkit._redis.embedded import EmbeddedRedis
from auditkit._redis.text import KeyBytes, key_bytes, shown, text
from auditkit._secrets import redact

__all__ = [
    "READ_ATTEMPTS",
    "Client",
    "address_of",
    "connect",
    "embedded_server",
    "is_cluster",
    "node_for",
    "read_with_retry",
    "redis_errors",
    "require_version",
    "server_version",
    "servers",
    "stream_not_found",
    "wrong_key_type",
]

_log = logger(__name__)
T = TypeVar("T")

Client: TypeAlias = redis.Redis | RedisCluster
"""What auditkit reads from: one server, or a Redis Cluster (every primary)."""

CONNECT_TIMEOUT = 5.0
"""Seconds to open a TCP (or TLS) connection before giving up."""
SOCKET_TIMEOUT = 60.0
"""Seconds to wait for one reply; a page of a few thousand entries takes milliseconds."""
READ_ATTEMPTS = 3
"""How many times a read is tried when the connection fails; writes are never retried."""

_embedded: EmbeddedRedis | None = None
_embedded_lock = threading.Lock()


def connect(url: str | Client | None = None, /, **kwargs: Any) -> Client:
    """A Redis client for auditkit, checked with PING.

    Args:
        url: a `redis://`, `rediss://` or `unix://` URL (user, password and TLS options as
            redis-py accepts them), or a `redis.Redis` or `RedisCluster` you built, which is
            returned as it is. None reads `$REDIS_URL`; when that is unset too, a throwaway
            embedded `redis-server` is started on a free loopback port and stopped at exit.
            A URL of any node of a Redis Cluster gives a cluster client: auditkit asks the
            node (`INFO cluster`) and discovers the other primaries from it.
        **kwargs: passed to `redis.Redis.from_url` (or `RedisCluster.from_url`), e.g.
            `ssl_ca_certs="ca.pem"`.

    Returns:
        A `redis.Redis`, or a `redis.cluster.RedisCluster` for a cluster, returning bytes
        (auditkit is binary-safe). Its own commands are not retried, so a write of yours is
        never sent twice; auditkit's reads retry a bounded number of times on connection
        errors, and follow MOVED and ASK redirections while slots move.

    Raises:
        ConnectionFailed: the URL names no server (no host, no socket path, not a number
            as port), or the server cannot be reached (the message names the address,
            without password). A `rediss://` URL of a server that does not speak TLS fails
            once `socket_connect_timeout` has passed, not a reply's minute later.
        AuthenticationFailed: the server rejected the credentials.

    Example:
        >>> connect("redis://auditor:s3cret@127.0.0.1:1/0")  # no server there; no password shown
        Traceback (most recent call last):
        ...
        auditkit.ConnectionFailed: Cannot reach Redis at redis://127.0.0.1:1/0 (...). Check ...
    """
    if isinstance(url, redis.Redis | RedisCluster):
        if kwargs:
            raise TypeError(
                f"connect() got a {type(url).__name__} and keyword options; configure the "
                "client yourself or pass a URL instead."
            )
        return url
    if url is not None and not isinstance(url, str):
        raise TypeError(
            "connect() takes a URL string, a redis.Redis or a RedisCluster, got "
            f"{type(url).__name__}."
        )
    if url is None:
        url = os.environ.get("REDIS_URL") or None
        if url is None:
            url = embedded_server().url
            _log.info("REDIS_URL is not set; using the embedded server at %s", url)
    options: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_keepalive": True,
        "health_check_interval": 30,
        # redis-py retries every command by default, writes included, which could append an
        # XADD twice. auditkit retries its own reads instead (read_with_retry).
        "retry": Retry(NoBackoff(), 0),
    }
    options.update(kwargs)
    options["decode_responses"] = False
    # Keys that are not UTF-8 are listed as str with surrogate escapes (text.key_text); the
    # client sends them back as the same bytes.
    options["encoding_errors"] = "surrogateescape"
    try:
        client = redis.Redis.from_url(url, **_single_server_options(url, options))
    except ValueError as exc:
        raise ConnectionFailed(
            f"`{redact(url)}` is not a Redis URL ({exc}). Use `redis://host:port/db` (with "
            "`user:password@` before the host when needed), `rediss://` for TLS, or "
            "`unix:///path/to/redis.sock`.",
            address=url,
        ) from exc
    with redis_errors(client):
        client.ping()
    if not _cluster_enabled(client):
        return client
    client.close()
    return _cluster_client(url, options)


def _single_server_options(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` fitted to the URL's scheme; raises ValueError for a URL that names no server.

    redis-py would take `redis://` as localhost and `unix://` as no socket at all.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    options = dict(options)
    if scheme == "unix":
        if not parts.path:
            raise ValueError("it names no socket")
        # A Unix socket has no TCP keepalive, and redis-py refuses the option there.
        options.pop("socket_keepalive", None)
        options.pop("socket_keepalive_options", None)
        options.setdefault("connection_class", _UnixConnection)
    elif scheme in ("redis", "rediss"):
        if not parts.hostname:
            raise ValueError("it names no host")
        port = parts.port  # raises ValueError for a port that is not a number
        if port == 0:
            raise ValueError("port 0 is no server's port")
        tls = scheme == "rediss"
        options.setdefault("connection_class", _TLSConnection if tls else _Connection)
    return options


class _Connection(KeyBytes, redis.Connection):
    """A TCP connection that sends keys' surrogate escapes as their bytes."""


class _UnixConnection(KeyBytes, redis.UnixDomainSocketConnection):
    """A Unix socket connection that sends keys' surrogate escapes as their bytes."""


class _TLSConnection(KeyBytes, redis.SSLConnection):
    """A TLS connection whose handshake waits socket_connect_timeout, not socket_timeout
    (and sends keys' surrogate escapes as their bytes)."""

    def _wrap_socket_with_ssl(self, sock: socket.socket) -> Any:
        # A server that does not speak TLS reads the ClientHello as the start of a command
        # and waits for its end: the handshake would wait out socket_timeout (a minute).
        sock.settimeout(self.socket_connect_timeout)
        try:
            wrapped = super()._wrap_socket_with_ssl(sock)  # type: ignore[no-untyped-call]
        except TimeoutError as exc:
            raise _NotTLS(f"no TLS handshake within {self.socket_connect_timeout:g} s") from exc
        wrapped.settimeout(self.socket_timeout)
        return wrapped


class _NotTLS(redis.ConnectionError):
    """The server did not answer a TLS handshake as a TLS server does."""


def _cluster_enabled(client: redis.Redis) -> bool:
    """Whether the server is a Redis Cluster node (a user without +info is taken as not)."""
    try:
        info = client.info("cluster")
    except redis.ResponseError:
        return False
    except redis.RedisError as exc:
        raise translate(exc, client, command="INFO cluster") from exc
    return str(info.get("cluster_enabled", 0)) == "1"


def _cluster_client(url: str, options: dict[str, Any]) -> RedisCluster:
    # A cluster has database 0 only, and RedisCluster refuses a `db` option.
    options = {key: value for key, value in options.items() if key != "db"}
    if urlsplit(url).scheme.lower() == "redis":
        options.setdefault("connection_class", _Connection)
    try:
        cluster = RedisCluster.from_url(url, **options)
    except (redis.RedisError, RedisClusterException) as exc:
        raise ConnectionFailed(
            f"{redact(url)} is a Redis Cluster node, but the cluster's slots could not be "
            f"mapped ({redact(str(exc))}). Check that the user may run CLUSTER SLOTS (ACL "
            "`+cluster|slots`, see docs/operations.md), that `CLUSTER INFO` shows "
            "cluster_state:ok, and that the addresses the nodes announce are reachable from "
            "here.",
            address=url,
        ) from exc
    _log.info("%s is a cluster of %d primaries", redact(url), len(cluster.get_primaries()))  # type: ignore[no-untyped-call]
    return cluster


def embedded_server() -> EmbeddedRedis:
    """The process-wide embedded server used by `connect()`, started on first use."""
    global _embedded
    with _embedded_lock:
        if _embedded is None or not _embedded.running:
            _embedded = EmbeddedRedis().start()
        return _embedded


def is_cluster(client: Client) -> bool:
    """Whether `client` is a Redis Cluster client."""
    return isinstance(client, RedisCluster)


def node_for(client: Client, key: str) -> redis.Redis:
    """The client of the server that holds `key`: `client` itself outside a cluster."""
    if isinstance(client, RedisCluster):
        node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
        if node.redis_connection is None:  # pragma: no cover - the node map makes them
            client.nodes_manager.initialize()
            node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]
        connection: redis.Redis = node.redis_connection
        return connection
    return client


def servers(client: Client) -> list[redis.Redis]:
    """Every server that holds data: the primaries of a cluster, or `client` alone."""
    if isinstance(client, RedisCluster):
        return [node.redis_connection for node in client.get_primaries()]  # type: ignore[no-untyped-call]
    return [client]


def address_of(client: Client) -> str:
    """Where `client` connects, as a URL without credentials.

    For a cluster: the node it was started from and how many primaries it maps.
    """
    if isinstance(client, RedisCluster):
        primaries = client.get_primaries()  # type: ignore[no-untyped-call]
        node = client.get_default_node() or primaries[0]  # type: ignore[no-untyped-call]
        first = node.redis_connection
        scheme = "redis"
        if first is not None and issubclass(
            first.connection_pool.connection_class, redis.SSLConnection
        ):
            scheme = "rediss"
        return f"{scheme}://{node.host}:{node.port} (cluster of {len(primaries)} primaries)"
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    if kwargs.get("path"):
        db = kwargs.get("db", 0)
        return f"unix://{kwargs['path']}" + (f"?db={db}" if db else "")
    scheme = "rediss" if issubclass(pool.connection_class, redis.SSLConnection) else "redis"
    host, port, db = kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0)
    return f"{scheme}://{host}:{port}/{db}"


@contextlib.contextmanager
def redis_errors(
    client: Client, *, stream: str | None = None, command: str | None = None
) -> Iterator[None]:
    """Re-raise redis-py errors inside the block as auditkit errors with a next step."""
    try:
        yield
    except redis.RedisError as exc:
        raise translate(exc, client, stream=stream, command=command) from exc
    except UnicodeEncodeError as exc:
        raise _strict_client(exc, stream) from exc


def read_with_retry(
    client: Client,
    read: Callable[[], T],
    *,
    stream: str | None = None,
    command: str | None = None,
) -> T:
    """Run a read, retrying connection failures up to READ_ATTEMPTS times with backoff.

    Only for commands that change nothing: a retried read returns the same answer.
    """
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            return read()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if isinstance(exc, redis.exceptions.AuthenticationError) or attempt == READ_ATTEMPTS:
                raise translate(exc, client, stream=stream, command=command) from exc
            delay = min(1.0, 0.05 * 2**attempt) * (0.5 + random.random() / 2)
            _log.warning(
                "%s on %s failed (%s); retrying in %.2f s (attempt %d of %d)",
                command or "read",
                address_of(client),
                exc,
                delay,
                attempt + 1,
                READ_ATTEMPTS,
            )
            time.sleep(delay)
        except redis.RedisError as exc:
            raise translate(exc, client, stream=stream, command=command) from exc
        except UnicodeEncodeError as exc:
            raise _strict_client(exc, stream) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _strict_client(exc: UnicodeEncodeError, key: str | None) -> AuditKitError:
    """The error for a key with bytes that are not UTF-8, given to a client that cannot send it."""
    named = shown(key) if key is not None else shown(str(exc.object))
    return AuditKitError(
        f"Key `{named}` has bytes that are not UTF-8 (shown as `\\xNN`); this Redis client "
        "sends text strictly and cannot name it. Pass a client from `auditkit.connect(url)`, "
        "which sends such keys as their bytes."
    )


def server_version(client: Client) -> tuple[int, int, int]:
    """The Redis server's version as `(major, minor, patch)`."""
    with redis_errors(client, command="INFO server"):
        info = client.info("server")
    text = str(info.get("redis_version", "0.0.0"))
    major, minor, patch, *_ = [int(p) if p.isdigit() else 0 for p in text.split(".")] + [0, 0, 0]
    return major, minor, patch


def require_version(client: Client, minimum: tuple[int, int], *, needed_for: str) -> None:
    """Raise ServerTooOld unless the server is at least `minimum` (major, minor)."""
    actual = server_version(client)
    if actual[:2] < minimum:
        wanted = ".".join(map(str, minimum))
        have = ".".join(map(str, actual))
        raise ServerTooOld(
            f"{needed_for} needs Redis {wanted} or newer; {address_of(client)} runs {have}. "
            "Upgrade the server or leave out that option.",
            required=wanted,
            actual=have,
        )


def _from_environment(client: Client) -> str:
    """`; it is $REDIS_URL's ...` when the client's server is the one REDIS_URL names."""
    url = os.environ.get("REDIS_URL") or ""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
    host, port = kwargs.get("host"), kwargs.get("port")
    if host is None or f"{host}:{port}" not in url:
        return ""
    return "; it is the one $REDIS_URL names: unset REDIS_URL to use an embedded server"


def translate(
    exc: redis.RedisError,
    client: Client,
    *,
    stream: str | None = None,
    command: str | None = None,
) -> AuditKitError:
    """The auditkit error for a redis-py error, with the address and a next step."""
    address = address_of(client)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    upper = text.upper()
    doing = f" while running {command}" if command else ""
    if isinstance(exc, redis.exceptions.AuthenticationError) or upper.startswith(
        ("WRONGPASS", "NOAUTH")
    ):
        return AuthenticationFailed(
            f"Redis at {address} rejected the credentials ({text}). Check the user name and "
            "password in the URL or in $REDIS_URL.",
            address=address,
        )
    if isinstance(exc, redis.exceptions.NoPermissionError) or upper.startswith("NOPERM"):
        return PermissionDenied(
            f"The Redis user may not run {command or 'this command'} on {address} ({text}). "
            "Grant it in the ACL (see docs/operations.md) or connect as another user.",
            command=command,
        )
    if isinstance(exc, _NotTLS):
        plain = "redis://" + address.removeprefix("rediss://")
        return ConnectionFailed(
            f"The server at {address} does not seem to speak TLS ({text}). If it serves "
            f"plain Redis, use `{plain}` (redis://, not rediss://); otherwise check that the "
            "port is the server's TLS port (tls-port).",
            address=address,
        )
    if isinstance(exc, redis.TimeoutError):
        return ConnectionFailed(
            f"Redis at {address} did not answer in time{doing} ({text}). Check the network "
            "and the server's load, or raise socket_timeout in connect().",
            address=address,
        )
    if isinstance(exc, redis.ConnectionError) and ("CERTIFICATE" in upper or "SSL" in upper):
        return ConnectionFailed(
            f"TLS with Redis at {address} failed{doing} ({text}). Check that ssl_ca_certs "
            "names the CA that signed the server's certificate, and that the URL's host is a "
            "name the certificate covers.",
            address=address,
        )
    if isinstance(exc, redis.ConnectionError):
        return ConnectionFailed(
            f"Cannot reach Redis at {address}{doing} ({text}). Check that the server is "
            f"running and the URL is right{_from_environment(client)}.",
            address=address,
        )
    if "SELECT IS NOT ALLOWED IN CLUSTER MODE" in upper:
        db = _database(client)
        return ConnectionFailed(
            f"{address} is a Redis Cluster node, and a cluster has only database 0; the "
            f"URL asks for database {db}. Drop `/{db}` from the URL.",
            address=address,
        )
    if upper.startswith("WRONGTYPE") and stream is not None:
        return wrong_key_type(stream, _key_type(client, stream))
    if "NO SUCH KEY" in upper and stream is not None:
        return stream_not_found(client, stream)
    return AuditKitError(f"Redis at {address} refused{doing or ' a command'}: {text}.")


def stream_not_found(client: Client, stream: str) -> StreamNotFound:
    """The error for a stream key that does not exist."""
    where = f"Stream `{shown(stream)}` does not exist on {address_of(client)}"
    raw = _unescaped(stream)
    if raw != stream:
        with contextlib.suppress(redis.RedisError, UnicodeEncodeError):
            if client.exists(raw):
                # The key as `auditkit streams` shows it, passed back as it was shown.
                return StreamNotFound(
                    f"{where}, but a stream whose key has the bytes written `\\xNN` there "
                    f"does: name it with those bytes (in a shell $'{shown(raw)}', in Python "
                    f"{key_bytes(raw)!r}.decode('utf-8', 'surrogateescape')).",
                    stream=stream,
                )
    return StreamNotFound(
        f"{where}. Check the name (`auditkit streams` lists the streams) and the database "
        "number in the URL.",
        stream=stream,
    )


def _unescaped(key: str) -> str:
    """`key` with each `\\xNN` of a byte that is not ASCII made that byte (`text.shown`)."""
    return _ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m[1], 16)), key)


_ESCAPED_BYTE = re.compile(r"\\x([89a-fA-F][0-9a-fA-F])")


def wrong_key_type(key: str, key_type: str | None) -> WrongKeyType:
    """The error for a key that holds another type than a stream."""
    return WrongKeyType(
        f"Key `{shown(key)}` holds a {key_type or 'non-stream'} value, not a stream. Pass the name "
        "of a stream key (`auditkit streams` lists them).",
        key=key,
        key_type=key_type,
    )


def _database(client: Client) -> int:
    if isinstance(client, RedisCluster):
        return 0
    return int(client.connection_pool.connection_kwargs.get("db", 0))


def _key_type(client: Client, key: str) -> str | None:
    with contextlib.suppress(redis.RedisError):
        return text(client.type(key))
    return None
