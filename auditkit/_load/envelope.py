"""The Envelope: where a stream's entries carry the event concepts, and how to decode them.

An envelope is data. Each concept (`event_type`, `aggregate_id`, `schema_version`,
`occurred_at`) is read from one of three places, or from the first of several that has a
value:

- a field of the entry: `"type"`;
- a path into the decoded payload: `"payload.task_name"` (nested: `"payload.meta.kind"`);
- the stream key, by a regular expression: `{key = "account:(.+)"}` (its first group, or
  group `id`, or the whole match when it has no group).

The payload field is decoded by a decoder: `json` (the default), `flat` (no payload field:
the entry's other fields are the payload, numbers typed), `msgpack`, `faststream`
(FastStream's binary message frame: its headers become fields, its body is JSON), or a
callable `bytes -> dict` (in data: `"package.module:function"`).

The same envelope can be written as Python, a dict, a TOML file or a preset name:
`Envelope.of(...)` takes any of them.
"""

from __future__ import annotations

import copy
import importlib
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeAlias

__all__ = [
    "CONCEPTS",
    "DECODERS",
    "ENVELOPE_COLUMNS",
    "PRESETS",
    "Concept",
    "Envelope",
    "EnvelopeSpec",
    "Source",
]

ENVELOPE_COLUMNS = ("event_type", "aggregate_id", "schema_version", "occurred_at")
"""Frame columns the envelope fills, in frame order, after `stream`, `id`, `ts`, `seq`."""

CONCEPTS = ENVELOPE_COLUMNS
"""The concepts an envelope places; each fills the frame column of the same name."""

DECODERS = ("json", "flat", "msgpack", "faststream")
"""The payload decoders known by name; a callable (or `"module:function"`) is the fifth kind."""

_PATH_PREFIX = "payload."

ConceptSpec: TypeAlias = "str | Mapping[str, Any] | Sequence[str | Mapping[str, Any]] | None"
EnvelopeSpec: TypeAlias = "Envelope | Mapping[str, Any] | str | Path | None"
"""What `Envelope.of` takes: an Envelope, a dict, a preset name or a TOML file's path."""

PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "flat": {"decoder": "flat", "payload": None},
    "faststream": {
        "payload": "__data__",
        "decoder": "faststream",
        "event_type": {"key": ".+"},
        "aggregate_id": None,
        "schema_version": None,
        "occurred_at": None,
    },
    "bullmq": {
        "event_type": "event",
        "aggregate_id": {"field": "jobId", "required": False},
        "schema_version": None,
        "occurred_at": None,
        "payload": None,
        "decoder": "flat",
    },
}
"""The envelopes shipped by name. `faststream`: FastStream's Redis stream frames (field
`__data__`), the stream's name as the event type. `bullmq`: a BullMQ queue's events stream
(`bull:<queue>:events`): `event` is the type, `jobId` the aggregate (absent on queue-wide
events such as `drained`), the other fields flat."""


@dataclass(frozen=True, slots=True)
class Source:
    """One place a concept is read from: a field, a payload path or the stream key."""

    kind: Literal["field", "path", "key"]
    name: str
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        """How the source reads in a message: field `type`, `payload.kind`, key /re/."""
        if self.kind == "field":
            return f"field `{self.name}`"
        if self.kind == "path":
            return f"`{self.name}`"
        return f"the key by /{self.name}/"

    def from_key(self, key: str) -> str | None:
        """The value this key source gives for a stream key (None when it does not match)."""
        assert self.pattern is not None
        match = self.pattern.search(key)
        if match is None:
            return None
        groups = match.groupdict()
        if "id" in groups:
            return groups["id"]
        return match.group(1) if self.pattern.groups else match.group(0)


@dataclass(frozen=True, slots=True)
class Concept:
    """Where one concept comes from: its sources in order, and whether entries must have it."""

    name: str
    sources: tuple[Source, ...]
    required: bool
    may_lack: bool = False  # marked `required = false`: entries without it are expected

    def describe(self) -> str:
        return " or ".join(source.describe() for source in self.sources)


@dataclass(frozen=True, eq=False)
class Envelope:
    """Where a stream's entries carry the event type, aggregate id, version, time and payload.

    Every name is configurable, and an envelope can be given as data (`Envelope.of` takes a
    dict, a TOML file or a preset name). A concept is a field name, a path into the decoded
    payload (`"payload.kind"`), `{"key": regex}` to take it from the stream key, a list of
    these (the first with a value wins), or None when the stream has no such concept. The
    dict form `{"field": name, "required": False}` lets entries lack it.

    Args:
        event_type: where the event type is (column `event_type`).
        aggregate_id: where the aggregate (entity) id is (column `aggregate_id`).
        schema_version: where the payload's schema version is (column `schema_version`,
            integers when every value is one). Optional unless marked required.
        payload: the field holding the payload, which `decoder` expands into
            `payload.<path>` columns; None with the `flat` decoder.
        occurred_at: where the effective (business) time is, ISO-8601 or epoch
            milliseconds (column `occurred_at`, UTC). Optional unless marked required.
        aggregate_id_from_key: shorthand for a key source after `aggregate_id`: a regular
            expression on the stream key whose first group (or group `id`) is the id, for
            one-stream-per-aggregate layouts, e.g. `r"account:(.+)"`.
        decoder: the payload's format: `"json"`, `"flat"`, `"msgpack"`, `"faststream"`, a
            callable taking the payload's bytes and returning a dict, or the import path of
            one, `"package.module:function"`.
        min_match: the share of entries that must carry each required concept; below it a
            read raises `EnvelopeMismatch` instead of returning a partial answer. 0 turns
            the check off.

    Example:
        >>> Envelope(event_type="kind", occurred_at="at", aggregate_id_from_key=r"acct:(.+)")
        Envelope(event_type='kind', ...)
        >>> Envelope.of("bullmq").event_type
        'event'
        >>> Envelope.of({"event_type": "payload.task_name", "aggregate_id": "task_id"}).payload
        'payload'
    """

    event_type: ConceptSpec = "type"
    aggregate_id: ConceptSpec = "aggregate_id"
    schema_version: ConceptSpec = "schema_version"
    payload: str | None = "payload"
    occurred_at: ConceptSpec = "occurred_at"
    aggregate_id_from_key: str | None = None
    decoder: str | Callable[[bytes], Any] = "json"
    min_match: float = 0.99

    def __post_init__(self) -> None:
        for name in CONCEPTS:
            object.__setattr__(self, name, _normalize(getattr(self, name)))
        if not self.payload:  # "" or false (TOML has no null) mean none
            object.__setattr__(self, "payload", None)
        if self.payload is not None and not isinstance(self.payload, str):
            raise ValueError(f"payload must be a field name or None, got `{self.payload!r}`.")
        if isinstance(self.decoder, str) and self.decoder not in DECODERS:
            if ":" not in self.decoder:
                raise ValueError(
                    f"decoder `{self.decoder}` is not one of {', '.join(DECODERS)} and not an "
                    "import path such as `package.module:function`."
                )
        elif not isinstance(self.decoder, str) and not callable(self.decoder):
            raise ValueError(f"decoder must be a name or a callable, got `{self.decoder!r}`.")
        if self.decoder == "flat" and self.payload is not None:
            if self.payload != "payload":
                raise ValueError(
                    f"the flat decoder reads every other field as the payload; payload must "
                    f"be None, got `{self.payload}`."
                )
            object.__setattr__(self, "payload", None)
        if not 0 <= self.min_match <= 1:
            raise ValueError(f"min_match must be between 0 and 1, got `{self.min_match}`.")
        concepts = {name: _concept(name, getattr(self, name)) for name in CONCEPTS}
        paths = any(s.kind == "path" for c in concepts.values() for s in c.sources)
        if self.decoder != "flat" and self.payload is None and paths:
            raise ValueError(
                "the envelope reads a `payload.` path but names no payload field; name one, "
                "or use the flat decoder."
            )
        if self.aggregate_id_from_key is not None:
            key = _key_source(self.aggregate_id_from_key, "aggregate_id_from_key")
            if key.pattern is not None and key.pattern.groups < 1:
                raise ValueError(
                    f"aggregate_id_from_key `{self.aggregate_id_from_key}` needs a group "
                    r"around the id, e.g. `account:(.+)`."
                )
            old = concepts["aggregate_id"]
            concepts["aggregate_id"] = Concept(
                "aggregate_id", (*old.sources, key), old.required or not old.sources, old.may_lack
            )
        fields_named = [
            s.name for c in concepts.values() for s in c.sources if s.kind == "field"
        ] + ([self.payload] if self.payload else [])
        repeated = sorted({n for n in fields_named if fields_named.count(n) > 1})
        if repeated:
            raise ValueError(
                f"Envelope names the field `{repeated[0]}` twice; each concept needs its own field."
            )
        object.__setattr__(self, "_concepts", concepts)

    # ---- equality and hashing on the data form (specs may be dicts) -------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Envelope):
            return NotImplemented
        return self.to_dict(full=True) == other.to_dict(full=True)

    def __hash__(self) -> int:
        return hash(repr(sorted(self.to_dict(full=True).items())))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"Envelope({shown})"

    # ---- the concepts ------------------------------------------------------------------

    @property
    def concepts(self) -> dict[str, Concept]:
        """Each concept's sources (empty when the stream has no such concept)."""
        concepts: dict[str, Concept] = object.__getattribute__(self, "_concepts")
        return concepts

    def field_columns(self) -> dict[str, str]:
        """Envelope field name -> frame column, for the concepts read from a field."""
        return {
            source.name: concept.name
            for concept in self.concepts.values()
            for source in concept.sources
            if source.kind == "field"
        }

    def aggregate_from_key(self, key: str) -> str | None:
        """The aggregate id encoded in a stream key, or None."""
        for source in self.concepts["aggregate_id"].sources:
            if source.kind == "key":
                value = source.from_key(key)
                if value is not None:
                    return value
        return None

    def decode_function(self) -> Callable[[bytes], Any] | None:
        """The user's decoder as a function (imported when given as a path), else None."""
        if callable(self.decoder):
            return self.decoder
        if self.decoder in DECODERS:
            return None
        module_name, _, attribute = self.decoder.partition(":")
        try:
            module = importlib.import_module(module_name)
            function = getattr(module, attribute)
        except (ImportError, AttributeError) as exc:
            raise ValueError(
                f"decoder `{self.decoder}` cannot be imported ({exc}); give "
                "`package.module:function` of an importable module."
            ) from exc
        if not callable(function):
            raise ValueError(f"decoder `{self.decoder}` is not callable.")
        return function  # type: ignore[no-any-return]

    @property
    def decoder_name(self) -> str:
        """The decoder as data: its name, or the import path of a callable."""
        if isinstance(self.decoder, str):
            return self.decoder
        module = getattr(self.decoder, "__module__", None) or "?"
        name = getattr(self.decoder, "__qualname__", None) or repr(self.decoder)
        return f"{module}:{name}"

    # ---- as data -------------------------------------------------------------------------

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        """The envelope as data (what `Envelope.of` and a TOML file take back).

        Only the values that differ from the defaults, unless `full`. None stays None here
        (TOML writes it as `false`).
        """
        data: dict[str, Any] = {}
        defaults = _DEFAULTS
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "decoder":
                value = self.decoder_name
            value = copy.deepcopy(value)
            if full or value != defaults[f.name]:
                data[f.name] = value
        return data

    def to_toml(self, *, full: bool = True) -> str:
        """The envelope as a TOML document that `--envelope FILE` and `Envelope.of` read."""
        lines = []
        for name, value in self.to_dict(full=full).items():
            lines.append(f"{name} = {_toml_value(value)}")
        return "\n".join(lines) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Envelope:
        """An envelope from data (keys named as the arguments; `false` or "" for none).

        A key `preset` starts from that preset; the other keys change it.
        """
        data = dict(data)
        base: dict[str, Any] = {}
        if "preset" in data:
            name = data.pop("preset")
            base = dict(_preset_data(name))
        unknown = sorted(set(data) - set(_DEFAULTS))
        if unknown:
            raise ValueError(
                f"unknown envelope key `{unknown[0]}`; the keys are "
                f"{', '.join(sorted(_DEFAULTS))} (and `preset`)."
            )
        merged = {**base, **data}
        values = {k: (None if v is False or v == "" else v) for k, v in merged.items()}
        if "decoder" in values and values["decoder"] is None:
            values["decoder"] = "json"
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def preset(cls, name: str) -> Envelope:
        """A shipped envelope by name: `default`, `flat`, `faststream`, `bullmq`."""
        return cls.from_dict(_preset_data(name))

    @classmethod
    def from_toml(cls, path: str | Path) -> Envelope:
        """An envelope from a TOML file (as written by `to_toml` or `auditkit inspect`).

        The keys sit at the top level, or under `[envelope]`.
        """
        path = Path(path)
        try:
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ValueError(f"envelope file `{path}` does not exist.") from None
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"envelope file `{path}` is not valid TOML ({exc}).") from None
        if isinstance(data.get("envelope"), dict):
            data = data["envelope"]
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"envelope file `{path}`: {exc}") from None

    @classmethod
    def of(cls, spec: EnvelopeSpec) -> Envelope:
        """An envelope from any of its forms: an Envelope, a dict, a preset name, a TOML file.

        None gives the default envelope. A string is a preset name if it is one, else a
        file's path.
        """
        if spec is None:
            return cls()
        if isinstance(spec, Envelope):
            return spec
        if isinstance(spec, Mapping):
            return cls.from_dict(spec)
        if isinstance(spec, str) and spec in PRESETS:
            return cls.preset(spec)
        if isinstance(spec, str | Path):
            path = Path(spec)
            if path.exists() or path.suffix == ".toml":
                return cls.from_toml(path)
            raise ValueError(
                f"envelope `{spec}` is neither a preset ({', '.join(PRESETS)}) nor an "
                "existing TOML file."
            )
        raise TypeError(
            f"an envelope is an Envelope, a dict, a preset name or a TOML file path, got "
            f"{type(spec).__name__}."
        )

    def replace(self, **changes: Any) -> Envelope:
        """A copy with some arguments changed."""
        return replace(self, **changes)


_DEFAULTS: dict[str, Any] = {
    "event_type": "type",
    "aggregate_id": "aggregate_id",
    "schema_version": "schema_version",
    "payload": "payload",
    "occurred_at": "occurred_at",
    "aggregate_id_from_key": None,
    "decoder": "json",
    "min_match": 0.99,
}


def _preset_data(name: str) -> Mapping[str, Any]:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"no envelope preset `{name}`; the presets are {', '.join(PRESETS)}."
        ) from None


def _normalize(spec: Any) -> Any:
    """A concept spec as plain data: none for false or "", dicts and lists copied."""
    if spec is False or spec == "":
        return None
    if isinstance(spec, Mapping):
        return dict(spec)
    if isinstance(spec, list | tuple):
        items = [_normalize(item) for item in spec]
        return items[0] if len(items) == 1 else items
    return spec


def _as_list(spec: Any) -> list[Any]:
    if spec is None:
        return []
    return list(spec) if isinstance(spec, list) else [spec]


def _concept(name: str, spec: Any) -> Concept:
    # A concept the user names must be there; of the defaults only the event type must be
    # (many streams have no aggregate, version or time field, and need none).
    required = name == "event_type" or spec != _DEFAULTS[name]
    may_lack = False
    sources: list[Source] = []
    for item in _as_list(spec):
        if isinstance(item, str):
            if item.startswith(_PATH_PREFIX):
                sources.append(Source("path", item))
            else:
                sources.append(Source("field", item))
            continue
        if not isinstance(item, dict):
            raise ValueError(
                f"{name} must be a field name, a `payload.` path, {{key = regex}} or a list of "
                f"these, got `{item!r}`."
            )
        entry = dict(item)
        if "required" in entry:
            required = bool(entry.pop("required"))
            may_lack = not required
        kinds = [k for k in ("field", "path", "key") if k in entry]
        extra = sorted(set(entry) - {"field", "path", "key"})
        if len(kinds) != 1 or extra:
            raise ValueError(
                f"{name} as a table takes exactly one of `field`, `path` or `key` (and "
                f"`required`), got `{item!r}`."
            )
        kind = kinds[0]
        value = entry[kind]
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name}: `{kind}` must be a non-empty string, got `{value!r}`.")
        if kind == "path":
            path = value if value.startswith(_PATH_PREFIX) else _PATH_PREFIX + value
            sources.append(Source("path", path))
        elif kind == "key":
            sources.append(_key_source(value, name))
        else:
            sources.append(Source("field", value))
    return Concept(name, tuple(sources), required and bool(sources), may_lack)


def _key_source(pattern: str, name: str) -> Source:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{name}: `{pattern}` is not a regular expression ({exc}).") from None
    return Source("key", pattern, compiled)


def _toml_value(value: Any) -> str:
    if value is None:
        return "false"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_string(text: str) -> str:
    if "'" not in text and not any(ord(c) < 32 or ord(c) == 127 for c in text):
        return f"'{text}'"  # a literal string: regular expressions stay readable
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 32 or ord(char) == 127:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
