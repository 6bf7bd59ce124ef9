"""Choosing and accepting findings, as linters do: select, ignore, and a baseline file.

A selector is a check's name, a prefix of names (`pending` for `pending-stale` and
`pending-trimmed`, as ruff takes `E4`), or a family (`integrity`, `groups`, `durability`,
`read-model`, `archive`). A baseline lists accepted findings, each with the reason it is
accepted: findings it matches are marked `accepted` and fail nothing, so CI fails only on
new ones; an entry that matches no finding any more is reported (`baseline-stale`).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from auditkit._findings import SEVERITIES, Findings

__all__ = [
    "CHECKS",
    "Accepted",
    "apply_baseline",
    "choose",
    "load_baseline",
    "write_baseline",
]

CHECKS: dict[str, tuple[str, ...]] = {
    "integrity": (
        "missing-envelope",
        "unknown-event-type",
        "version-field-missing",
        "version-duplicate",
        "version-gap",
        "version-regression",
        "idempotency-field-missing",
        "duplicate-idempotency-key",
        "event-after-terminal",
        "clock-skew",
        "clock-regression",
    ),
    "groups": (
        "group-lag",
        "pending-trimmed",
        "poison-message",
        "pending-stale",
        "consumer-idle",
    ),
    "durability": (
        "durability-unknown",
        "no-persistence",
        "aof-off",
        "appendfsync-no",
        "evicting-policy",
        "replica",
        "trimmed-not-archived",
    ),
    "read-model": ("read-model-missing", "read-model-extra", "read-model-drift"),
    "archive": (
        "archive-format",
        "manifest-missing",
        "manifest-unreadable",
        "manifest-chain",
        "manifest-cut",
        "manifest-rebuilt",
        "range-overlap",
        "range-gap",
        "file-missing",
        "file-changed",
        "file-unreadable",
        "file-content",
        "file-unlisted",
        "file-leftover",
        "file-in-flight",
        "stream-deleted",
        "content-not-compared",
        "stream-recreated",
        "conflict",
        "loss-unknown",
        "loss-recorded",
        "loss-acknowledged",
        "checkpoint-extended",
        "checkpoint-not-extended",
        "checkpoint-signature",
        "checkpoint-witness",
    ),
}
"""Every check `ak.audit` runs, by family."""

STALE = "baseline-stale"
_KEYS = ("stream", "id", "aggregate_id")


def choose(
    select: str | Iterable[str] | None, ignore: str | Iterable[str] | None
) -> frozenset[str]:
    """The checks kept: those `select` names (all when None) less those `ignore` names.

    Raises:
        ValueError: a selector names no known check (the message lists the families).
    """
    every = [name for names in CHECKS.values() for name in names]
    chosen = set(every) if select is None else _expand(select, every, "select")
    return frozenset(chosen - _expand(ignore or (), every, "ignore"))


@dataclass(frozen=True)
class Accepted:
    """One baseline entry: the finding it accepts and why. A key left out (None) matches any
    value; `""` matches a finding without one (as `write_baseline` writes a finding that
    has no id, so that it does not accept every later one of its check)."""

    check: str
    reason: str
    stream: str | None = None
    id: str | None = None
    aggregate_id: str | None = None

    def matches(self, row: Mapping[Any, Any]) -> bool:
        if row["check"] != self.check:
            return False
        return all(
            getattr(self, key) is None or _same(getattr(self, key), row[key]) for key in _KEYS
        )

    def describe(self) -> str:
        parts = [f"check `{self.check}`"] + [
            f"{key} `{getattr(self, key)}`" if getattr(self, key) else f"no {key}"
            for key in _KEYS
            if getattr(self, key) is not None
        ]
        return ", ".join(parts)


def load_baseline(source: str | os.PathLike[str] | Iterable[Mapping[str, Any]]) -> list[Accepted]:
    """The accepted findings of a baseline file (TOML or JSON) or of a list of dicts.

    Raises:
        ValueError: an entry has no reason, no check, or keys a baseline does not have.
    """
    where = "the baseline"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        where = f"baseline `{path}`"
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"{where} cannot be read ({exc.strerror or exc}).") from None
        try:
            data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{where} is not valid {_kind(path)}: {exc}.") from None
        entries = data.get("accepted", []) if isinstance(data, dict) else data
    else:
        entries = list(source)
    if not isinstance(entries, list):
        raise ValueError(f"{where} must hold a list `accepted` of findings.")
    out = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: entry {number} is not a table of keys.")
        unknown = sorted(set(entry) - {"check", "reason", *_KEYS})
        if unknown:
            raise ValueError(
                f"{where}: entry {number} has unknown key(s) {unknown}; an entry has check, "
                "reason and optionally stream, id, aggregate_id."
            )
        check = entry.get("check")
        if not isinstance(check, str) or not check:
            raise ValueError(f"{where}: entry {number} names no check.")
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(
                f"{where}: entry {number} (check `{check}`) has no reason; every accepted "
                "finding needs one, kept for whoever reads the audit next."
            )
        values = {k: None if entry.get(k) is None else str(entry[k]) for k in _KEYS}
        out.append(Accepted(check=check, reason=reason.strip(), **values))
    return out


def apply_baseline(
    findings: pd.DataFrame, baseline: list[Accepted], *, ran: frozenset[str]
) -> pd.DataFrame:
    """`findings` with columns `accepted` (bool) and `reason`, plus a `baseline-stale`
    finding for each entry that matches none of them (among the checks that `ran`)."""
    accepted: list[bool] = []
    reasons: list[str | None] = []
    used: set[int] = set()
    # Entries naming every key are looked up (a written baseline holds thousands); the
    # others, which match any value of a key, are tried in order. The first entry wins.
    exact: dict[tuple[str, ...], int] = {}
    loose: list[int] = []
    for i, entry in enumerate(baseline):
        if all(getattr(entry, key) is not None for key in _KEYS):
            exact.setdefault((entry.check, *(str(getattr(entry, k)) for k in _KEYS)), i)
        else:
            loose.append(i)
    for row in findings.to_dict("records"):
        found = exact.get((str(row["check"]), *(_value(row[k]) for k in _KEYS)))
        wild = next((i for i in loose if baseline[i].matches(row)), None)
        match = min((i for i in (found, wild) if i is not None), default=None)
        accepted.append(match is not None)
        reasons.append(baseline[match].reason if match is not None else None)
        if match is not None:
            used.add(match)
    stale = Findings()
    for number, entry in enumerate(baseline):
        if number in used or entry.check not in ran:
            continue
        stale.add(
            STALE,
            "info",
            f"baseline entry {number + 1} ({entry.describe()}) matches no finding now: remove "
            f"it from the baseline (accepted because: {entry.reason})",
            stream=entry.stream or None,
            id=entry.id or None,
            aggregate_id=entry.aggregate_id or None,
        )
    marked = findings.assign(
        accepted=accepted, reason=pd.Series(reasons, index=findings.index, dtype=object)
    )
    extra = stale.frame().assign(accepted=False, reason=None)
    if extra.empty:
        return marked.astype({"accepted": bool})
    if marked.empty:
        return extra.astype({"accepted": bool})
    return pd.concat([marked, extra], ignore_index=True).astype({"accepted": bool})


def write_baseline(
    findings: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    reason: str,
    severities: Iterable[str] = SEVERITIES,
) -> Path:
    """Write a baseline accepting each finding, for `ak.audit(..., baseline=path)`.

    One entry per distinct finding (check, and its stream, id and aggregate id where it has
    them), each with `reason`. Findings the baseline itself reports (`baseline-stale`) are
    not written. Review the file like code: each entry is a decision someone made.

    Args:
        findings: a findings DataFrame, from `ak.audit` or any check.
        path: the file to write: TOML, or JSON for a name ending in `.json`.
        reason: why these findings are accepted (required, kept with each entry).
        severities: only findings of these severities (default: all).

    Returns:
        The path written.
    """
    if not reason or not reason.strip():
        raise ValueError("a baseline needs a reason: it is kept with every accepted finding.")
    keep = set(severities)
    entries: list[dict[str, str]] = []
    for row in findings.to_dict("records"):
        if row["check"] == STALE or row["severity"] not in keep:
            continue
        entry = {"check": str(row["check"])}
        for key in _KEYS:  # "" for a finding without one: it matches only such findings
            entry[key] = _value(row.get(key))
        entry["reason"] = reason.strip()
        if entry not in entries:
            entries.append(entry)
    target = Path(path)
    if target.suffix == ".json":
        text = json.dumps({"accepted": entries}, indent=2, ensure_ascii=False) + "\n"
    else:
        text = (
            "# Accepted findings: `auditkit audit --baseline FILE` fails only on others.\n"
            '# A key = "" matches a finding without one; a key left out matches any value.\n'
        )
        for entry in entries:
            text += "\n[[accepted]]\n"
            text += "".join(f"{key} = {json.dumps(value)}\n" for key, value in entry.items())
    target.write_text(text, encoding="utf-8")
    return target


def _expand(selectors: str | Iterable[str], every: list[str], option: str) -> set[str]:
    names = [selectors] if isinstance(selectors, str) else list(selectors)
    out: set[str] = set()
    for raw in names:
        name = raw.strip()
        if name in CHECKS:
            out.update(CHECKS[name])
            continue
        hits = {c for c in every if c == name or c.startswith(name + "-")}
        if not name or not hits:
            families = "; ".join(f"{f}: {', '.join(c)}" for f, c in CHECKS.items())
            raise ValueError(
                f"{option} `{raw}` names no check. Give a check, a prefix of checks or a "
                f"family. Known: {families}."
            )
        out.update(hits)
    return out


def _value(value: Any) -> str:
    """A finding's stream, id or aggregate id as a baseline writes it: "" for none."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return ""
    return str(value)


def _same(expected: str, value: Any) -> bool:
    return _value(value) == expected


def _kind(path: Path) -> str:
    return "JSON" if path.suffix == ".json" else "TOML"
