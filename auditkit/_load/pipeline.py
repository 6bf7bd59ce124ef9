"""The decode pipeline that loads and exports share: read on this thread, convert on workers.

Reading pages needs the GIL (Python objects, hiredis); decoding them with Arrow releases it.
So the caller's thread reads and prepares the next piece while up to `workers` threads
finish earlier ones, and results come back in order with at most `in_flight` pieces held
in memory at once.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

__all__ = ["no_cyclic_gc", "pipelined"]

T = TypeVar("T")
R = TypeVar("R")


def pipelined(
    pieces: Iterable[T],
    work: Callable[[T], R],
    *,
    workers: int = 2,
    in_flight: int = 6,
    name: str = "auditkit-decode",
) -> Iterator[R]:
    """`work(piece)` for each piece on worker threads; results in the pieces' order.

    Pieces are drawn from `pieces` with the cyclic garbage collector off, and at most
    `in_flight` of them are submitted and not yet yielded.
    """
    source = iter(pieces)
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        while True:
            # The collector is off while we read, on while the caller works with a result.
            with no_cyclic_gc():
                piece = next(source, _DONE)
                if piece is not _DONE:
                    pending.append(pool.submit(work, piece))  # type: ignore[arg-type]
            if piece is _DONE:
                break
            while len(pending) >= in_flight:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


@contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """The cyclic garbage collector off inside the block (restored as it was)."""
    # A load allocates millions of small acyclic objects (bytes, lists); the cyclic
    # collector would scan them again and again for nothing.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


_DONE = object()
