"""Personal data on export: drop fields, or replace them with a keyed HMAC, before writing.

The transformation is applied to each raw entry before it is decoded, so nothing of the
original value reaches the Parquet file: not its columns, not the byte-exact `fields`, not
the statistics or metadata derived from them. The key is the caller's and is never stored:
the same key gives the same pseudonyms (joins and counts still work), another key others.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Privacy"]

PREFIX = "hmac:"


@dataclass(frozen=True)
class Privacy:
    """Which fields to drop and which to pseudonymise; `payload.<path>` reaches into the JSON."""

    drop: tuple[str, ...] = ()
    pseudonymize: tuple[str, ...] = ()
    key: bytes | None = field(default=None, repr=False)  # secret: never shown or stored
    payload_field: str = "payload"

    @classmethod
    def of(
        cls,
        drop: Sequence[str],
        pseudonymize: Sequence[str],
        key: bytes | str | None,
        payload_field: str | None,
    ) -> Privacy:
        if isinstance(key, str):
            key = key.encode()
        if pseudonymize and not key:
            raise ValueError(
                "pseudonymize needs a key (bytes you keep secret and pass on every export and "
                "verify); the archive never stores it."
            )
        return cls(tuple(drop), tuple(pseudonymize), key, payload_field or "payload")

    def for_payload(self, payload_field: str | None) -> Privacy:
        """The same rules for an envelope whose payload is in another field."""
        return replace(self, payload_field=payload_field or "payload")

    @property
    def active(self) -> bool:
        return bool(self.drop or self.pseudonymize)

    def spec(self) -> dict[str, Any]:
        """What was applied, for the archive's state (never the key)."""
        return {"drop": list(self.drop), "pseudonymize": list(self.pseudonymize)}

    def apply(self, flat: list[bytes]) -> list[bytes]:
        """One entry's [name, value, ...] with the rules applied."""
        if not self.active:
            return flat
        out: list[bytes] = []
        payload_name = self.payload_field.encode()
        for name, value in zip(flat[0::2], flat[1::2], strict=True):
            text = name.decode("utf-8", "backslashreplace")
            if text in self.drop:
                continue
            if text in self.pseudonymize:
                value = self._pseudonym(value).encode()
            elif name == payload_name and self._payload_rules():
                value = self._payload(value)
            out += [name, value]
        return out

    def _payload_rules(self) -> bool:
        prefix = f"{self.payload_field}."
        return any(p.startswith(prefix) for p in (*self.drop, *self.pseudonymize))

    def _payload(self, value: bytes) -> bytes:
        try:
            document = json.loads(value)
        except ValueError:
            # Not JSON: the rules cannot reach inside, so nothing of it is kept in the clear.
            return self._pseudonym(value).encode()
        if not isinstance(document, dict):
            return self._pseudonym(value).encode()
        prefix = f"{self.payload_field}."
        for path in self.drop:
            if path.startswith(prefix):
                _edit(document, path[len(prefix) :].split("."), None, remove=True)
        for path in self.pseudonymize:
            if path.startswith(prefix):
                _edit(document, path[len(prefix) :].split("."), self._pseudonym, remove=False)
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()

    def _pseudonym(self, value: Any) -> str:
        assert self.key is not None
        data = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True).encode()
        return PREFIX + hmac.new(self.key, data, hashlib.sha256).hexdigest()


def _edit(node: dict[str, Any], path: list[str], change: Any, *, remove: bool) -> None:
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            return
        node = child
    leaf = path[-1]
    if leaf not in node:
        return
    if remove:
        del node[leaf]
    elif node[leaf] is not None:
        node[leaf] = change(node[leaf])
