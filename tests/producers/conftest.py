"""Fixtures of the producer tests: streams written by the producer libraries themselves.

The servers are the session's `redis-server` of tests/conftest.py (`r`, flushed per test).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from _producers import raw_entries

import auditkit as ak

RoundTrip = Callable[[str, ak.Envelope], ak.Archive]


@pytest.fixture
def round_trip(r: redis.Redis, tmp_path: Path) -> RoundTrip:
    """Export a stream with an envelope, verify it, restore it, compare byte for byte.

    Returns the archive, for more checks on what it holds.
    """

    def run(stream: str, envelope: ak.Envelope) -> ak.Archive:
        archive = ak.Archive(tmp_path / "archive", envelope=envelope, rows_per_file=500)
        original = raw_entries(r, stream)
        report = archive.export(r, stream, progress=False)
        assert report.rows == len(original)
        verified = archive.verify(r, stream)
        assert verified.ok, verified.findings
        restored = f"{stream}:restored"
        assert archive.restore(r, stream, restored) == len(original)
        assert raw_entries(r, restored) == original
        # The archived frame columns come from the envelope, as a read gives them.
        table = archive.events_table(stream=stream)
        assert table.column("event_type").null_count == 0
        return archive

    return run
