"""The Envelope: which stream fields carry the event concepts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["ENVELOPE_COLUMNS", "Envelope"]

ENVELOPE_COLUMNS = ("event_type", "aggregate_id", "schema_version", "occurred_at")
"""Frame columns the envelope fills, in frame order, after `stream`, `id`, `ts`, `seq`."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """Names the fields that carry the event type, aggregate id, version, payload and time.

    Every name is configurable; None means the stream has no such field. Fields not named
    here stay columns under their own names.

    Args:
        event_type: field with the event type (column `event_type`).
        aggregate_id: field with the aggregate (entity) id (column `aggregate_id`).
        schema_version: field with the payload's schema version (column `schema_version`,
            integers when every value is one).
        payload: field with the JSON payload, expanded into `payload.<path>` columns.
        occurred_at: field with the effective (business) time, ISO-8601 or epoch
            milliseconds (column `occurred_at`, UTC; null where an entry lacks the field).
        aggregate_id_from_key: for one-stream-per-aggregate layouts: a regular expression
            matched against the stream key whose first group (or group `id`) is the
            aggregate id, e.g. `r"account:(.+)"`. Used when the entry has no
            aggregate id field.

    Example:
        >>> Envelope(event_type="kind", occurred_at="at", aggregate_id_from_key=r"acct:(.+)")
        Envelope(event_type='kind', ...)
    """

    event_type: str | None = "type"
    aggregate_id: str | None = "aggregate_id"
    schema_version: str | None = "schema_version"
    payload: str | None = "payload"
    occurred_at: str | None = "occurred_at"
    aggregate_id_from_key: str | None = None
    _key_pattern: re.Pattern[str] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        names = [
            n
            for n in (
                self.event_type,
                self.aggregate_id,
                self.schema_version,
                self.payload,
                self.occurred_at,
            )
            if n is not None
        ]
        if len(set(names)) != len(names):
            raise ValueError(
                f"Envelope names a field twice ({names}); each concept needs its own field."
            )
        if self.aggregate_id_from_key is not None:
            try:
                pattern = re.compile(self.aggregate_id_from_key)
            except re.error as exc:
                raise ValueError(
                    f"aggregate_id_from_key `{self.aggregate_id_from_key}` is not a regular "
                    f"expression ({exc})."
                ) from exc
            if pattern.groups < 1:
                raise ValueError(
                    f"aggregate_id_from_key `{self.aggregate_id_from_key}` needs a group around "
                    r"the id, e.g. `account:(.+)`."
                )
            object.__setattr__(self, "_key_pattern", pattern)

    def field_columns(self) -> dict[str, str]:
        """Envelope field name -> frame column, for the fields this envelope names."""
        pairs = {
            self.event_type: "event_type",
            self.aggregate_id: "aggregate_id",
            self.schema_version: "schema_version",
            self.occurred_at: "occurred_at",
        }
        return {name: column for name, column in pairs.items() if name is not None}

    def aggregate_from_key(self, key: str) -> str | None:
        """The aggregate id encoded in a stream key, or None."""
        if self._key_pattern is None:
            return None
        match = self._key_pattern.search(key)
        if match is None:
            return None
        groups = match.groupdict()
        return groups["id"] if "id" in groups else match.group(1)
