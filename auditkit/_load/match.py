"""Whether an envelope fits a stream: the share of entries carrying each concept it requires.

A read counts, per stream, the entries whose required concepts came out non-null (and
whose payload field was there and decoded). After a first sample, and again at the end of
the stream, a share under the envelope's `min_match` raises `EnvelopeMismatch`, once,
naming the concepts, the counts and the fields the entries do have: an envelope that does
not fit gives an error, never an answer built from nulls.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from auditkit._exceptions import EnvelopeMismatch
from auditkit._load.envelope import Envelope

__all__ = ["SAMPLE", "MatchCheck"]

SAMPLE = 1_000
"""Entries read before the first judgement (the whole range when it is shorter)."""

_FIELDS_SHOWN = 12


class MatchCheck:
    """Counts one stream's matches as tables are read; raises when the envelope misses."""

    def __init__(self, envelope: Envelope, stream: str) -> None:
        self.envelope = envelope
        self.stream = stream
        self.rows = 0
        self.matched: dict[str, int] = {}
        self.names: dict[str, None] = {}
        self.checked = False
        self.carrying = 0  # entries that had the payload field
        self.extras = False  # whether entries carry fields besides the envelope's
        # min_match 0 turns the check off: nothing is required.
        concepts = [c.name for c in envelope.concepts.values() if c.required and c.sources]
        payload = ["payload"] if envelope.payload else []
        self.required = concepts + payload if envelope.min_match > 0 else []

    def feed(self, table: pa.Table, present: int, names: Iterable[str], extras: int) -> None:
        """Count a decoded table; `present`: its entries that had the payload field;
        `extras`: how many of its fields are neither an envelope field nor the payload."""
        if not self.required:
            return
        self.rows += table.num_rows
        self.extras = self.extras or extras > 0
        for name in names:
            self.names.setdefault(name)
        for concept in self.required:
            if concept == "payload":
                # Entries may lack the payload (an event with no data); those that have it
                # must decode. So the share is of entries carrying it, which some must.
                errors = table.column("payload_error")
                hit = present - (len(errors) - errors.null_count)
                self.carrying += present
            else:
                column = table.column(concept)
                hit = len(column) - column.null_count
            self.matched[concept] = self.matched.get(concept, 0) + hit
        if not self.checked and self.rows >= SAMPLE:
            self.checked = True
            self.check()

    def close(self) -> None:
        """The judgement over everything read."""
        if self.required and self.rows:
            self.check()

    def check(self) -> None:
        short = {}
        for concept in self.required:
            hit = self.matched.get(concept, 0)
            total = self.rows
            if concept == "payload":
                if self.carrying:
                    total = self.carrying
                elif not self.extras:
                    continue  # no payload and nothing else: events that carry no data
            if hit < self.envelope.min_match * total:
                short[concept] = (hit, total)
        if not short:
            return
        parts = []
        for concept, (hit, total) in short.items():
            if concept == "payload" and self.carrying:
                parts.append(
                    f"the payload ({self._where(concept)}) decodes in {_share(hit, total)} "
                    "that carry it"
                )
            elif concept == "payload":
                parts.append(
                    f"the payload ({self._where(concept)}) is in none of the {total:,} entries "
                    "read, which carry other fields (for fields without a payload field, use "
                    "the flat decoder)"
                )
            else:
                parts.append(f"{concept} ({self._where(concept)}) is in {_share(hit, total)}")
        shown = list(self.names)[:_FIELDS_SHOWN]
        more = len(self.names) - len(shown)
        seen = ", ".join(f"`{n}`" for n in shown) + (f" and {more} more" if more else "")
        summary = (
            f"Stream `{self.stream}` does not match the envelope: {'; '.join(parts)}. "
            f"Its entries have the fields {seen or '(none)'}."
        )
        message = (
            f"{summary} Run ak.inspect(client, {self.stream!r}) for an envelope that fits and "
            "pass it as envelope=... (or lower the envelope's min_match to accept a partial "
            "match)."
        )
        raise EnvelopeMismatch(
            message, stream=self.stream, shares=short, fields=list(self.names), summary=summary
        )

    def _where(self, concept: str) -> str:
        if concept == "payload":
            return f"field `{self.envelope.payload}`, {self.envelope.decoder_name}"
        return self.envelope.concepts[concept].describe()


def _share(hit: int, total: int) -> str:
    percent = 100 * hit / total if total else 0.0
    shown = f"{percent:.1f}".rstrip("0").rstrip(".")
    return f"{hit:,} of {total:,} entries read ({shown}%)"
