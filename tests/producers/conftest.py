"""Fixtures of the producer tests: streams written by the producer libraries themselves.

The servers are the session's `redis-server` of tests/conftest.py (`r`, flushed per test).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from _producers import archive_holds, raw_entries

import auditkit as ak

RoundTrip = Callable[[str, ak.Envelope], ak.Archive]
Pseudonymise = Callable[..., None]


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


@pytest.fixture
def pseudonymise(r: redis.Redis, tmp_path: Path) -> Pseudonymise:
    """Export a stream with one pseudonymisation rule; assert no value of `clear` is left
    in the archive's files. With `may_refuse`, refusing the rule with an error naming it
    passes too (for rules auditkit cannot apply to a layout); ignoring it is a leak."""

    def run(
        stream: str,
        envelope: ak.Envelope,
        rule: str,
        clear: list[str],
        *,
        may_refuse: bool = False,
    ) -> None:
        plain = ak.Archive(tmp_path / "plain", envelope=envelope)
        plain.export(r, stream, progress=False)
        assert archive_holds(tmp_path / "plain", clear[0])  # the search finds them
        root = tmp_path / "private"
        try:
            archive = ak.Archive(root, envelope=envelope, pseudonymize=[rule], key=b"secret")
            archive.export(r, stream, progress=False)
        except (ValueError, ak.AuditKitError) as exc:
            if not may_refuse:
                raise
            assert rule in str(exc)
            return
        leaked = [value for value in clear if archive_holds(root, value)]
        assert not leaked, f"{len(leaked)} of {len(clear)} in the clear, e.g. {leaked[:3]}"

    return run
