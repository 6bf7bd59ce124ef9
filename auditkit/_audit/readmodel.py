"""Projection drift: does a live read model hold what the events say it should?"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pandas as pd

from auditkit._findings import Findings
from auditkit._load.sources import AGGREGATE_PLACEHOLDER
from auditkit._redis.connection import Client, redis_errors
from auditkit._redis.streams import GLOB_CHARS
from auditkit._redis.text import text
from auditkit._types import EventSource

if TYPE_CHECKING:
    from auditkit._timetravel.projection import Projection

__all__ = ["check_read_model"]


def check_read_model(
    projection: Projection,
    events: EventSource,
    read_model: pd.DataFrame | tuple[Client, str],
    *,
    fields: Iterable[str] | None = None,
    tolerance: float = 1e-6,
    stream: str | None = None,
) -> pd.DataFrame:
    """Compare a read model with the states `projection` rebuilds from `events`.

    Args:
        projection: a Projection whose states are dicts.
        events: its event source: a table, a DataFrame, an Archive, or `(client, stream)`
            (as `Projection.states_at` takes).
        read_model: a DataFrame indexed by aggregate id (a column per field), or
            `(client, "balance:{aggregate_id}")`: one Redis hash per aggregate.
        fields: the fields to compare (default: those both sides have).
        tolerance: numbers closer than this (relative) are equal.

    Findings: `read-model-drift` (error) per aggregate and field that differ,
    `read-model-missing` (warning) for aggregates the events have and the read model lacks,
    `read-model-extra` (warning) for the reverse.
    """
    expected = projection.states_at(events).set_index("aggregate_id")
    expected = expected.drop(columns=[c for c in ("last_id", "last_ts", "events") if c in expected])
    actual = _read_model_frame(read_model)
    columns = (
        list(fields) if fields is not None else [c for c in expected.columns if c in actual.columns]
    )
    found = Findings(stream)
    for aggregate in expected.index.difference(actual.index):
        found.add(
            "read-model-missing",
            "warning",
            f"the events rebuild `{aggregate}`, the read model has no such entry",
            aggregate_id=aggregate,
        )
    for aggregate in actual.index.difference(expected.index):
        found.add(
            "read-model-extra",
            "warning",
            f"the read model has `{aggregate}`, which no event builds",
            aggregate_id=aggregate,
        )
    for aggregate in expected.index.intersection(actual.index):
        for column in columns:
            want = _plain(expected.at[aggregate, column]) if column in expected.columns else None
            have = _plain(actual.at[aggregate, column]) if column in actual.columns else None
            if not _same(want, have, tolerance):
                found.add(
                    "read-model-drift",
                    "error",
                    f"`{aggregate}`.{column}: the read model says {have!r}, the events "
                    f"say {want!r}",
                    aggregate_id=aggregate,
                )
    return found.frame()


def _read_model_frame(read_model: Any) -> pd.DataFrame:
    if isinstance(read_model, pd.DataFrame):
        return read_model
    client, template = read_model
    if AGGREGATE_PLACEHOLDER not in template:
        raise ValueError(
            f"`{template}` must contain {AGGREGATE_PLACEHOLDER}, e.g. 'balance:{{aggregate_id}}'."
        )
    head, _, tail = template.partition(AGGREGATE_PLACEHOLDER)
    if GLOB_CHARS & set(head + tail):
        raise ValueError(f"`{template}` may not contain glob characters besides the placeholder.")
    rows: dict[str, dict[str, Any]] = {}
    with redis_errors(client, command="SCAN"):
        keys = sorted(client.scan_iter(match=f"{head}*{tail}", count=1_000, _type="hash"))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        values = pipe.execute() if keys else []
    for key, mapping in zip(keys, values, strict=True):
        name = str(text(key))
        aggregate = name[len(head) : len(name) - len(tail) if tail else None]
        rows[aggregate] = {str(text(k)): text(v) for k, v in mapping.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def _same(want: Any, have: Any, tolerance: float) -> bool:
    if _missing(want) and _missing(have):
        return True
    if _missing(want) or _missing(have):
        return False
    try:
        a, b = float(want), float(have)
    except (TypeError, ValueError):
        return str(want) == str(have) or _bool_text(want) == _bool_text(have)
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)


def _plain(value: Any) -> Any:
    """A Python value for messages: numpy scalars as plain numbers."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (str, bytes)) else value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _bool_text(value: Any) -> str:
    text = str(value).strip().lower()
    return {"1": "true", "0": "false"}.get(text, text)
