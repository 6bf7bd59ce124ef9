"""The registry of declared schemas: JSON Schema files, `<folder>/<event type>/v<version>.json`.

Read to check events against (`schema_drift(..., registry=...)`), and written from what was
observed (`report.write_registry(folder)`) as a start to edit and commit.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeAlias

from auditkit._drift.collect import Cell, Cells, shape

__all__ = [
    "Registry",
    "RegistrySource",
    "declared_fields",
    "load_registry",
    "observed_schemas",
    "write_registry",
]

Registry: TypeAlias = dict[str, dict[str, Any]]
"""Event type -> version (as text) -> its JSON Schema."""
RegistrySource: TypeAlias = str | os.PathLike[str] | Mapping[str, Any] | None
"""A folder of schema files, a dict `{event type: {version: schema}}`, or None."""


def load_registry(source: RegistrySource) -> Registry | None:
    """The declared schemas from a folder or a dict; None for no registry."""
    if source is None:
        return None
    if isinstance(source, Mapping):
        return {str(t): {str(v): s for v, s in versions.items()} for t, versions in source.items()}
    root = Path(source)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Registry folder `{root}` does not exist; write one with report.write_registry()."
        )
    registry: Registry = defaultdict(dict)
    for path in sorted(root.glob("*/v*.json")):
        registry[_unsafe(path.parent.name)][path.stem[1:]] = json.loads(path.read_text())
    return dict(registry)


def observed_schemas(cells: Cells) -> dict[str, dict[str, dict[str, Any]]]:
    """JSON Schemas of what the cells saw, `{event type: {version: schema}}`."""
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    grouped: dict[tuple[Any, Any], list[Cell]] = defaultdict(list)
    for (t, v, _), cell in cells.items():
        grouped[(t, v)].append(cell)
    for (t, v), group in grouped.items():
        events = sum(c.events for c in group)
        present: Counter[str] = Counter()
        for cell in group:
            present.update(cell.present)
        schema: dict[str, Any] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"{t} v{v}",
            "type": "object",
            "properties": {},
            "required": sorted(p for p, n in present.items() if n == events and "." not in p),
        }
        for path, kinds in sorted(shape(group).items()):
            _set_property(schema, path, sorted(set(kinds.split("|")) - {""}))
        out[str(t)][str(v)] = schema
    return dict(out)


def write_registry(
    schemas: Mapping[str, Mapping[str, Any]], folder: str | os.PathLike[str]
) -> Path:
    """Write `schemas` as `<folder>/<event type>/v<version>.json`; returns the folder."""
    root = Path(folder)
    for event_type, versions in schemas.items():
        for version, schema in versions.items():
            path = root / _safe(event_type) / f"v{version}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(schema, indent=2) + "\n")
    return root


def declared_fields(schema: Mapping[str, Any], prefix: str = "") -> dict[str, set[str]]:
    """A schema's fields as dotted paths -> the JSON types it allows (null left out)."""
    out: dict[str, set[str]] = {}
    for name, spec in (schema.get("properties") or {}).items():
        path = f"{prefix}{name}"
        kinds = spec.get("type", [])
        kinds = {kinds} if isinstance(kinds, str) else set(kinds)
        if "object" in kinds and spec.get("properties"):
            out.update(declared_fields(spec, path + "."))
        else:
            out[path] = kinds - {"null"}
    return out


def _set_property(schema: dict[str, Any], path: str, kinds: list[str]) -> None:
    """Declare a dotted path in a schema, nesting objects as needed."""
    node = schema
    parts = path.split(".")
    for part in parts[:-1]:
        node = node["properties"].setdefault(part, {"type": "object", "properties": {}})
    node["properties"][parts[-1]] = {"type": kinds[0] if len(kinds) == 1 else kinds}


def _safe(name: str) -> str:
    """An event type as a folder name: characters a file system may refuse, %-escaped."""
    return "".join(c if c.isalnum() or c in "-_ " else f"%{ord(c):02X}" for c in name)


def _unsafe(name: str) -> str:
    """A folder name back to its event type."""
    return urllib.parse.unquote(name)
