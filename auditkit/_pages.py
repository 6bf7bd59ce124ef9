"""Reading a stream range page by page, as hiredis parses it.

Pages are fetched with XRANGE/XREVRANGE ... COUNT n on a dedicated raw connection (no
redis-py response callbacks, no decoding): each page is a list of `[id, [field, value,
...]]`. The request for the next page is sent before the current page is handed on, so
the server prepares it while the caller converts, without another thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis

from auditkit._connection import read_with_retry
from auditkit._ids import StreamID

__all__ = ["DEFAULT_PAGE_SIZE", "RawPage", "iter_pages"]

DEFAULT_PAGE_SIZE = 5_000
"""Entries per XRANGE call: large enough to amortise round trips, small enough to keep the
server's latency for other clients low (measured fastest between 2k and 10k)."""

_READ_BUFFER = 1 << 20
"""Socket read size of the page connection: a page is about a megabyte, and every read
releases and re-takes the GIL, which costs milliseconds when other threads are busy."""

RawPage = list[Any]


def iter_pages(
    client: redis.Redis,
    key: str,
    *,
    start: StreamID | None = None,
    end: StreamID | None = None,
    count: int | None = None,
    reverse: bool = False,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> Iterator[RawPage]:
    """Yield raw pages of `key` between `start` and `end` (inclusive), in ID order.

    With `reverse`, pages come newest first (XREVRANGE). `count` caps the total entries.
    """
    low = start or StreamID.MIN
    high = end or StreamID.MAX
    remaining = count
    command = "XREVRANGE" if reverse else "XRANGE"
    reader = _PageConnection(client, key, command)
    try:
        args = _args(command, key, low, high, page_size, remaining, reverse)
        if args is None:
            return
        reader.send(args)
        while True:
            page = reader.reply()
            want = args[-1]
            if not page:
                return
            if remaining is not None:
                remaining -= len(page)
            args = None
            if len(page) == want:
                # The next page starts just past the last entry seen; StreamID arithmetic
                # rolls the sequence over, which also works where 6.2 lacks `(` bounds.
                last = StreamID.parse(page[-1][0])
                if reverse and last != StreamID.MIN:
                    high = last.prev()
                    args = _args(command, key, low, high, page_size, remaining, reverse)
                elif not reverse and last != StreamID.MAX:
                    low = last.next()
                    args = _args(command, key, low, high, page_size, remaining, reverse)
            if args is not None:
                reader.send(args)
            yield page
            if args is None:
                return
    finally:
        reader.close()


def _args(
    command: str,
    key: str,
    low: StreamID,
    high: StreamID,
    page_size: int,
    remaining: int | None,
    reverse: bool,
) -> tuple[Any, ...] | None:
    want = page_size if remaining is None else min(page_size, remaining)
    if want <= 0 or low > high:
        return None
    first, second = (high, low) if reverse else (low, high)
    return (command, key, str(first), str(second), "COUNT", want)


class _PageConnection:
    """One connection for a range read, with requests sent ahead and retried on failure."""

    def __init__(self, client: redis.Redis, key: str, command: str) -> None:
        pool = client.connection_pool
        options = dict(pool.connection_kwargs)
        options["socket_read_size"] = max(options.get("socket_read_size") or 0, _READ_BUFFER)
        # Bytes, whatever the caller's client decodes: hiredis would decode while parsing.
        options["decode_responses"] = False
        self._client = client
        self._connection = pool.connection_class(**options)
        self._key = key
        self._command = command
        self._pending: tuple[Any, ...] | None = None
        self._sent = False

    def send(self, args: tuple[Any, ...]) -> None:
        self._pending = args
        try:
            self._connection.send_command(*args)
            self._sent = True
        except (redis.ConnectionError, redis.TimeoutError):
            # Not fatal here: reply() reconnects and sends again, within the retry bound.
            self._connection.disconnect()
            self._sent = False

    def reply(self) -> RawPage:
        def attempt() -> RawPage:
            assert self._pending is not None
            try:
                if not self._sent:
                    self._connection.send_command(*self._pending)
                    self._sent = True
                page: RawPage = self._connection.read_response(disable_decoding=True)
            except BaseException:
                # A half-read reply would poison the next command: start clean.
                self._connection.disconnect()
                self._sent = False
                raise
            self._sent = False
            return page

        return read_with_retry(self._client, attempt, stream=self._key, command=self._command)

    def close(self) -> None:
        self._connection.disconnect()
