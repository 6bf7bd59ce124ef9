from datetime import UTC, date, datetime, timedelta, timezone

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditkit import InvalidStreamID, StreamID
from auditkit._redis.ids import MAX_PART, datetime_to_ms

parts = st.integers(min_value=0, max_value=MAX_PART)
ids = st.builds(StreamID, parts, parts)
# Around the edges where roll-over happens, not only in the middle of the range.
edgy_parts = st.one_of(parts, st.sampled_from([0, 1, MAX_PART - 1, MAX_PART]))
edgy_ids = st.builds(StreamID, edgy_parts, edgy_parts)


@given(ids)
def test_text_round_trip(sid):
    assert StreamID.parse(str(sid)) == sid
    assert StreamID.parse(str(sid).encode()) == sid


@given(edgy_ids)
def test_next_is_the_immediate_successor(sid):
    if sid == StreamID.MAX:
        with pytest.raises(InvalidStreamID, match="largest"):
            sid.next()
        return
    following = sid.next()
    assert following > sid
    assert following.prev() == sid
    # Nothing fits between an ID and its successor: compare as 128-bit integers.
    assert (following.ms << 64 | following.seq) - (sid.ms << 64 | sid.seq) == 1


@given(edgy_ids)
def test_prev_is_the_immediate_predecessor(sid):
    if sid == StreamID.MIN:
        with pytest.raises(InvalidStreamID, match="smallest"):
            sid.prev()
        return
    before = sid.prev()
    assert before < sid
    assert before.next() == sid
    assert (sid.ms << 64 | sid.seq) - (before.ms << 64 | before.seq) == 1


@given(ids, ids)
def test_order_is_the_order_of_the_pair(a, b):
    assert (a < b) == ((a.ms, a.seq) < (b.ms, b.seq))


def test_sequence_roll_over():
    assert StreamID(5, MAX_PART).next() == StreamID(6, 0)
    assert StreamID(6, 0).prev() == StreamID(5, MAX_PART)
    assert str(StreamID(5, MAX_PART)) == f"5-{MAX_PART}"


def test_ms_only_takes_the_given_sequence():
    assert StreamID.parse("1700000000000") == StreamID(1700000000000, 0)
    assert StreamID.parse("1700000000000", seq=MAX_PART) == StreamID(1700000000000, MAX_PART)


@pytest.mark.parametrize(
    "text", ["", "-", "abc", "1-2-3", "1.5", "-1", f"{MAX_PART + 1}-0", f"0-{MAX_PART + 1}", "1 -2"]
)
def test_bad_text_names_the_value(text):
    with pytest.raises(InvalidStreamID) as info:
        StreamID.parse(text)
    assert f"`{text}`" in str(info.value) or "out of range" in str(info.value)
    assert "\n" not in str(info.value)


def test_parts_are_checked():
    with pytest.raises(InvalidStreamID):
        StreamID(-1, 0)
    with pytest.raises(InvalidStreamID):
        StreamID(0, MAX_PART + 1)
    with pytest.raises(InvalidStreamID):
        StreamID(True, 0)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=253402300799999))
def test_datetime_round_trip_at_millisecond_precision(ms):
    sid = StreamID(ms, 0)
    when = sid.to_datetime()
    assert when.tzinfo is UTC
    assert StreamID.from_datetime(when) == sid


@given(
    st.datetimes(
        min_value=datetime(1970, 1, 1, 0, 0, 1),
        max_value=datetime(9999, 1, 1),
        timezones=st.just(None),
    )
)
def test_datetime_floor_and_ceil_bracket_the_instant(naive):
    floor = datetime_to_ms(naive)
    ceil = datetime_to_ms(naive, ceil=True)
    instant = naive.replace(tzinfo=UTC)
    assert StreamID(floor).to_datetime() <= instant <= StreamID(ceil).to_datetime()
    assert ceil - floor == (0 if naive.microsecond % 1000 == 0 else 1)


def test_naive_is_utc_and_aware_is_converted():
    naive = datetime(2026, 3, 1, 12, 0)
    aware = datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert StreamID.from_datetime(naive) == StreamID.from_datetime(aware)
    assert StreamID.from_datetime(naive).ms == 1772366400000


def test_dates_and_pandas_timestamps():
    assert StreamID.from_datetime(date(2026, 3, 1)).ms == 1772323200000
    ts = pd.Timestamp("2026-03-01T00:00:00.000000001Z")
    assert datetime_to_ms(ts) == 1772323200000
    assert datetime_to_ms(ts, ceil=True) == 1772323200001


def test_before_the_epoch_is_refused():
    with pytest.raises(InvalidStreamID, match="1969"):
        StreamID.from_datetime(datetime(1969, 12, 31))


def test_repr_and_str():
    sid = StreamID(1, 2)
    assert str(sid) == "1-2"
    assert repr(sid) == "StreamID('1-2')"
