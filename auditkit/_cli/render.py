"""How the command line prints rows: a table that fits the terminal, JSON records or CSV.

pandas is imported by the functions that print, not here: `auditkit --help` stays fast.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FORMATS",
    "SHOWN",
    "WIDTH",
    "human_bytes",
    "human_count",
    "human_duration",
    "print_frame",
    "table_text",
    "terminal_width",
    "wrap_text",
]

SHOWN = "auditkit.shown"
"""The error handler auditkit registers: a key's byte that is not UTF-8 written `\\xNN`."""

FORMATS = ("table", "json", "csv")
WIDTH = 100
"""The widest table printed when the output is not a terminal (a file, a pipe, CI logs)."""

GAP = "  "
MIN_WRAPPED = 8
"""A wrapped column keeps at least this many characters, or its header's width."""
MAX_KEPT_WORD = 24
"""A word up to this long is not broken when the columns can fit without breaking it."""


def print_frame(frame: pd.DataFrame, output_format: str, *, width: int | None = None) -> None:
    """Print `frame` as a table (fitting `width`, default the terminal's), JSON or CSV."""
    import pandas as pd

    if output_format == "json":
        frame = frame.copy()
        # JSON text is UTF-8: a key that is not is written as shown (`\\xNN`), as elsewhere.
        for column in [c for c in frame.columns if pd.api.types.is_object_dtype(frame[c])]:
            frame[column] = frame[column].map(_shown)
        print(frame.to_json(orient="records", date_format="iso", default_handler=str))
    elif output_format == "csv":
        frame = frame.copy()
        # A list or an object in a cell (a payload's array) is written as JSON, not repr.
        for column in [c for c in frame.columns if pd.api.types.is_object_dtype(frame[c])]:
            frame[column] = frame[column].map(_json_if_nested)
        print(frame.to_csv(index=False), end="")
    elif frame.empty:
        print("(none)")
    else:
        print(table_text(frame, width=width or terminal_width()))


def terminal_width() -> int:
    """The terminal's width; $COLUMNS or 100 when the output is not a terminal."""
    if sys.stdout.isatty():
        return max(shutil.get_terminal_size((WIDTH, 24)).columns, 40)
    try:
        return max(int(os.environ.get("COLUMNS", WIDTH)), 40)
    except ValueError:
        return WIDTH


def table_text(frame: pd.DataFrame, *, width: int = WIDTH) -> str:
    """Rows as an aligned table no wider than `width`: text left-aligned, numbers right,
    long text wrapped within its column, sizes, durations and counts in human units."""
    import pandas as pd

    headers = [str(c) for c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    cells = [
        [_cell(value, header) for value in frame[column]]
        for column, header in zip(frame.columns, headers, strict=True)
    ]
    natural = [
        max([len(h), *(len(line) for cell in col for line in cell.splitlines() or [""])])
        for h, col in zip(headers, cells, strict=True)
    ]
    longest_word = [
        max((len(word) for cell in col for word in cell.split()), default=0) for col in cells
    ]
    widths = _fit(natural, headers, numeric, longest_word, width)
    if widths is None:  # too many columns to keep their words whole: one block per row
        return _expanded(headers, cells, width)
    wrapped_headers = [_wrap(h, w) for h, w in zip(headers, widths, strict=True)]
    lines = _rows(wrapped_headers, widths, numeric)
    lines += _rows(["-" * w for w in widths], widths, [False] * len(widths))
    for row in zip(*cells, strict=True):
        lines += _rows(
            [_wrap(cell, w) for cell, w in zip(row, widths, strict=True)], widths, numeric
        )
    return "\n".join(line.rstrip() for line in lines)


def wrap_text(text: str, width: int, *, toml: bool = False) -> str:
    """Text lines no wider than `width`, continued under their indent; in TOML only the
    comments wrap (each continued line a comment), as a wrapped value would not parse."""
    out: list[str] = []
    for line in text.split("\n"):
        if len(line) <= width:
            out.append(line)
        elif line.startswith("#"):
            out += textwrap.wrap(
                line[1:].strip(), width, initial_indent="# ", subsequent_indent="# "
            )
        elif toml:
            out.append(line)
        else:
            indent = " " * (len(line) - len(line.lstrip()) + 2)
            out += textwrap.wrap(line, width, subsequent_indent=indent, break_on_hyphens=False) or [
                ""
            ]
    return "\n".join(out)


def human_bytes(value: float) -> str:
    """`1536` -> `1.5 KiB`."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:,.0f} B" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_duration(ms: float) -> str:
    """Milliseconds as `850 ms`, `1.2 s`, `3 min`, `2 h`, `4 d`."""
    ms = float(ms)
    for limit, divisor, unit in (
        (1_000, 1, "ms"),
        (60_000, 1_000, "s"),
        (3_600_000, 60_000, "min"),
        (86_400_000, 3_600_000, "h"),
    ):
        if abs(ms) < limit:
            shown = ms / divisor
            precise = unit != "ms" and shown < 10 and round(shown, 1) != round(shown)
            return f"{shown:.1f} {unit}" if precise else f"{shown:.0f} {unit}"
    return f"{ms / 86_400_000:,.0f} d"


def human_count(value: float) -> str:
    """`1234567` -> `1,234,567`, `2968.03` -> `2,968.03`: every digit the value has (the
    shortest text that reads back as it), grouped; a table never rounds a number away."""
    number = float(value)
    if number.is_integer() and abs(number) < 1e16:
        return f"{int(number):,}"
    text = repr(number)
    if "e" in text or "n" in text:  # 1e-07, inf, nan: as Python writes them
        return text
    whole, _, fraction = text.partition(".")
    sign = "-" if whole.startswith("-") else ""
    return f"{sign}{int(whole.lstrip('-')):,}.{fraction}"


def _plain(value: Any) -> Any:
    """A numpy array (a list in a cell) as a list; anything else as it is."""
    import numpy as np

    return value.tolist() if isinstance(value, np.ndarray) else value


def _json_if_nested(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    return value


def _shown(value: Any) -> Any:
    return value.encode("utf-8", SHOWN).decode() if isinstance(value, str) else value


def _cell(value: Any, header: str) -> str:
    """One value as the table shows it."""
    value = _plain(value)
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v, "") for v in value)
    if isinstance(value, dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    if value is None or (isinstance(value, float) and math.isnan(value)) or _is_missing(value):
        return ""
    if isinstance(value, bool | _numpy_bool()):
        return "yes" if value else "no"
    if isinstance(value, numbers.Real):  # numpy's numbers too
        number = float(value)
        if header.endswith("bytes") or header in ("memory", "size"):
            return human_bytes(number)
        if header.endswith("_ms") or header in ("idle", "age"):
            return human_duration(number)
        return human_count(int(number) if isinstance(value, numbers.Integral) else number)
    if isinstance(value, timedelta):
        return human_duration(value.total_seconds() * 1000)
    if isinstance(value, datetime):
        shown = value.strftime("%Y-%m-%d %H:%M:%S")
        return shown + (f".{value.microsecond // 1000:03d}" if value.microsecond else "")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(_shown(str(value)))


def _numpy_bool() -> type:
    import numpy as np

    return np.bool_


def _is_missing(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # not one value
        return False


def _fit(
    natural: list[int],
    headers: list[str],
    numeric: list[bool],
    longest_word: list[int],
    width: int,
) -> list[int] | None:
    """Column widths summing (with gaps) to at most `width`, narrowing the widest first;
    None when the columns cannot fit.

    A column keeps its header and its longest word (up to `MAX_KEPT_WORD`) whole: an ID,
    `event-after-terminal` stay on one line, a sentence wraps between words.
    """
    room = width - len(GAP) * (len(natural) - 1)
    floors = [
        n if is_number else min(n, max(MIN_WRAPPED, len(h), min(word, MAX_KEPT_WORD)))
        for n, h, is_number, word in zip(natural, headers, numeric, longest_word, strict=True)
    ]
    widths = _narrowed(natural, floors, room)
    return widths if sum(widths) <= room else None


def _expanded(headers: list[str], cells: list[list[str]], width: int) -> str:
    """Each row as a block of `column  value` lines, as psql's expanded display."""
    names = min(max(len(h) for h in headers), width // 3)
    values = width - names - len(GAP)
    lines: list[str] = []
    for number, row in enumerate(zip(*cells, strict=True), 1):
        lines.append(f"-[ row {number} ]".ljust(width, "-"))
        for header, cell in zip(headers, row, strict=True):
            lines += _rows(
                [_wrap(header, names), _wrap(cell, values)], [names, values], [False] * 2
            )
    return "\n".join(line.rstrip() for line in lines)


def _narrowed(widths: list[int], floors: list[int], room: int) -> list[int]:
    widths = list(widths)
    while sum(widths) > room:
        candidates = [i for i, w in enumerate(widths) if w > floors[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for part in text.splitlines() or [""]:
        lines += textwrap.wrap(
            part, width, break_long_words=True, break_on_hyphens=False, drop_whitespace=True
        ) or [""]
    return lines


def _rows(cells: Sequence[list[str] | str], widths: list[int], right: list[bool]) -> list[str]:
    """One table row, as many lines as its tallest wrapped cell."""
    columns = [[c] if isinstance(c, str) else c for c in cells]
    height = max(len(c) for c in columns)
    return [
        GAP.join(
            (c[i] if i < len(c) else "").rjust(w) if r else (c[i] if i < len(c) else "").ljust(w)
            for c, w, r in zip(columns, widths, right, strict=True)
        )
        for i in range(height)
    ]
