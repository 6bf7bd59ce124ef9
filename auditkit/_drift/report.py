"""Schema drift: how each event type's payload shape changes over time, and whether it says so.

One pass over the events, in batches (bounded memory for any source), folds them into
cells: per event type, schema version and time window, how many events, from which
producers, and per payload field how often it is present and with which JSON types
(`collect`). The report compares windows and versions (`rules`), checks a registry of
declared schemas (`registry`) and draws the result (`plots`).
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from auditkit._display import card_html, table_html
from auditkit._drift import plots
from auditkit._drift.collect import Cells, Observed, collect, version_order
from auditkit._drift.registry import (
    Registry,
    RegistrySource,
    load_registry,
    observed_schemas,
    write_registry,
)
from auditkit._drift.rules import drift_findings
from auditkit._drift.windows import parse_window
from auditkit._exceptions import MissingEffectiveTime, NoEvents
from auditkit._findings import findings_html
from auditkit._load.envelope import Envelope, EnvelopeSpec
from auditkit._load.reader import iter_batches
from auditkit._load.sources import (
    AGGREGATE_PLACEHOLDER,
    ArchiveSource,
    Clock,
    RedisSource,
    Source,
    open_source,
)
from auditkit._load.unify import MIXED_TYPES
from auditkit._types import ArchivedEvents, EventSource

__all__ = ["DriftReport", "schema_drift"]


def schema_drift(
    events: EventSource,
    *,
    window: str = "month",
    registry: RegistrySource = None,
    upcasters: Any = None,
    producer_field: str = "producer",
    envelope: EnvelopeSpec = None,
    batch_size: int = 50_000,
    clock: Clock = "record",
) -> DriftReport:
    """How each event type's payload schema changed over time, and the drift findings.

    Every kind of source gives the same report for the same events: types are read from
    the typed `payload.<path>` columns a load produces (docs/drift.md says how). A
    DataFrame is the exception: pandas drops the loader's mark of fields whose values had
    several types, and the report warns when that may hide a number turned text.

    Args:
        events: a table or DataFrame from `read_arrow`/`read_pandas`, a `(client, stream)`
            pair (read in batches; `stream` a key, a glob or a template such as
            `"account:{aggregate_id}"`), or an `Archive` (read file by file).
        window: the time bucket of the timeline (record time, UTC): `"hour"`, `"day"`,
            `"week"` (Monday to Sunday), `"month"`, or any pandas offset or period alias
            that tiles time, such as `"15min"`, `"6h"`, `"2D"`, `"W-MON"`, `"MS"`, `"QE"`.
        registry: declared schemas, a folder of `<event type>/v<version>.json` JSON Schema
            files, or a dict `{event type: {version: schema}}`. `report.registry()` makes
            one from what was observed.
        upcasters: a Projection's upcasters (or the Projection itself): versions that occur
            with no path to the current version are findings.
        producer_field: the field naming who wrote an event, reported with regressions.
        envelope: how to read a `(client, stream)` source: an Envelope, a dict, a preset
            name or a TOML file (see `Envelope.of`).
        batch_size: events held in memory at once.
        clock: `"record"` puts each event in the window of its stream ID's time;
            `"effective"` in that of its `occurred_at` (for history loaded later than it
            happened, where every record time is the day of the load). The timeline's
            first and last times are then effective times too.

    Returns:
        A DriftReport: `.findings` (the columns of `ak.audit`), `.timeline` (one row per
        type, version and window), `.fields` (presence and types per field), `.plot()`.

    Raises:
        ValueError: `window` is not a window (one line, with examples).
        MissingEffectiveTime: `clock="effective"` and an event has no `occurred_at`.
        NoEvents: the source holds no events, or no event has an event type; an empty
            report would read as "no drift". (A stream the envelope does not fit raises
            `EnvelopeMismatch` while it is read.)

    Example:
        >>> report = schema_drift((r, "orders"), window="week")
        >>> report
        <DriftReport 4 event types, windows by week, findings={'warning': 1}>
        >>> print(report.findings.iloc[0]["detail"])  # doctest: +NORMALIZE_WHITESPACE
        field `amount` was written with values of several types, which the loader made
        text, yet every value reads as integer: the events that wrote another type (`"15"`
        for `15`, say) cannot be told apart (event types: `OrderPaid`, `OrderPlaced`,
        `OrderRefunded`)
    """
    windows = parse_window(window)  # before reading: a wrong window fails at once
    if clock not in ("record", "effective"):
        raise ValueError(f"clock must be `record` or `effective`, got `{clock}`.")
    if hasattr(upcasters, "upcasters"):
        upcasters = upcasters.upcasters  # a Projection
    source = open_source(events, envelope=envelope)
    declared = load_registry(registry)  # before reading: a wrong folder fails at once
    batches = _batches(source, batch_size)
    if clock == "effective":
        batches = _by_effective_time(batches)
    observed = collect(batches, window=windows, producer_field=producer_field)
    _check_observed(observed, events, envelope)
    if isinstance(events, pd.DataFrame) and observed.look_typed:
        _warn_unmarked(events, observed.look_typed)
    return DriftReport(observed, windows.name, declared, dict(upcasters or {}))


class DriftReport:
    """Schema drift over time: findings, a per-type timeline, field statistics, plots.

    Made by `schema_drift`. Its parts (collecting, rules, registry, plots) are handed the
    cells and tables they need; the report only holds them together.

    Attributes:
        findings: one row per finding, the columns of `ak.audit`.
        timeline: one row per event type, schema version and window: events, first and
            last record time, producers, number of fields.
        fields: one row per event type, version, window and payload field: the share of
            events carrying it (`present`), `null_rate`, and its JSON `types`.
        window: the window it was made with, as given (`"week"`, `"15min"`).
    """

    def __init__(
        self,
        observed: Observed,
        window: str,
        registry: Registry | None,
        upcasters: dict[tuple[str, int], Any],
    ) -> None:
        self.window = window
        self._cells: Cells = observed.cells
        self._stream = ", ".join(observed.streams) if observed.streams else None
        self.timeline = self._timeline()
        self.fields = self._fields()
        self.findings = drift_findings(
            observed.cells,
            mixed=observed.mixed,
            registry=registry,
            upcasters=upcasters,
            stream=self._stream,
        )

    def __repr__(self) -> str:
        counts = self.findings["severity"].value_counts().to_dict()
        types = self.timeline["event_type"].nunique() if len(self.timeline) else 0
        return f"<DriftReport {types} event types, windows by {self.window}, findings={counts}>"

    def _repr_html_(self) -> str:
        timeline = self.timeline
        serious = int((self.findings["severity"] != "info").sum())
        status = (f"{serious} warning or worse", "#d97706") if serious else ("no drift", "#16a34a")
        facts = [
            ("events", f"{int(timeline['events'].sum()):,}" if len(timeline) else "0"),
            ("event types", timeline["event_type"].nunique() if len(timeline) else 0),
            ("windows", f"by {self.window}"),
        ]
        if self._stream:
            facts.insert(0, ("stream", self._stream))
        return card_html(
            "Schema drift",
            status=status,
            facts=facts,
            sections=[
                ("Findings", findings_html(self.findings)),
                ("Versions seen", table_html(self._versions_seen())),
            ],
        )

    def _versions_seen(self) -> pd.DataFrame:
        """One row per event type and version: events, first and last time."""
        timeline = self.timeline
        if timeline.empty:
            return pd.DataFrame(columns=["event_type", "schema_version", "events"])
        return (
            timeline.groupby(["event_type", "schema_version"], dropna=False, sort=False)
            .agg(events=("events", "sum"), first_ts=("first_ts", "min"), last_ts=("last_ts", "max"))
            .reset_index()
        )

    # ---- registry and plots -----------------------------------------------------------

    def registry(self) -> dict[str, dict[str, dict[str, Any]]]:
        """JSON Schemas of what was observed, `{event type: {version: schema}}`: a start."""
        return observed_schemas(self._cells)

    def write_registry(self, folder: str | os.PathLike[str]) -> Path:
        """Write `registry()` as `<folder>/<event type>/v<version>.json`; returns the folder."""
        return write_registry(self.registry(), folder)

    def plot(self, event_type: str | None = None) -> Any:
        """Versions over time and field presence of one event type (the busiest by default)."""
        return plots.plot(self.timeline, self.fields, window=self.window, event_type=event_type)

    def plot_versions(self, event_type: str | None = None, *, ax: Any = None) -> Any:
        """Events per window and schema version, stacked."""
        return plots.plot_versions(self.timeline, window=self.window, event_type=event_type, ax=ax)

    def plot_fields(self, event_type: str | None = None, *, ax: Any = None) -> Any:
        """A heat map: share of events carrying each payload field, per window."""
        return plots.plot_fields(
            self.timeline, self.fields, window=self.window, event_type=event_type, ax=ax
        )

    # ---- tables -------------------------------------------------------------------------

    def _timeline(self) -> pd.DataFrame:
        rows = [
            {
                "event_type": t,
                "schema_version": v,
                "window": c.label,
                "events": c.events,
                "first_ts": c.first_ts,
                "last_ts": c.last_ts,
                "producers": ", ".join(sorted(c.producers)) or None,
                "fields": len(c.present),
            }
            for (t, v, _), c in self._cells.items()
        ]
        columns = [
            "event_type",
            "schema_version",
            "window",
            "events",
            "first_ts",
            "last_ts",
            "producers",
            "fields",
        ]
        return _sorted(pd.DataFrame(rows, columns=columns), ["event_type", "window"])

    def _fields(self) -> pd.DataFrame:
        rows = []
        for (t, v, _), c in self._cells.items():
            for path in sorted(set(c.present) | set(c.types)):
                types = c.types.get(path, Counter())
                rows.append(
                    {
                        "event_type": t,
                        "schema_version": v,
                        "window": c.label,
                        "field": path,
                        "present": c.present.get(path, 0) / c.events if c.events else 0.0,
                        "null_rate": 1 - (c.present.get(path, 0) / c.events if c.events else 0),
                        "types": "|".join(sorted(types)),
                    }
                )
        columns = [
            "event_type",
            "schema_version",
            "window",
            "field",
            "present",
            "null_rate",
            "types",
        ]
        return _sorted(pd.DataFrame(rows, columns=columns), ["event_type", "window", "field"])


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows by type and window, then version, then the other keys: one order for any source."""
    order = frame["schema_version"].map(version_order)
    frame = frame.assign(
        _rank=order.map(lambda o: o[0]),
        _number=order.map(lambda o: o[1]),
        _text=order.map(lambda o: o[2]),
    )
    by = [keys[0], keys[1], "_rank", "_number", "_text", *keys[2:]]
    return frame.sort_values(by, ignore_index=True, kind="stable").drop(
        columns=["_rank", "_number", "_text"]
    )


def _batches(source: Source, batch_size: int) -> Iterator[pa.Table]:
    """The source's events in bounded batches, without the payload's raw text."""
    # Source.batches adds the payload's text to every batch, which drift does not read
    # (types come from the typed columns) and a wide payload pays dearly for: a third of a
    # load from Redis, a Python pass per event from an archive.
    if isinstance(source, RedisSource):
        stream = source.stream
        if source.template is not None:
            stream = source.template.replace(AGGREGATE_PLACEHOLDER, "*")
        batches = iter_batches(
            source.client, stream, batch_size=batch_size, envelope=source.envelope
        )
        for batch in batches:
            yield pa.Table.from_batches([batch])
    elif isinstance(source, ArchiveSource):
        for table in source.archive.iter_tables(stream=source.stream):
            for offset in range(0, table.num_rows, batch_size):
                yield table.slice(offset, batch_size)
    else:
        yield from source.batches(batch_size=batch_size)


def _check_observed(observed: Observed, events: EventSource, envelope: EnvelopeSpec) -> None:
    """Refuse to report on nothing: no events, or events none of which has a type."""
    total = sum(cell.events for cell in observed.cells.values())
    source = _describe(events, observed.streams)
    if not total:
        raise NoEvents(
            f"No events to check in {source}: it is empty (or the range holds none). Check "
            "the stream name and range, or the archive folder.",
            source=source,
            missing="events",
        )
    if all(t is None for t, _, _ in observed.cells):
        if isinstance(events, tuple) and not isinstance(events[0], ArchivedEvents):
            concept = Envelope.of(envelope).concepts["event_type"]
            cause = (
                f"the envelope reads it from {concept.describe()}, which none of its entries has"
                if concept.sources
                else "the envelope names no event type"
            )
        else:
            cause = "its `event_type` column is null in every row"
        raise NoEvents(
            f"None of the {total:,} events in {source} has an event type: {cause}. Name the "
            'field that holds it, e.g. Envelope(event_type="event"), and load again.',
            source=source,
            missing="event_type",
        )


def _describe(events: EventSource, streams: list[str]) -> str:
    """The source, as an error message names it."""
    if isinstance(events, tuple):
        return f"`{events[1]}`"
    names = ", ".join(f"`{s}`" for s in streams)
    if isinstance(events, pd.DataFrame):
        return f"the DataFrame of {names}" if names else "the DataFrame"
    if isinstance(events, pa.Table):
        return f"the table of {names}" if names else "the table"
    return f"{events!r}"


def _warn_unmarked(frame: pd.DataFrame, paths: set[str]) -> None:
    """Say that a DataFrame's text columns may hide numbers: pandas drops the loader's mark."""
    if MIXED_TYPES.decode() in frame.attrs:
        return  # the DataFrame says which columns are mixed: the others are text
    listed = ", ".join(f"`{p}`" for p in sorted(paths))
    warnings.warn(
        f"Payload field(s) {listed} hold text that reads as numbers or booleans; a DataFrame "
        "does not keep the loader's mark of fields whose values had several types, so they "
        "count as text here, and a change from number to text would not show. Pass the "
        "table from read_arrow, or (client, stream), for their types.",
        UserWarning,
        stacklevel=3,
    )


def _by_effective_time(batches: Iterable[pa.Table]) -> Iterator[pa.Table]:
    """Batches whose `ts` is the events' effective time, so windows follow `occurred_at`."""
    for batch in batches:
        if not batch.num_rows:
            yield batch
            continue
        occurred = batch.column("occurred_at") if "occurred_at" in batch.column_names else None
        if occurred is None or occurred.null_count:
            missing = batch.num_rows if occurred is None else occurred.null_count
            raise MissingEffectiveTime(
                f"{missing:,} events have no `occurred_at`, so they have no place in effective "
                "time. Name the field that holds it with the envelope's occurred_at, or use "
                "clock='record'."
            )
        ts = pc.cast(occurred, pa.timestamp("ms", tz="UTC"), safe=False)
        yield batch.set_column(batch.schema.get_field_index("ts"), "ts", ts)
