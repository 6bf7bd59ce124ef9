"""How the command line prints rows: a table, JSON records or CSV."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["SHOWN", "print_frame"]

SHOWN = "auditkit.shown"
"""The error handler auditkit registers: a key's byte that is not UTF-8 written `\\xNN`."""


def print_frame(frame: pd.DataFrame, output_format: str) -> None:
    if output_format == "json":
        # JSON text is UTF-8: a key that is not is written as shown (`\\xNN`), as elsewhere.
        for column in [c for c in frame.columns if pd.api.types.is_object_dtype(frame[c])]:
            frame[column] = frame[column].map(_shown)
        print(frame.to_json(orient="records", date_format="iso"))
    elif output_format == "csv":
        print(frame.to_csv(index=False), end="")
    elif frame.empty:
        print("(none)")
    else:
        print(frame.to_string(index=False))


def _shown(value: Any) -> Any:
    return value.encode("utf-8", SHOWN).decode() if isinstance(value, str) else value
