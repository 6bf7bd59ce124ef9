"""Windows: the names, any pandas alias that tiles time, and one-line refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pytest

import auditkit as ak
from auditkit._drift.windows import parse_window


def _ts(*texts):
    stamps = [datetime.fromisoformat(t).replace(tzinfo=UTC) if t else None for t in texts]
    return pa.array(stamps, pa.timestamp("ms", tz="UTC"))


@pytest.mark.parametrize(
    ("window", "labels"),
    [
        ("hour", ["2026-01-03 10:00", "2026-01-31 23:00", "2026-02-01 00:00"]),
        ("h", ["2026-01-03 10:00", "2026-01-31 23:00", "2026-02-01 00:00"]),
        ("15min", ["2026-01-03 10:15", "2026-01-31 23:45", "2026-02-01 00:00"]),
        ("30s", ["2026-01-03 10:17:00", "2026-01-31 23:59:30", "2026-02-01 00:00:00"]),
        ("day", ["2026-01-03", "2026-01-31", "2026-02-01"]),
        # Counted from 1970-01-01, as Timestamp.floor counts: whatever the first event.
        ("2D", ["2026-01-03", "2026-01-31", "2026-01-31"]),
        ("week", ["2025-12-29", "2026-01-26", "2026-01-26"]),  # Monday to Sunday
        ("W-MON", ["2025-12-30", "2026-01-27", "2026-01-27"]),  # Tuesday to Monday
        ("month", ["2026-01", "2026-01", "2026-02"]),
        ("M", ["2026-01", "2026-01", "2026-02"]),
        ("ME", ["2026-01", "2026-01", "2026-02"]),
        ("MS", ["2026-01", "2026-01", "2026-02"]),
        ("2M", ["2026-01", "2026-01", "2026-01"]),
        ("QE", ["2026Q1", "2026Q1", "2026Q1"]),
        ("QS-FEB", ["2025-11", "2025-11", "2026-02"]),  # Nov-Jan, Feb-Apr
        ("Y", ["2026", "2026", "2026"]),
        ("YS", ["2026", "2026", "2026"]),
    ],
)
def test_windows_cut_record_time(window, labels):
    w = parse_window(window)
    starts = w.starts(_ts("2026-01-03T10:17:05", "2026-01-31T23:59:59", "2026-02-01T00:00:00"))
    assert [w.label(s) for s in starts.to_pylist()] == labels


def test_an_event_without_a_time_has_its_own_window():
    w = parse_window("day")
    assert [w.label(s) for s in w.starts(_ts("2026-01-03T10:00:00", None)).to_pylist()] == [
        "2026-01-03",
        "(no time)",
    ]


@pytest.mark.parametrize(
    "bad", ["year", "fortnight", "H", "", "B", "BME", "bh", "0D", "-1h", "500us", 3]
)
def test_a_bad_window_is_refused_in_one_line_naming_it(bad):
    with pytest.raises(ValueError) as raised:
        parse_window(bad)
    message = str(raised.value)
    assert f"window `{bad if isinstance(bad, str) and bad else repr(bad)}`" in message
    assert "15min" in message and "`day`" in message
    assert "\n" not in message


def test_hourly_drift_end_to_end(r):
    base = int(datetime(2026, 3, 1, 9, tzinfo=UTC).timestamp() * 1000)
    for minute in range(0, 180, 20):
        payload = {"amount": 5} if minute < 120 else {"amount": 5, "coupon": "X"}
        r.xadd(
            "shop",
            {"type": "Paid", "payload": json.dumps(payload)},
            id=f"{base + minute * 60_000}-0",
        )
    report = ak.schema_drift((r, "shop"), window="hour")
    assert list(report.timeline["window"]) == [
        "2026-03-01 09:00",
        "2026-03-01 10:00",
        "2026-03-01 11:00",
    ]
    assert list(report.timeline["events"]) == [3, 3, 3]
    assert list(report.findings["detail"]) == [
        "`Paid` (no version): field `coupon` appears in 2026-03-01 11:00 (in 100% of that "
        "window's events) with no new schema version"
    ]
    quarter_hours = ak.schema_drift((r, "shop"), window="15min")
    assert len(quarter_hours.timeline) == 9 and quarter_hours.window == "15min"
    assert repr(quarter_hours).startswith("<DriftReport 1 event types, windows by 15min")


def test_a_bad_window_fails_before_any_read(r):
    # The stream does not exist: the window is checked first.
    with pytest.raises(ValueError, match="window `weekly` is not a window"):
        ak.schema_drift((r, "no-such-stream"), window="weekly")
