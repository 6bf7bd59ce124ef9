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
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from auditkit._exceptions import ArchiveError
from auditkit._load.decoders import encode_faststream_frame, faststream_frame
from auditkit._load.envelope import Envelope

__all__ = ["Privacy"]

PREFIX = "hmac:"


@dataclass(frozen=True)
class Privacy:
    """Which fields to drop and which to pseudonymise.

    A rule names a field of the entry (`email`), or a path into the payload as the frame's
    columns name it (`payload.customer.email`): inside a JSON payload or the JSON body of a
    FastStream frame, whatever the payload field is called; with the flat decoder, where the
    payload is the entry's other fields, `payload.email` is the field `email`.
    """

    drop: tuple[str, ...] = ()
    pseudonymize: tuple[str, ...] = ()
    key: bytes | None = field(default=None, repr=False)  # secret: never shown or stored
    payload_field: str = "payload"
    decoder: str = "json"

    @classmethod
    def of(
        cls,
        drop: Sequence[str],
        pseudonymize: Sequence[str],
        key: bytes | str | None,
        payload_field: str | None,
        decoder: str = "json",
    ) -> Privacy:
        if isinstance(key, str):
            key = key.encode()
        if pseudonymize and not key:
            raise ValueError(
                "pseudonymize needs a key (bytes you keep secret and pass on every export and "
                "verify); the archive never stores it."
            )
        privacy = cls(tuple(drop), tuple(pseudonymize), key, payload_field or "payload", decoder)
        privacy.check()
        return privacy

    def for_envelope(self, payload_field: str | None, decoder: str) -> Privacy:
        """The same rules for another envelope's payload field and decoder."""
        changed = replace(self, payload_field=payload_field or "payload", decoder=decoder)
        changed.check()
        return changed

    def for_files(self, entries: Sequence[Any]) -> Privacy:
        """The same rules for the envelope a stream's archived files were decoded with (the
        latest their manifest entries record): a live entry is compared through the payload
        field and decoder its archived copy went through, whatever this caller's envelope."""
        for entry in reversed(entries):
            if getattr(entry, "envelope", None) is not None:
                recorded = Envelope.from_dict(entry.envelope)
                return self.for_envelope(recorded.payload, recorded.decoder_name)
        return self

    def check(self) -> None:
        """Refuse a payload path the decoder gives no way to reach (it would stay in the clear)."""
        if self.decoder in ("json", "faststream", "flat") or not self._paths(
            self.drop + self.pseudonymize
        ):
            return
        raise ValueError(
            f"drop and pseudonymize reach into the payload (`payload.` paths) only for JSON, "
            f"FastStream and flat payloads, not with the {self.decoder} decoder; name the whole "
            f"field (`{self.payload_field}`) instead."
        )

    @property
    def active(self) -> bool:
        return bool(self.drop or self.pseudonymize)

    def spec(self) -> dict[str, Any] | None:
        """What is applied, as the archive records it (never the key: its fingerprint,
        an HMAC of a fixed text, tells a wrong key from the right one); None for no rules."""
        if not self.active:
            return None
        spec: dict[str, Any] = {"drop": list(self.drop), "pseudonymize": list(self.pseudonymize)}
        if self.pseudonymize and self.key:
            spec["key_id"] = self.key_id()
        return spec

    def key_id(self) -> str:
        """The key's fingerprint: 16 hex digits of HMAC-SHA256(key, a fixed text)."""
        assert self.key is not None
        return hmac.new(self.key, b"auditkit archive key id", hashlib.sha256).hexdigest()[:16]

    @classmethod
    def recorded(
        cls, spec: dict[str, Any], key: bytes | None, payload_field: str | None, decoder: str
    ) -> Privacy:
        """The rules an archive recorded, with the caller's key (checked against them)."""
        privacy = cls(
            tuple(spec.get("drop", ())),
            tuple(spec.get("pseudonymize", ())),
            key if spec.get("pseudonymize") else None,
            payload_field or "payload",
            decoder,
        )
        privacy.check()
        return privacy

    def apply(self, flat: list[bytes]) -> list[bytes]:
        """One entry's [name, value, ...] with the rules applied."""
        if not self.active:
            return flat
        drop, pseudonymize = self._fields(self.drop), self._fields(self.pseudonymize)
        paths = bool(self._paths(self.drop + self.pseudonymize))
        out: list[bytes] = []
        payload_name = self.payload_field.encode()
        for name, value in zip(flat[0::2], flat[1::2], strict=True):
            text = name.decode("utf-8", "backslashreplace")
            if text in drop:
                continue
            if text in pseudonymize:
                value = self._pseudonym(value).encode()
            elif name == payload_name and paths and self.decoder != "flat":
                value = self._payload(value)
            out += [name, value]
        return out

    def for_archive(
        self, recorded: dict[str, Any] | None, archived: bool, stream: str, purpose: str
    ) -> Privacy:
        """The rules to apply to `stream`: those the archive recorded (`recorded`, from its
        manifest), with this caller's key; this caller's own when nothing is archived yet.

        Raises ArchiveError when the caller's rules differ from the recorded ones, or the
        recorded rules pseudonymise and the caller has no key or another key: files
        written two ways, or originals shown beside pseudonyms, would leak or mislead.
        """
        if recorded is None:
            if archived and self.active:
                raise ArchiveError(
                    f"Stream `{stream}` was archived without drop/pseudonymize rules; its "
                    f"files hold the original values, so {purpose} with rules would mix both. "
                    "Archive it with rules under a new archive root.",
                    stream=stream,
                )
            return self
        rules = (sorted(recorded.get("drop", [])), sorted(recorded.get("pseudonymize", [])))
        if self.active and (sorted(self.drop), sorted(self.pseudonymize)) != rules:
            raise ArchiveError(
                f"Stream `{stream}` is archived with drop {rules[0]} and pseudonymize "
                f"{rules[1]}, not the rules given (drop {sorted(self.drop)}, pseudonymize "
                f"{sorted(self.pseudonymize)}). Nothing was done; leave the rules out to use "
                "the archive's own, or archive under a new root.",
                stream=stream,
            )
        chosen = Privacy.recorded(recorded, self.key, self.payload_field, self.decoder)
        if chosen.pseudonymize:
            if not self.key:
                raise ArchiveError(
                    f"Stream `{stream}` is archived with {', '.join(chosen.pseudonymize)} "
                    f"pseudonymised; {purpose} needs the same key (Archive(..., key=...); on "
                    "the command line --key-env NAME, the environment variable holding it).",
                    stream=stream,
                )
            if recorded.get("key_id") not in (None, chosen.key_id()):
                raise ArchiveError(
                    f"The key given is not the key stream `{stream}` was pseudonymised with "
                    f"(fingerprint {chosen.key_id()}, recorded {recorded.get('key_id')}); "
                    f"{purpose} with it would give other pseudonyms. Pass the archive's key.",
                    stream=stream,
                )
        return chosen

    def _prefixes(self) -> tuple[str, ...]:
        # `payload.` as the frame's columns say, or the payload field's own name.
        return tuple(dict.fromkeys(("payload.", f"{self.payload_field}.")))

    def _paths(self, rules: tuple[str, ...]) -> list[list[str]]:
        """The rules that reach into the payload, as paths."""
        out = []
        for rule in rules:
            for prefix in self._prefixes():
                if rule.startswith(prefix):
                    out.append(rule[len(prefix) :].split("."))
                    break
        return out

    def _fields(self, rules: tuple[str, ...]) -> set[str]:
        """The fields the rules name: bare names, and with flat payloads `payload.<field>`."""
        names = {rule for rule in rules if not rule.startswith(self._prefixes())}
        if self.decoder == "flat":
            names |= {".".join(path) for path in self._paths(rules)}
        return names

    def _payload(self, value: bytes) -> bytes:
        if self.decoder == "faststream":
            return self._frame(value)
        try:
            document = json.loads(value)
        except ValueError:
            # Not JSON: the rules cannot reach inside, so nothing of it is kept in the clear.
            return self._pseudonym(value).encode()
        if not isinstance(document, dict):
            return self._pseudonym(value).encode()
        for path in self._paths(self.drop):
            _edit(document, path, None, remove=True)
        for path in self._paths(self.pseudonymize):
            _edit(document, path, self._pseudonym, remove=False)
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()

    def _frame(self, value: bytes) -> bytes:
        """A FastStream frame with the rules applied to its JSON body (headers kept)."""
        try:
            headers, body = faststream_frame(value)
        except (ValueError, UnicodeDecodeError, struct.error):
            return self._pseudonym(value).encode()  # unreadable: nothing kept in the clear
        return encode_faststream_frame(headers, self._payload_json(body))

    def _payload_json(self, body: bytes) -> bytes:
        return replace(self, decoder="json")._payload(body)

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
