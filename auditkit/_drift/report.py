"""Schema drift: how each event type's payload shape changes over time, and whether it says so.

One pass over the events, in batches (bounded memory for any source). Per event type,
schema version and time window it counts events, producers, and per payload field how
often it is present and with which JSON types. The report compares windows and versions:

- `version-regression`: an older version emitted again after a newer one appeared;
- `field-added` / `field-removed` / `type-change` (info): what a new version changed;
- `drift-without-version-bump` (warning): the same version, a different shape over time
  (a field appears, disappears or changes type);
- `mixed-types`: a field with several JSON types inside one window and version;
- `undeclared-type` / `undeclared-version` / `schema-mismatch`: against a registry;
- `no-upcaster-path`: a version that occurs but no upcaster chain leads to the current one.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from auditkit._findings import Findings
from auditkit._load.decode import PAYLOAD_PREFIX
from auditkit._load.envelope import Envelope
from auditkit._load.reader import iter_batches
from auditkit._redis.streams import resolve_streams

__all__ = ["DriftReport", "schema_drift"]

Window = Literal["day", "week", "month"]
_FREQ = {"day": "D", "week": "W-SUN", "month": "M"}
_KINDS = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}
_JSON_TYPES = {
    "bool": "boolean",
    "int": "integer",
    "float": "number",
    "str": "string",
    "list": "array",
    "dict": "object",
    "NoneType": "null",
}


@dataclass
class _Cell:
    """What one (event type, version, window) looked like."""

    events: int = 0
    first_ts: Any = None
    last_ts: Any = None
    producers: Counter[str] = field(default_factory=Counter)
    present: Counter[str] = field(default_factory=Counter)  # field path -> events having it
    types: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))


def schema_drift(
    events: Any,
    *,
    window: Window = "month",
    registry: str | os.PathLike[str] | Mapping[str, Any] | None = None,
    upcasters: Any = None,
    producer_field: str = "producer",
    envelope: Envelope | None = None,
    batch_size: int = 50_000,
) -> DriftReport:
    """How each event type's payload schema changed over time, and the drift findings.

    Args:
        events: a table or DataFrame from `read_arrow`/`read_pandas` (load with
            `keep_payload=True` for exact per-event types), a `(client, stream)` pair (read
            in batches, exact), or an `Archive`.
        window: the time bucket of the timeline: `"day"`, `"week"` or `"month"` (record
            time, UTC).
        registry: declared schemas, a folder of `<event type>/v<version>.json` JSON Schema
            files, or a dict `{event type: {version: schema}}`. `report.registry()` makes
            one from what was observed.
        upcasters: a Projection's upcasters (or the Projection itself): versions that occur
            with no path to the current version are findings.
        producer_field: the field naming who wrote an event, reported with regressions.

    Returns:
        A DriftReport: `.findings` (the columns of `ak.audit`), `.timeline` (one row per
        type, version and window), `.fields` (presence and types per field), `.plot()`.

    Example:
        >>> report = schema_drift((r, "orders"), window="week")  # doctest: +SKIP
        >>> report.findings[report.findings.severity != "info"]  # doctest: +SKIP
    """
    if window not in _FREQ:
        raise ValueError(f"window must be `day`, `week` or `month`, got `{window}`.")
    if hasattr(upcasters, "upcasters"):
        upcasters = upcasters.upcasters  # a Projection
    cells: dict[tuple[Any, Any, pd.Period], _Cell] = defaultdict(_Cell)
    stream_names: set[str] = set()
    for batch in _batches(events, envelope, batch_size):
        if batch.num_rows:
            stream_names.update(pc.unique(batch.column("stream")).to_pylist())
            _collect(batch, cells, window, producer_field)
    return DriftReport(
        cells,
        window,
        _load_registry(registry),
        dict(upcasters or {}),
        sorted(s for s in stream_names if s is not None),
    )


class DriftReport:
    """Schema drift over time: findings, a per-type timeline, field statistics, plots."""

    def __init__(
        self,
        cells: dict[tuple[Any, Any, pd.Period], _Cell],
        window: str,
        registry: dict[str, dict[str, Any]] | None,
        upcasters: dict[tuple[str, int], Any],
        streams: list[str],
    ) -> None:
        self.window = window
        self._cells = cells
        self._registry = registry
        self._upcasters = upcasters
        self._stream = ", ".join(streams) if streams else None
        self.timeline = self._timeline()
        self.fields = self._fields()
        self.findings = self._findings()

    def __repr__(self) -> str:
        counts = self.findings["severity"].value_counts().to_dict()
        types = self.timeline["event_type"].nunique() if len(self.timeline) else 0
        return f"<DriftReport {types} event types, windows by {self.window}, findings={counts}>"

    # ---- tables -------------------------------------------------------------------------

    def _timeline(self) -> pd.DataFrame:
        rows = [
            {
                "event_type": t,
                "schema_version": v,
                "window": _label(w),
                "events": c.events,
                "first_ts": c.first_ts,
                "last_ts": c.last_ts,
                "producers": ", ".join(sorted(c.producers)) or None,
                "fields": len(c.present),
            }
            for (t, v, w), c in self._cells.items()
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
        for (t, v, w), c in self._cells.items():
            for path in sorted(set(c.present) | set(c.types)):
                types = c.types.get(path, Counter())
                rows.append(
                    {
                        "event_type": t,
                        "schema_version": v,
                        "window": _label(w),
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

    # ---- findings -----------------------------------------------------------------------

    def _findings(self) -> pd.DataFrame:
        found = Findings(self._stream)
        note = found.add
        by_type: dict[Any, dict[Any, dict[pd.Period, _Cell]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        for (t, v, w), cell in self._cells.items():
            by_type[t][v][w] = cell
        for event_type in sorted(by_type, key=str):
            versions = by_type[event_type]
            self._regressions(event_type, versions, note)
            self._shape_over_time(event_type, versions, note)
            self._between_versions(event_type, versions, note)
        self._against_registry(by_type, note)
        self._upcaster_coverage(by_type, note)
        return found.frame()

    def _regressions(
        self, event_type: Any, versions: dict[Any, dict[pd.Period, _Cell]], note: Any
    ) -> None:
        known = sorted(v for v in versions if isinstance(v, int))
        for older_index, older in enumerate(known):
            for newer in known[older_index + 1 :]:
                newer_first = min(c.first_ts for c in versions[newer].values())
                late = [c for c in versions[older].values() if c.last_ts > newer_first]
                if not late:
                    continue
                producers = Counter[str]()
                for cell in late:
                    producers.update(cell.producers)
                last = max(c.last_ts for c in late)
                who = ", ".join(sorted(producers)) or "an unnamed producer"
                note(
                    "version-regression",
                    "warning",
                    f"`{event_type}` v{older} is still emitted after v{newer} appeared on "
                    f"{_day(newer_first)}: last on {_day(last)}, by {who}",
                )
                break

    def _shape_over_time(
        self, event_type: Any, versions: dict[Any, dict[pd.Period, _Cell]], note: Any
    ) -> None:
        for version, windows in versions.items():
            label = f"`{event_type}` {_version(version)}"
            seen: dict[str, str] = {}  # field -> its types so far
            order = sorted(windows)
            for index, when in enumerate(order):
                cell = windows[when]
                for path, types in cell.types.items():
                    if len(set(types) - {"null"}) > 1:
                        note(
                            "mixed-types",
                            "warning",
                            f"{label}: field `{path}` has several types in {_label(when)}: "
                            f"{_counts(types)}",
                        )
                for path in sorted(cell.present):
                    kinds = "|".join(sorted(set(cell.types.get(path, {})) - {"null"}))
                    if path not in seen:
                        if index > 0:
                            note(
                                "drift-without-version-bump",
                                "warning",
                                f"{label}: field `{path}` appears in {_label(when)} (in "
                                f"{cell.present[path] / cell.events:.0%} of that window's "
                                "events) with no new schema version",
                            )
                        seen[path] = kinds
                    elif (
                        kinds
                        and seen[path]
                        and not set(kinds.split("|")) <= set(seen[path].split("|"))
                    ):
                        # Only a type not seen before is a change (once); a narrower set of
                        # types, or the same again, is not.
                        note(
                            "drift-without-version-bump",
                            "warning",
                            f"{label}: field `{path}` changes type from {seen[path]} to {kinds} "
                            f"in {_label(when)} with no new schema version",
                        )
                        seen[path] = "|".join(
                            sorted(set(kinds.split("|")) | set(seen[path].split("|")))
                        )
                if index + 1 < len(order):
                    following = windows[order[index + 1]]
                    for path in sorted(set(cell.present) - set(following.present)):
                        later = any(path in windows[w].present for w in order[index + 2 :])
                        if not later:
                            note(
                                "drift-without-version-bump",
                                "warning",
                                f"{label}: field `{path}` disappears after {_label(when)} "
                                "with no new schema version",
                            )

    def _between_versions(
        self, event_type: Any, versions: dict[Any, dict[pd.Period, _Cell]], note: Any
    ) -> None:
        known = sorted(v for v in versions if isinstance(v, int))
        for older, newer in itertools.pairwise(known):
            before = _shape(versions[older].values())
            after = _shape(versions[newer].values())
            for path in sorted(set(after) - set(before)):
                note("field-added", "info", f"`{event_type}` v{newer} adds field `{path}`")
            for path in sorted(set(before) - set(after)):
                note("field-removed", "info", f"`{event_type}` v{newer} drops field `{path}`")
            for path in sorted(set(before) & set(after)):
                if before[path] and after[path] and before[path] != after[path]:
                    note(
                        "type-change",
                        "info",
                        f"`{event_type}` v{newer} changes field `{path}` from {before[path]} "
                        f"to {after[path]}",
                    )

    def _against_registry(self, by_type: dict[Any, Any], note: Any) -> None:
        if self._registry is None:
            return
        for event_type, versions in by_type.items():
            declared = self._registry.get(str(event_type))
            if declared is None:
                note(
                    "undeclared-type",
                    "warning",
                    f"event type `{event_type}` is not in the registry",
                )
                continue
            for version, windows in versions.items():
                schema = declared.get(str(version))
                if schema is None:
                    note(
                        "undeclared-version",
                        "warning",
                        f"`{event_type}` {_version(version)} is not in the registry "
                        f"(declared: {', '.join(sorted(declared))})",
                    )
                    continue
                observed = _shape(windows.values())
                properties = _flat_properties(schema)
                for path in sorted(set(observed) - set(properties)):
                    note(
                        "schema-mismatch",
                        "warning",
                        f"`{event_type}` {_version(version)}: field `{path}` is not declared",
                    )
                for path in sorted(set(schema.get("required", [])) - set(observed)):
                    note(
                        "schema-mismatch",
                        "warning",
                        f"`{event_type}` {_version(version)}: required field `{path}` never occurs",
                    )
                for path in sorted(set(observed) & set(properties)):
                    allowed = properties[path]
                    kinds = set(observed[path].split("|")) - {""}
                    if allowed and kinds - allowed - (
                        {"integer"} if "number" in allowed else set()
                    ):
                        note(
                            "schema-mismatch",
                            "warning",
                            f"`{event_type}` {_version(version)}: field `{path}` is "
                            f"{observed[path]}, declared {'|'.join(sorted(allowed))}",
                        )

    def _upcaster_coverage(self, by_type: dict[Any, Any], note: Any) -> None:
        if not self._upcasters:
            return
        for event_type, versions in by_type.items():
            steps = {v for (t, v) in self._upcasters if t == event_type}
            seen = [v for v in versions if isinstance(v, int)]
            # The current version: past every upcaster, and at least the newest one seen.
            current = max([*(s + 1 for s in steps), *seen], default=0)
            for version in sorted(v for v in versions if isinstance(v, int)):
                step = version
                while step < current and step in steps:
                    step += 1
                if step < current:
                    note(
                        "no-upcaster-path",
                        "error",
                        f"`{event_type}` v{version} occurs, but no upcaster takes "
                        f"({event_type!r}, {step}) towards v{current}",
                    )

    # ---- registry and plots -----------------------------------------------------------

    def registry(self) -> dict[str, dict[str, dict[str, Any]]]:
        """JSON Schemas of what was observed, `{event type: {version: schema}}`: a start."""
        out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        grouped: dict[tuple[Any, Any], list[_Cell]] = defaultdict(list)
        for (t, v, _), cell in self._cells.items():
            grouped[(t, v)].append(cell)
        for (t, v), cells in grouped.items():
            events = sum(c.events for c in cells)
            present: Counter[str] = Counter()
            for cell in cells:
                present.update(cell.present)
            shape = _shape(cells)
            schema: dict[str, Any] = {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": f"{t} v{v}",
                "type": "object",
                "properties": {},
                "required": sorted(p for p, n in present.items() if n == events and "." not in p),
            }
            for path, kinds in sorted(shape.items()):
                _set_property(schema, path, sorted(set(kinds.split("|")) - {""}))
            out[str(t)][str(v)] = schema
        return dict(out)

    def write_registry(self, folder: str | os.PathLike[str]) -> Path:
        """Write `registry()` as `<folder>/<event type>/v<version>.json`; returns the folder."""
        root = Path(folder)
        for event_type, versions in self.registry().items():
            for version, schema in versions.items():
                path = root / _safe(event_type) / f"v{version}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(schema, indent=2) + "\n")
        return root

    def plot(self, event_type: str | None = None) -> Any:
        """Versions over time and field presence of one event type (the busiest by default)."""
        import matplotlib.pyplot as plt

        event_type = event_type or self._busiest()
        fig, (top, bottom) = plt.subplots(
            2, 1, figsize=(10, 7), gridspec_kw={"height_ratios": [1, 1.4]}
        )
        self.plot_versions(event_type, ax=top)
        self.plot_fields(event_type, ax=bottom)
        fig.tight_layout()
        return fig

    def plot_versions(self, event_type: str | None = None, *, ax: Any = None) -> Any:
        """Events per window and schema version, stacked."""
        import matplotlib.pyplot as plt

        event_type = event_type or self._busiest()
        rows = self.timeline[self.timeline["event_type"] == event_type]
        rows = rows.assign(version=rows["schema_version"].map(_version))  # None has a label too
        table = rows.pivot_table(
            index="window", columns="version", values="events", aggfunc="sum", fill_value=0
        )
        if ax is None:
            _, ax = plt.subplots(figsize=(10, 4))
        table.plot.bar(ax=ax, stacked=True, width=0.8)
        ax.set_title(f"`{event_type}`: events per {self.window} by schema version")
        ax.set_xlabel(f"{self.window} (record time, UTC)")
        ax.set_ylabel("events")
        ax.legend(title="schema version", fontsize="small")
        ax.tick_params(axis="x", labelrotation=45)
        return ax

    def plot_fields(self, event_type: str | None = None, *, ax: Any = None) -> Any:
        """A heat map: share of events carrying each payload field, per window."""
        import matplotlib.pyplot as plt

        event_type = event_type or self._busiest()
        rows = self.fields[self.fields["event_type"] == event_type]
        events = self.timeline[self.timeline["event_type"] == event_type]
        weights = events.groupby("window")["events"].sum()
        merged = rows.merge(
            events[["schema_version", "window", "events"]], on=["schema_version", "window"]
        )
        merged["carrying"] = merged["present"] * merged["events"]
        table = merged.pivot_table(
            index="field", columns="window", values="carrying", aggfunc="sum", fill_value=0
        )
        table = table.reindex(columns=weights.index, fill_value=0) / weights
        if ax is None:
            _, ax = plt.subplots(figsize=(10, max(2.5, 0.35 * len(table) + 1)))
        image = ax.imshow(
            table.to_numpy(dtype=float), aspect="auto", cmap="viridis", vmin=0, vmax=1
        )
        ax.set_yticks(range(len(table.index)), table.index, fontsize="small")
        ax.set_xticks(
            range(len(table.columns)), table.columns, rotation=45, ha="right", fontsize="small"
        )
        ax.set_title(f"`{event_type}`: share of events carrying each payload field")
        ax.set_xlabel(f"{self.window} (record time, UTC)")
        ax.figure.colorbar(image, ax=ax, label="share of events")
        return ax

    def _busiest(self) -> str:
        if self.timeline.empty:
            raise ValueError("The report holds no events to plot.")
        return str(self.timeline.groupby("event_type")["events"].sum().idxmax())


def _batches(events: Any, envelope: Envelope | None, batch_size: int) -> Iterator[pa.Table]:
    if isinstance(events, pa.Table):
        yield from (pa.Table.from_batches([b]) for b in events.to_batches(batch_size))
    elif isinstance(events, pd.DataFrame):
        yield from _batches(
            pa.Table.from_pandas(events, preserve_index=False), envelope, batch_size
        )
    elif isinstance(events, tuple) and len(events) == 2:
        client, stream = events
        for key in resolve_streams(client, stream):
            for batch in iter_batches(
                client, key, batch_size=batch_size, envelope=envelope, keep_payload=True
            ):
                yield pa.Table.from_batches([batch])
    elif hasattr(events, "entries") and hasattr(events, "root"):  # an Archive
        from auditkit._archive.identity import raw_pairs

        payload_name = (envelope or events.envelope).payload
        for stream in events.streams():
            for entry in events.entries(stream):
                table = events.storage.read_table(entry.file)
                payloads = [
                    dict(raw_pairs(f)).get(payload_name.encode()) if payload_name else None
                    for f in table.column("fields").to_pylist()
                ]
                yield table.drop_columns(["fields"]).append_column(
                    "payload", pa.array(payloads, pa.binary())
                )
    else:
        raise TypeError(
            f"events must be a table or DataFrame, a (client, stream) pair, or an Archive; got "
            f"{type(events).__name__}."
        )


def _collect(
    batch: pa.Table, cells: dict[tuple[Any, Any, pd.Period], _Cell], window: str, producer: str
) -> None:
    ts = batch.column("ts").to_pandas()
    periods = ts.dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period(_FREQ[window])
    types = batch.column("event_type").to_pylist()
    versions = (
        batch.column("schema_version").to_pylist()
        if "schema_version" in batch.column_names
        else [None] * batch.num_rows
    )
    producers = (
        batch.column(producer).to_pylist()
        if producer in batch.column_names
        else [None] * batch.num_rows
    )
    raw = batch.column("payload").to_pylist() if "payload" in batch.column_names else None
    payload_columns = [c for c in batch.column_names if c.startswith(PAYLOAD_PREFIX)]
    groups: dict[tuple[Any, Any, pd.Period], list[int]] = defaultdict(list)
    for index, key in enumerate(zip(types, versions, periods, strict=True)):
        groups[key].append(index)
    ts_values = ts.tolist()
    for key, rows in groups.items():
        cell = cells[key]
        cell.events += len(rows)
        first, last = ts_values[rows[0]], ts_values[rows[-1]]
        cell.first_ts = first if cell.first_ts is None else min(cell.first_ts, first)
        cell.last_ts = last if cell.last_ts is None else max(cell.last_ts, last)
        cell.producers.update(p for p in (producers[i] for i in rows) if p is not None)
        if raw is not None:
            _shapes_of([raw[i] for i in rows], cell)
        else:
            _shape_of_columns(batch, payload_columns, rows, cell)


def _shapes_of(texts: list[Any], cell: _Cell) -> None:
    """Count, for a group of payloads, which fields they carry and with which JSON types."""
    seen: list[tuple[str, str]] = []
    present: list[str] = []
    seen_append, present_append = seen.append, present.append
    for text in texts:
        if text is None:
            continue
        try:
            value = json.loads(text)
        except (ValueError, TypeError):
            seen.append(("(payload)", "invalid JSON"))
            continue
        if not isinstance(value, dict):
            seen.append(("(payload)", _JSON_TYPES.get(type(value).__name__, "other")))
            continue
        # An explicit stack rather than a recursive generator: this loop runs per field of
        # every event, and generator frames were most of its cost.
        stack = [("", value)]
        while stack:
            prefix, node = stack.pop()
            for key, item in node.items():
                path = prefix + key
                if type(item) is dict and item:
                    stack.append((path + ".", item))
                else:
                    seen_append((path, _KINDS.get(type(item), "other")))
                    if item is not None:
                        present_append(path)
    # Counting whole lists at once runs in C; one Counter update per field would not.
    for (path, kind), count in Counter(seen).items():
        cell.types[path][kind] += count
    cell.present.update(present)


def _shape_of_columns(batch: pa.Table, columns: list[str], rows: list[int], cell: _Cell) -> None:
    # Without the JSON text, types come from the (unified) columns: coarser, still useful.
    taken = batch.select(columns).take(pa.array(rows))
    for name in columns:
        column = taken.column(name)
        present = len(column) - column.null_count
        if present:
            path = name[len(PAYLOAD_PREFIX) :]
            cell.present[path] += present
            cell.types[path][_arrow_kind(column.type)] += present


def _arrow_kind(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t):
        return "number"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return "array"
    if pa.types.is_struct(t):
        return "object"
    return "string"


def _shape(cells: Any) -> dict[str, str]:
    kinds: dict[str, set[str]] = defaultdict(set)
    for cell in cells:
        for path in cell.present:
            kinds[path].update(set(cell.types.get(path, {})) - {"null"})
    return {path: "|".join(sorted(k)) for path, k in kinds.items()}


def _flat_properties(schema: Mapping[str, Any], prefix: str = "") -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for name, spec in (schema.get("properties") or {}).items():
        path = f"{prefix}{name}"
        kinds = spec.get("type", [])
        kinds = {kinds} if isinstance(kinds, str) else set(kinds)
        if "object" in kinds and spec.get("properties"):
            out.update(_flat_properties(spec, path + "."))
        else:
            out[path] = kinds - {"null"}
    return out


def _set_property(schema: dict[str, Any], path: str, kinds: list[str]) -> None:
    node = schema
    parts = path.split(".")
    for part in parts[:-1]:
        node = node["properties"].setdefault(part, {"type": "object", "properties": {}})
    node["properties"][parts[-1]] = {"type": kinds[0] if len(kinds) == 1 else kinds}


def _load_registry(source: Any) -> dict[str, dict[str, Any]] | None:
    if source is None:
        return None
    if isinstance(source, Mapping):
        return {str(t): {str(v): s for v, s in versions.items()} for t, versions in source.items()}
    root = Path(source)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Registry folder `{root}` does not exist; write one with report.write_registry()."
        )
    registry: dict[str, dict[str, Any]] = defaultdict(dict)
    for path in sorted(root.glob("*/v*.json")):
        registry[_unsafe(path.parent.name)][path.stem[1:]] = json.loads(path.read_text())
    return dict(registry)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_ " else f"%{ord(c):02X}" for c in name)


def _unsafe(name: str) -> str:
    import urllib.parse

    return urllib.parse.unquote(name)


def _label(period: pd.Period) -> str:
    """A window's name: the month (`2026-03`), or the first day of a week or a day."""
    if period.freqstr.startswith("M"):
        return str(period)
    return f"{period.start_time:%Y-%m-%d}"


def _version(version: Any) -> str:
    return f"v{version}" if version is not None else "(no version)"


def _day(when: Any) -> str:
    return pd.Timestamp(when).strftime("%Y-%m-%d")


def _counts(types: Counter[str]) -> str:
    return ", ".join(f"{n:,} {kind}" for kind, n in types.most_common())


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    # Versions sort as numbers (v10 after v9), unversioned events first.
    order = frame["schema_version"].map(lambda v: v if isinstance(v, int) else -1)
    frame = frame.assign(_order=order, event_type=frame["event_type"])
    by = [keys[0], keys[1], "_order", *keys[2:]]
    return frame.sort_values(by, ignore_index=True).drop(columns="_order")
