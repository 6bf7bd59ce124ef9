"""The table renderer: fits a width, wraps long text, aligns, and shows human units."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditkit._cli.render import human_bytes, human_count, human_duration, table_text


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0, "0 B"), (1023, "1,023 B"), (1536, "1.5 KiB"), (5 * 1024**2, "5.0 MiB"),
     (3 << 30, "3.0 GiB")],
)  # fmt: skip
def test_bytes(value, shown):
    assert human_bytes(value) == shown


@pytest.mark.parametrize(
    ("ms", "shown"),
    [(850, "850 ms"), (1_200, "1.2 s"), (45_000, "45 s"), (180_000, "3 min"), (7_200_000, "2 h"),
     (3 * 86_400_000, "3 d")],
)  # fmt: skip
def test_durations(ms, shown):
    assert human_duration(ms) == shown


def test_counts_have_separators():
    assert human_count(1_234_567) == "1,234,567"
    assert human_count(0.125) == "0.125"
    # Sums of money and measurements show every digit they have: nothing rounded away.
    assert human_count(2968.03) == "2,968.03"
    assert human_count(1234567.891) == "1,234,567.891"
    assert human_count(-9384.19) == "-9,384.19"
    assert human_count(1e-7) == "1e-07" and human_count(2.5e20) == "2.5e+20"


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "check": ["event-after-terminal", "clock-skew"],
            "stream": ["tenant:" + "x" * 150, "orders"],
            "count": [1_234_567, 3],
            "memory_bytes": [5 * 1024**2, 2048],
            "detail": [
                "An event arrived after the aggregate's terminal event `Closed`: " * 5,
                "short",
            ],
        }
    )


def test_a_wide_frame_fits_100_columns_and_loses_no_text():
    text = table_text(_frame(), width=100)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100, text
    # Wrapped, not cut: every character of the long key and detail is still there.
    assert text.count("x") == 150
    assert text.count("`Closed`:") == 5
    assert "1,234,567" in text and "5.0 MiB" in text and "2.0 KiB" in text


def test_text_is_left_aligned_and_numbers_right_aligned():
    text = table_text(_frame(), width=100)
    header, _, *rows = text.splitlines()
    detail_at = header.index("detail")
    # The detail of every row starts where its header does (left-aligned text).
    assert rows[0][detail_at:].startswith("An event")
    short_row = next(row for row in rows if row.startswith("clock-skew"))
    assert short_row[detail_at:].startswith("short")
    # Numbers end where their column ends (right-aligned).
    count_end = header.index("count") + len("count")
    assert short_row[:count_end].endswith(" 3")


@given(
    st.lists(st.text(alphabet="abc -_:xyz", min_size=0, max_size=300), min_size=1, max_size=5),
    st.integers(min_value=40, max_value=160),
)
def test_no_line_exceeds_the_width(texts, width):
    frame = pd.DataFrame({f"column_{i}": [t] for i, t in enumerate(texts)})
    assert all(len(line) <= width for line in table_text(frame, width=width).splitlines())


def test_wrapped_toml_still_parses_the_same():
    import tomllib

    from auditkit._cli.render import wrap_text

    text = (
        "# Envelope for stream `" + "tenant:" * 30 + "orders`, proposed from 4 entries.\n"
        "event_type = 'kind'\n"
        "aggregate_id_from_key = '" + "x" * 120 + "'\n"
    )
    wrapped = wrap_text(text, 60, toml=True)
    assert tomllib.loads(wrapped) == tomllib.loads(text)
    comments = [line for line in wrapped.splitlines() if line.startswith("#")]
    assert len(comments) > 1 and all(len(line) <= 60 for line in comments)


def test_wrapped_text_keeps_its_indent():
    from auditkit._cli.render import wrap_text

    wrapped = wrap_text("  field  50%  " + "an example value " * 10, 40)
    lines = wrapped.splitlines()
    assert len(lines) > 1 and all(len(line) <= 40 for line in lines)
    assert all(line.startswith("    ") for line in lines[1:])


def test_too_many_columns_print_one_block_per_row():
    import numpy as np

    columns = {f"payload.field_{i}": [f"value-{i}"] * 2 for i in range(12)}
    frame = pd.DataFrame(
        {
            "id": ["1772323200000-0", "1772323200001-0"],
            **columns,
            "tags": [np.array(["a", "b"])] * 2,
        }
    )
    text = table_text(frame, width=100)
    lines = text.splitlines()
    assert all(len(line) <= 100 for line in lines)
    assert sum(line.startswith("-[ row ") for line in lines) == 2
    # Each value whole on its column's line: IDs are not broken across lines.
    assert "id                1772323200000-0" in lines
    assert "tags              a, b" in lines


def test_csv_writes_a_list_as_json(capsys):
    import numpy as np

    from auditkit._cli.render import print_frame

    print_frame(pd.DataFrame({"tags": [np.array(["a", "b"]), ["c"]], "n": [1, 2]}), "csv")
    assert capsys.readouterr().out.splitlines() == ["tags,n", '"[""a"", ""b""]",1', '"[""c""]",2']
