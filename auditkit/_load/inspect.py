"""`inspect`: look at a stream's raw entries and propose an envelope that fits them.

It samples the head, the middle and the tail of the stream, shows each field with the
share of entries carrying it and an example, detects the payload's format (a FastStream
frame, a JSON object, msgpack, or none: flat fields), picks a field or payload path for
each concept by name and by what the values look like, and decodes the sample with the
proposal to report the share of entries each concept fills.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from auditkit._display import card_html, escape, table_html
from auditkit._load.decode import PAYLOAD_PREFIX, extract, finish, prepare
from auditkit._load.decoders import FASTSTREAM_MAGIC, faststream_frame, payload_texts
from auditkit._load.envelope import CONCEPTS, Envelope
from auditkit._redis.connection import Client
from auditkit._redis.ids import StreamID
from auditkit._redis.pages import iter_pages
from auditkit._redis.streams import ensure_stream
from auditkit._redis.xinfo import stream_info
from auditkit._secrets import redact

__all__ = ["Inspection", "inspect"]

_EXAMPLE = 40
# Names that usually carry a concept, in order of preference (compared without case,
# `_`, `-` or `:`).
_NAMES: dict[str, tuple[str, ...]] = {
    "event_type": (
        "type",
        "eventtype",
        "event",
        "kind",
        "eventname",
        "taskname",
        "messagetype",
        "msgtype",
        "action",
        "conceptname",
        "activity",
        "name",
    ),
    "aggregate_id": (
        "aggregateid",
        "aggregate",
        "entityid",
        "streamid",
        "jobid",
        "taskid",
        "caseconceptname",
        "caseid",
        "orderid",
        "accountid",
        "userid",
        "customerid",
        "id",
    ),
    "schema_version": ("schemaversion", "eventversion", "version", "v"),
    "occurred_at": (
        "occurredat",
        "timetimestamp",
        "eventtime",
        "timestamp",
        "time",
        "createdat",
        "at",
        "date",
    ),
}
_STRONG = 4  # the first names of each list are taken on their name alone
_PAYLOAD_NAMES = ("payload", "data", "body", "message", "event", "args", "json")


@dataclass
class Inspection:
    """What `inspect` saw in a stream, and the envelope it proposes.

    Attributes:
        stream: the stream inspected.
        length: its number of entries.
        sampled: how many entries were looked at (head, middle and tail).
        fields: one row per field seen: `field`, `share` (of sampled entries carrying
            it), `example` (shortened).
        format: the payload format detected: `json`, `faststream`, `msgpack` or `flat`.
        envelope: the proposed envelope (`envelope.to_toml()` writes it as a file).
        matches: per concept the proposal names, the share of sampled entries it fills
            (`payload`: the share whose payload decodes).
    """

    stream: str
    length: int
    sampled: int
    fields: pd.DataFrame
    format: str
    envelope: Envelope
    matches: dict[str, float]

    def toml(self) -> str:
        """The proposed envelope as TOML, with a comment saying where it came from."""
        return (
            f"# Envelope for stream `{self.stream}`, proposed by auditkit inspect from "
            f"{self.sampled:,} sampled entries.\n" + self.envelope.to_toml()
        )

    def __str__(self) -> str:
        lines = [
            f"Stream `{self.stream}`: {self.length:,} entries, {self.sampled:,} sampled "
            "(head, middle and tail).",
            "",
            "Fields (share of sampled entries, an example):",
        ]
        width = max([len(f) for f in self.fields["field"]] + [5])
        for row in self.fields.itertuples(index=False):
            lines.append(f"  {row.field:<{width}}  {_percent(row.share):>6}  {row.example}")
        lines += ["", f"Payload format: {_FORMATS[self.format]}", "", "Proposed envelope:"]
        for concept, where, shown in self._proposal():
            lines.append(f"  {concept:<15} {where:<40} {shown}")
        if self._weak():
            lines += ["", self._weak()]
        return "\n".join(lines)

    def _proposal(self) -> list[tuple[str, str, str]]:
        """Per concept (and the payload): where the proposal reads it, what share it fills."""
        rows = []
        for concept, concept_spec in self.envelope.concepts.items():
            where = concept_spec.describe() if concept_spec.sources else "(none)"
            share = self.matches.get(concept)
            rows.append((concept, where, f"fills {_percent(share)}" if share is not None else ""))
        if self.envelope.payload or self.format == "flat":
            share = self.matches.get("payload")
            where = (
                f"field `{self.envelope.payload}`, {self.format}"
                if self.envelope.payload
                else "the other fields (flat)"
            )
            shown = f"decodes {_percent(share)}" if share is not None else ""
            rows.append(("payload", where, shown))
        return rows

    def _weak(self) -> str:
        weak = [c for c, share in self.matches.items() if share < 0.99]
        if not weak:
            return ""
        return (
            f"Under 99%: {', '.join(weak)}. Check these before use; entries without them "
            "make a read stop with an error (set `required = false` on a concept that "
            "may be absent, or min_match)."
        )

    def _repr_html_(self) -> str:
        weak = self._weak()
        status = (weak.split(".")[0], "#d97706") if weak else ("fits the sample", "#16a34a")
        facts = [
            ("entries", f"{self.length:,}"),
            ("sampled", f"{self.sampled:,} (head, middle and tail)"),
            ("payload format", _FORMATS[self.format]),
        ]
        fields = self.fields.assign(share=self.fields["share"].map(_percent))
        proposal = pd.DataFrame(self._proposal(), columns=["concept", "read from", "share"])
        sections = [
            ("Fields (share of sampled entries, an example)", table_html(fields)),
            (
                "Proposed envelope",
                table_html(proposal) + (f"<p>{escape(weak)}</p>" if weak else ""),
            ),
            (
                "As TOML: inspection.toml(), for Envelope.of or --envelope",
                f"<pre>{escape(self.toml())}</pre>",
            ),
        ]
        return card_html(f"Stream `{self.stream}`", status=status, facts=facts, sections=sections)

    def __repr__(self) -> str:
        return (
            f"<Inspection {self.stream} {self.sampled} sampled, format {self.format}, "
            f"{self.envelope!r}>"
        )


_FORMATS = {
    "json": "JSON objects in one field",
    "faststream": "FastStream binary frames (headers become fields, the body is JSON)",
    "msgpack": "msgpack maps in one field",
    "flat": "none: flat fields (every field but the envelope's is the payload)",
}


def inspect(client: Client, stream: str, *, sample: int = 300) -> Inspection:
    """Look at a stream's entries and propose an envelope that fits them.

    Args:
        client: a `redis.Redis`.
        stream: the stream's key.
        sample: how many entries to look at, a third each from the head, the middle and
            the tail.

    Returns:
        An `Inspection`: the fields with their shares and examples, the payload format,
        the proposed envelope and the share of entries it fills per concept. Print it to
        read it; `.toml()` is the envelope as a file `--envelope` and `Envelope.of` take.

    Example:
        >>> found = inspect(r, "orders")
        >>> found.format, found.envelope.event_type
        ('json', 'type')
    """
    if not isinstance(sample, int) or isinstance(sample, bool) or sample < 3:
        raise ValueError(f"sample must be an integer of at least 3, got `{sample!r}`.")
    ensure_stream(client, stream)
    info = stream_info(client, stream)
    entries = _sample(client, stream, info.first_id, info.last_id, sample, info.length)
    page = [[entry_id, flat] for entry_id, flat in entries]
    rows = [dict(zip(flat[0::2], flat[1::2], strict=False)) for _, flat in entries]
    fields = _fields_table(rows)
    fmt, payload_field = _detect_format(rows)
    envelope = _propose(stream, rows, fmt, payload_field)
    matches = _matches(page, stream, envelope) if page else {}
    return Inspection(stream, info.length, len(rows), fields, fmt, envelope, matches)


def _sample(
    client: Client,
    stream: str,
    first: StreamID | None,
    last: StreamID | None,
    sample: int,
    length: int,
) -> list[tuple[bytes, list[bytes]]]:
    if first is None or last is None:
        return []
    if length <= sample:  # all of it: thirds that overlap would sample fewer than asked
        return [e for page in iter_pages(client, stream, count=sample) for e in page]
    third = max(1, sample // 3)
    seen: dict[bytes, list[bytes]] = {}
    middle = StreamID((first.ms + last.ms) // 2, 0)
    for start, reverse in ((None, False), (middle, False), (None, True)):
        for page in iter_pages(client, stream, start=start, count=third, reverse=reverse):
            for entry_id, flat in page:
                seen.setdefault(entry_id, flat)
    return sorted(seen.items(), key=lambda item: StreamID.parse(item[0].decode()))


def _fields_table(rows: list[dict[bytes, bytes]]) -> pd.DataFrame:
    counts: Counter[bytes] = Counter()
    examples: dict[bytes, bytes] = {}
    for row in rows:
        for name, value in row.items():
            counts[name] += value != b""  # an empty value is a missing one
            if name not in examples or (not examples[name] and value):
                examples[name] = value
    data = [
        {
            "field": name.decode("utf-8", "backslashreplace"),
            "share": counts[name] / len(rows),
            "example": _example(examples[name]),
        }
        for name, _ in counts.most_common()
    ]
    return pd.DataFrame(data, columns=["field", "share", "example"])


def _example(value: bytes) -> str:
    if value.startswith(FASTSTREAM_MAGIC):
        return "<FastStream frame>"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(value)} bytes>"
    text = redact(text)
    return repr(text if len(text) <= _EXAMPLE else text[:_EXAMPLE] + "...")


def _detect_format(rows: list[dict[bytes, bytes]]) -> tuple[str, str | None]:
    """The payload format and field: the field most entries hold a frame or object in."""
    if not rows:
        return "json", "payload"
    scores: dict[tuple[str, bytes], int] = Counter()
    for row in rows:
        for name, value in row.items():
            kind = _value_kind(value)
            if kind is not None:
                scores[(kind, name)] += 1
    candidates = [(k, n, c) for (k, n), c in scores.items() if c >= 0.5 * len(rows)]
    if not candidates:
        return "flat", None

    def preference(item: tuple[str, bytes, int]) -> tuple[int, int, int]:
        kind, name, count = item
        named = _rank(name.decode("utf-8", "replace"), _PAYLOAD_NAMES)
        return (-count, {"faststream": 0, "json": 1, "msgpack": 2}[kind], named)

    kind, name, _ = min(candidates, key=preference)
    return kind, name.decode("utf-8", "backslashreplace")


def _value_kind(value: bytes) -> str | None:
    if value.startswith(FASTSTREAM_MAGIC):
        return "faststream"
    if value[:1] == b"{":
        try:
            decoded = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
        if isinstance(decoded, dict):
            if set(decoded) >= {"data", "headers"} and isinstance(decoded["data"], str):
                return "faststream"  # FastStream's older JSON form
            return "json"
        return None
    if (value[:1] and 0x80 <= value[0] <= 0x8F) or value[:1] in (b"\xde", b"\xdf"):
        try:  # decoded as a read decodes it: a map (integer keys too) gives JSON text
            text = payload_texts(Envelope(decoder="msgpack"), [value])[0]
        except ValueError:  # the msgpack package is not installed
            return None
        return "msgpack" if text is not None else None
    return None


def _propose(
    stream: str, rows: list[dict[bytes, bytes]], fmt: str, payload_field: str | None
) -> Envelope:
    # The names a concept may come from, each with its values across the sample.
    candidates: dict[str, list[Any]] = {}
    for row in rows:
        for name, value in row.items():
            text = name.decode("utf-8", "backslashreplace")
            if text == payload_field:
                continue
            candidates.setdefault(text, []).append(_scalar(value))
    paths: dict[str, list[Any]] = {}
    if fmt != "flat" and payload_field is not None:
        for row in rows:
            raw = row.get(payload_field.encode())
            if raw is None:
                continue
            headers, body = _open(raw, fmt)
            for header, header_value in headers.items():
                candidates.setdefault(header, []).append(header_value)
            for path, leaf in _leaves(body).items():
                paths.setdefault(PAYLOAD_PREFIX + path, []).append(leaf)
    chosen: dict[str, Any] = {}
    used: set[str] = set()
    for concept in CONCEPTS:
        pick = _pick(concept, candidates, used, len(rows)) or _pick(concept, paths, used, len(rows))
        if pick is not None:
            used.add(pick)
        chosen[concept] = pick
    if chosen["event_type"] is None:
        chosen["event_type"] = {"key": ".+"}  # one stream per event type: its name
    spec: dict[str, Any] = {**chosen, "payload": payload_field if fmt != "flat" else None}
    spec["decoder"] = fmt
    for concept in ("aggregate_id", "schema_version", "occurred_at"):
        name = chosen[concept]
        values = candidates.get(name) or paths.get(name) or []
        if name is not None and len(values) < 0.99 * len(rows):
            spec[concept] = {"field": name, "required": False}
            if name.startswith(PAYLOAD_PREFIX):
                spec[concept] = {"path": name, "required": False}
    return Envelope.from_dict(spec)


def _open(value: bytes, fmt: str) -> tuple[dict[str, str], Any]:
    try:
        if fmt == "faststream":
            headers, body = faststream_frame(value)
            return headers, json.loads(body)
        if fmt == "msgpack":
            # As a read decodes it (times as ISO-8601 text, bytes as text or base64).
            text = payload_texts(Envelope(decoder="msgpack"), [value])[0]
            return {}, json.loads(text) if text is not None else None
        return {}, json.loads(value)
    except Exception:  # a sampled value that does not decode adds no candidates
        return {}, None


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    out: dict[str, Any] = {}
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, dict):
            out.update(_leaves(item, path + "."))
        else:
            out[path] = item
    return out


def _scalar(value: bytes) -> Any:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _pick(concept: str, candidates: dict[str, list[Any]], used: set[str], n: int) -> str | None:
    best: tuple[int, int, str] | None = None
    for name, values in candidates.items():
        if name in used:
            continue
        short = name.rsplit(".", 1)[-1] if name.startswith(PAYLOAD_PREFIX) else name
        rank = _rank(short, _NAMES[concept])
        if rank is None or not _fits(concept, values, n, strong=rank < _STRONG):
            continue
        key = (rank, -len(values), name)
        if best is None or key < best:
            best = key
    return best[2] if best else None


def _rank(name: str, names: tuple[str, ...]) -> Any:
    folded = re.sub(r"[\s_\-:.]", "", name).lower()
    return names.index(folded) if folded in names else None


def _fits(concept: str, values: list[Any], n: int, *, strong: bool) -> bool:
    present = [v for v in values if v is not None and v != ""]
    if len(present) < 0.5 * n or not all(isinstance(v, str | int) for v in present):
        return False
    texts = [str(v) for v in present]
    if concept == "event_type":
        if any(len(t) > 200 for t in texts):
            return False
        # A weaker name (`name`, `action`) must look like a type: few distinct values
        # over many events.
        return strong or len(texts) < 20 or len(set(texts)) <= len(texts) // 2
    if concept == "schema_version":
        return all(re.fullmatch(r"v?\d{1,6}", t) for t in texts)
    if concept == "occurred_at":
        parsed = pd.to_datetime(pd.Series(texts), errors="coerce", utc=True, format="ISO8601")
        numeric = pd.to_numeric(pd.Series(texts), errors="coerce")
        return bool((parsed.notna() | (numeric > 1e11)).mean() >= 0.9)
    return True


def _matches(page: list[Any], stream: str, envelope: Envelope) -> dict[str, float]:
    prepared = prepare(extract(page, stream), envelope)
    table: pa.Table = finish(prepared)
    n = table.num_rows
    shares = {
        concept: (n - table.column(concept).null_count) / n
        for concept, spec in envelope.concepts.items()
        if spec.sources
    }
    errors = table.column("payload_error")
    if envelope.payload:
        carrying = prepared.present
        decoded = carrying - (len(errors) - errors.null_count)
        shares["payload"] = decoded / n
    return shares


def _percent(share: Any) -> str:
    if share is None:
        return ""
    return f"{100 * share:.1f}".rstrip("0").rstrip(".") + "%"
