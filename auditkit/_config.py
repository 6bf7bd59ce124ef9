"""A project's settings: `auditkit.toml`, or `[tool.auditkit]` in `pyproject.toml`.

    redis_url = "redis://localhost:6379/0"   # the command line's --redis-url, $REDIS_URL first
    archive = "archive/"                     # the command line's --archive
    envelope = "default"                     # for streams no pattern below matches

    [envelopes]                              # per stream pattern (glob), first match wins
    "bull:*:events" = "bullmq"               # a preset,
    "orders" = "envelopes/orders.toml"       # a TOML file (relative to this file),
    "tasks" = { event_type = "payload.task_name", payload = "data" }   # or inline

The file is found in the working folder or the nearest folder above it; `auditkit.toml`
wins over `pyproject.toml` in the same folder.
"""

from __future__ import annotations

import fnmatch
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auditkit._load.envelope import Envelope, EnvelopeSpec

__all__ = ["Config"]

_KEYS = frozenset({"redis_url", "archive", "envelope", "envelopes"})


@dataclass(frozen=True)
class Config:
    """Settings from `auditkit.toml` or `[tool.auditkit]` in `pyproject.toml`.

    Attributes:
        path: the file they came from (None: no file, all defaults).
        redis_url: the Redis URL, or None.
        archive: the archive folder or URL (a relative folder is relative to the file).
        envelope: the envelope for streams no pattern names (None: the default).
        envelopes: stream glob pattern -> envelope spec, in the file's order.

    Example:
        >>> Config.find().envelope_for("orders")
        Envelope()
    """

    path: Path | None = None
    redis_url: str | None = None
    archive: str | None = None
    envelope: EnvelopeSpec = None
    envelopes: dict[str, EnvelopeSpec] = field(default_factory=dict)

    def __repr__(self) -> str:
        # The URL may hold a password: never shown.
        shown = f"{str(self.path)!r}" if self.path else "no file"
        return f"<Config {shown}: {len(self.envelopes)} stream pattern(s)>"

    @classmethod
    def find(cls, start: str | os.PathLike[str] | None = None) -> Config:
        """The settings of the nearest `auditkit.toml` or `pyproject.toml` with a
        `[tool.auditkit]` table, from `start` (the working folder) upward; empty if none."""
        folder = Path(start or Path.cwd()).resolve()
        for candidate in (folder, *folder.parents):
            own = candidate / "auditkit.toml"
            if own.is_file():
                return cls.load(own)
            project = candidate / "pyproject.toml"
            if project.is_file() and "auditkit" in _read(project).get("tool", {}):
                return cls.load(project)
        return cls()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Config:
        """The settings in one file (`auditkit.toml`, or a `pyproject.toml`)."""
        path = Path(path)
        data = _read(path)
        if path.name == "pyproject.toml":
            data = data.get("tool", {}).get("auditkit", {})
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise ValueError(
                f"{path}: unknown setting `{unknown[0]}`; the settings are "
                f"{', '.join(sorted(_KEYS))}."
            )
        envelopes = data.get("envelopes", {})
        if not isinstance(envelopes, Mapping):
            raise ValueError(f"{path}: `envelopes` must be a table of stream pattern = envelope.")
        base = path.parent
        archive = data.get("archive")
        if isinstance(archive, str) and "://" not in archive and not Path(archive).is_absolute():
            archive = str(base / archive)
        return cls(
            path=path,
            redis_url=data.get("redis_url"),
            archive=archive,
            envelope=_relative(data.get("envelope"), base),
            envelopes={str(k): _relative(v, base) for k, v in envelopes.items()},
        )

    def envelope_for(self, stream: str) -> Envelope:
        """The envelope for a stream: the first pattern matching it, else `envelope`."""
        for pattern, spec in self.envelopes.items():
            if fnmatch.fnmatchcase(stream, pattern):
                return self._of(spec, pattern)
        return self._of(self.envelope, "envelope")

    def names_envelope(self, stream: str) -> bool:
        """Whether the file says which envelope `stream` has."""
        return self.envelope is not None or any(
            fnmatch.fnmatchcase(stream, pattern) for pattern in self.envelopes
        )

    def _of(self, spec: EnvelopeSpec, where: str) -> Envelope:
        try:
            return Envelope.of(spec)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.path}: the envelope for `{where}`: {exc}") from None


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML ({exc}).") from None


def _relative(spec: Any, base: Path) -> Any:
    """A TOML file named in the config is relative to the config's folder."""
    if isinstance(spec, str) and spec.endswith(".toml") and not Path(spec).is_absolute():
        return str(base / spec)
    return spec
