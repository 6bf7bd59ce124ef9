"""Checkpoints: the head of a stream's manifest chain, as a small text kept outside the archive.

The manifest chain proves an archive consistent with itself, not with what it was: whoever
can write the archive can rewrite a file and recompute every hash after it, or put back an
older copy. A checkpoint taken earlier and kept elsewhere (by an auditor, in a witness,
signed) pins the chain as it was; `verify(since=checkpoint)` fails unless the archive's
chain at the checkpoint's length still ends in the same hash, as a transparency log's
signed tree head pins its log.

The text (docs/archive-format.md specifies it) is a signed note as Go's checksum database
and transparency-dev checkpoints write them: a body of non-empty lines, then, when signed, a
blank line and one `— <name> <signature>` line per key (signing.py).

    auditkit-checkpoint/v1
    stream "orders"
    chain-length 4
    entries 1200
    last-id 1772326800000-0
    head 5e0c8f...
    time 2026-03-01T12:00:00.000000Z
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from auditkit._archive.layout import ArchiveLayout
from auditkit._archive.manifest import ChainRecord, ManifestEntry
from auditkit._archive.signing import (
    KeySpec,
    private_key,
    public_key,
    signature,
    signature_problem,
)
from auditkit._archive.storage import Storage
from auditkit._archive.witness import Witness, WitnessSpec, open_witness
from auditkit._display import card_html, escape
from auditkit._exceptions import ArchiveError, InvalidCheckpoint, InvalidStreamID, WitnessRefused
from auditkit._redis.ids import StreamID

__all__ = ["Anchor", "Checkpoint", "check_anchor", "take_checkpoint", "verified_heads"]

FORMAT = "auditkit-checkpoint/v1"
SIGNER = "auditkit"
"""The name in the signature lines auditkit writes."""
_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
_HEAD = re.compile(r"[0-9a-f]{64}")
_COUNT = re.compile(r"0|[1-9][0-9]*")
_NAME = re.compile(r"[^\s+\x00-\x1f]+")
_DASH = "— "  # em dash and space, as signed notes write a signature line
_KEYS = ("stream", "chain-length", "entries", "last-id", "head", "time")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The head of one stream's manifest chain at a moment: keep it outside the archive.

    `str(checkpoint)` is its text (docs/archive-format.md); `Checkpoint.parse` reads it
    back. `Archive.verify(since=checkpoint)` fails unless the archive still extends it.

    Attributes:
        stream: the stream key.
        chain_length: how many manifest entries (files) the chain had.
        entries: how many stream entries those files hold.
        last_id: the last archived entry ID.
        head: the `hash` of the last manifest entry (64 hex digits).
        time: when the checkpoint was taken (UTC).
        signatures: `(name, base64)` per signature line, as in Go's signed notes.

    Example:
        >>> import auditkit as ak
        >>> arc = ak.Archive("archive/")
        >>> _ = arc.export(r, "orders")
        >>> checkpoint = arc.checkpoint("orders")
        >>> checkpoint.chain_length, checkpoint.entries, checkpoint.last_id
        (1, 6, '1772503200000-0')
        >>> ak.Checkpoint.parse(str(checkpoint)) == checkpoint
        True
        >>> print(checkpoint, end="")
        auditkit-checkpoint/v1
        stream "orders"
        chain-length 1
        entries 6
        last-id 1772503200000-0
        head ...
        time ...Z
        >>> arc.verify(r, "orders", since=checkpoint).ok
        True
    """

    stream: str
    chain_length: int
    entries: int
    last_id: str
    head: str
    time: datetime
    signatures: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        # Checked here, so that a checkpoint built in Python writes a text parse() reads.
        if not isinstance(self.stream, str):
            raise InvalidCheckpoint(f"stream must be text, got {type(self.stream).__name__}.")
        for name in ("chain_length", "entries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidCheckpoint(f"{name} must be a whole number >= 0, got `{value}`.")
        try:
            canonical = str(StreamID.parse(self.last_id))
        except InvalidStreamID:
            canonical = None
        if canonical != self.last_id:
            raise InvalidCheckpoint(f"last_id must be a stream ID `ms-seq`, got `{self.last_id}`.")
        if not isinstance(self.head, str) or not _HEAD.fullmatch(self.head):
            raise InvalidCheckpoint(f"head must be 64 lowercase hex digits, got `{self.head}`.")
        if not isinstance(self.time, datetime) or self.time.utcoffset() is None:
            raise InvalidCheckpoint(f"time must be a datetime with a time zone, got `{self.time}`.")
        for name, encoded in self.signatures:
            if not _NAME.fullmatch(name) or not _is_signature(encoded):
                raise InvalidCheckpoint(f"signature `{name} {encoded}` is not `<name> <base64>`.")

    @property
    def taken(self) -> str:
        """`time` as the text writes it: `2026-03-01T12:00:00.000000Z`."""
        t = self.time.astimezone(UTC)
        # Not strftime: its %Y writes year 5 as `5` on some platforms, and parse wants `0005`.
        return f"{t.year:04d}-{t:%m-%dT%H:%M:%S.%f}Z"

    @property
    def body(self) -> str:
        """The text the signatures sign: every line but the signature block."""
        # JSON with ensure_ascii: a key's newlines, controls and Unicode separators become
        # escapes, so the key stays on its line and any reader with JSON gets it back.
        lines = [
            FORMAT,
            f"stream {json.dumps(self.stream, ensure_ascii=True)}",
            f"chain-length {self.chain_length}",
            f"entries {self.entries}",
            f"last-id {self.last_id}",
            f"head {self.head}",
            f"time {self.taken}",
        ]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        if not self.signatures:
            return self.body
        lines = "".join(f"{_DASH}{name} {encoded}\n" for name, encoded in self.signatures)
        return f"{self.body}\n{lines}"

    def _repr_html_(self) -> str:
        names = ", ".join(name for name, _ in self.signatures)
        status = (f"signed by {names}", "#16a34a") if names else ("not signed", "#6b7280")
        facts = [
            ("stream", self.stream),
            ("files in the chain", f"{self.chain_length:,}"),
            ("entries", f"{self.entries:,}"),
            ("last archived ID", self.last_id),
            ("chain head", self.head),
            ("taken", self.taken),
        ]
        text = f"<pre>{escape(str(self))}</pre>"
        return card_html(
            "Archive checkpoint",
            status=status,
            facts=facts,
            sections=[("Its text: keep it outside the archive", text)],
        )

    @classmethod
    def parse(cls, text: str | bytes) -> Checkpoint:
        """Read a checkpoint's text (as `str(checkpoint)` writes it).

        Surrounding whitespace and Windows line ends are forgiven (a shell's `$(cat ...)`
        drops the final newline); anything else not as written raises `InvalidCheckpoint`
        naming the line.
        """
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidCheckpoint("Not a checkpoint: the text is not UTF-8.") from None
        if not isinstance(text, str):
            raise InvalidCheckpoint(f"Not a checkpoint: expected text, got {type(text).__name__}.")
        note = text.replace("\r\n", "\n").strip() + "\n"
        control = re.search(r"[\x00-\x09\x0b-\x1f]", note)
        if control:
            at = note.count("\n", 0, control.start()) + 1
            raise InvalidCheckpoint(f"Not a checkpoint: line {at} holds a control character.")
        body, blank, block = note.partition("\n\n")
        lines = body.removesuffix("\n").split("\n")
        if lines[0] != FORMAT:
            raise InvalidCheckpoint(
                f"Not an auditkit checkpoint: its first line is {_shown(lines[0])}, not `{FORMAT}`."
            )
        values = []
        for number, key in enumerate(_KEYS, 2):
            line = lines[number - 1] if number <= len(lines) else ""
            if not line.startswith(key + " "):
                raise InvalidCheckpoint(
                    f"Checkpoint line {number} should be `{key} ...`, found {_shown(line)}."
                )
            values.append(line[len(key) + 1 :])
        if len(lines) > len(_KEYS) + 1:
            raise InvalidCheckpoint(
                f"Checkpoint line {len(_KEYS) + 2} should be blank or the end, found "
                f"{_shown(lines[len(_KEYS) + 1])}."
            )
        checkpoint = replace(_fields(values), signatures=_signatures(block, bool(blank)))
        # One way to write each checkpoint: what was signed is what str() writes again.
        written = checkpoint.body.removesuffix("\n").split("\n")
        for number, (line, canonical) in enumerate(zip(lines, written, strict=True), 1):
            if line != canonical:
                raise InvalidCheckpoint(
                    f"Checkpoint line {number} is not written as auditkit writes it: found "
                    f"{_shown(line)}, expected {_shown(canonical)}."
                )
        return checkpoint

    def sign(self, key: KeySpec, *, name: str = SIGNER) -> Checkpoint:
        """This checkpoint with one more signature line, by `key` (Ed25519) under `name`.

        Args:
            key: a `cryptography` Ed25519 private key, or the path of its PEM file.
            name: the signer's name in the line (no spaces, no `+`); a witness co-signing
                the checkpoint uses its own.
        """
        if not _NAME.fullmatch(name):
            raise ValueError(f"name must be non-empty, without spaces or `+`, got `{name}`.")
        line = (name, signature(self.body, name, private_key(key)))
        return replace(self, signatures=(*self.signatures, line))

    def check_signature(self, key: KeySpec) -> None:
        """Raise `InvalidCheckpoint` unless `key` (the public key) signed this text.

        The message says whether the checkpoint is unsigned, signed by another key, or
        changed after signing.
        """
        problem = signature_problem(self.body, self.signatures, public_key(key))
        if problem is not None:
            raise InvalidCheckpoint(f"The checkpoint of `{_key(self.stream)}` fails: {problem}.")


@dataclass(frozen=True, slots=True)
class Anchor:
    """What `verify` holds an archive to: a kept checkpoint, a witness, a public key."""

    since: Checkpoint | None
    public_key: KeySpec | None
    witness: Witness | None

    @classmethod
    def of(
        cls,
        since: Checkpoint | str | bytes | None,
        public_key_spec: KeySpec | None,
        witness: WitnessSpec | None,
        *,
        stream: str | None,
        archive: Storage,
    ) -> Anchor | None:
        """The anchor of verify's arguments, checked before any I/O; None when none given."""
        if since is None and witness is None:
            if public_key_spec is not None:
                raise ValueError(
                    "public_key checks a checkpoint's signature: pass since= (a checkpoint) "
                    "or witness= as well."
                )
            return None
        kept = since if isinstance(since, Checkpoint) or since is None else Checkpoint.parse(since)
        if kept is not None and stream is not None and kept.stream != stream:
            raise ValueError(
                f"The checkpoint is of stream `{_key(kept.stream)}`, not `{_key(stream)}`: "
                "verify that stream, or give this one's checkpoint."
            )
        key = public_key(public_key_spec) if public_key_spec is not None else None
        seen = open_witness(witness, archive=archive) if witness is not None else None
        return cls(kept, key, seen)


class Note(Protocol):
    """verify's way of reporting a finding (verify.Note)."""

    def __call__(
        self, check: str, severity: str, detail: str, entry_id: str | None = None
    ) -> None: ...


def check_anchor(layout: ArchiveLayout, stream: str, anchor: Anchor, note: Note) -> None:
    """verify's checks against what was kept outside the archive, as findings.

    The chain's own consistency (each hash recomputed, each link) is verify's manifest
    check; this adds that the chain still has, at each kept checkpoint's length, its head.
    """
    kept: list[tuple[str, Checkpoint]] = []
    if anchor.since is not None and anchor.since.stream == stream:
        kept.append(("the checkpoint given", anchor.since))
    if anchor.witness is not None:
        text = anchor.witness.latest(stream)
        if text is None:
            note(
                "checkpoint-witness",
                "warning",
                f"{anchor.witness} holds no checkpoint of `{_key(stream)}`: nothing to check "
                "against",
            )
        else:
            try:
                kept.append((f"the latest checkpoint in {anchor.witness}", Checkpoint.parse(text)))
            except InvalidCheckpoint as exc:
                note("checkpoint-witness", "critical", f"{anchor.witness}: {exc}")
    chain = _chain(layout, stream)
    for source, checkpoint in kept:
        if anchor.public_key is not None:
            problem = signature_problem(checkpoint.body, checkpoint.signatures, anchor.public_key)
            if problem is not None:
                note("checkpoint-signature", "critical", f"{source}: {problem}", checkpoint.last_id)
        elif checkpoint.signatures:
            note(
                "checkpoint-signature",
                "info",
                f"{source} is signed; its signature was not checked (no public key was given)",
            )
        problem = extension_problem(chain, checkpoint)
        if problem is not None:
            note("checkpoint-not-extended", "critical", f"{source}: {problem}", checkpoint.last_id)
        else:
            note(
                "checkpoint-extended",
                "info",
                f"the archive extends {source} (taken {checkpoint.taken}): its {len(chain)} "
                f"manifest entries begin with the checkpoint's {checkpoint.chain_length}",
                checkpoint.last_id,
            )


def take_checkpoint(
    layout: ArchiveLayout,
    stream: str,
    *,
    check_files: Callable[[Checkpoint], str | None],
    signing_key: KeySpec | None = None,
    witness: WitnessSpec | None = None,
) -> Checkpoint:
    """`Archive.checkpoint`: the chain's head, checked, signed, and kept by the witness.

    `check_files(checkpoint)` returns why the archive fails verify's file and chain checks
    (or None): a checkpoint vouches for what it names, so a broken archive gets none.
    """
    key = private_key(signing_key) if signing_key is not None else None
    keeper = open_witness(witness, archive=layout.storage) if witness is not None else None
    chain = _chain(layout, stream)
    if not chain:
        raise ArchiveError(
            f"Nothing of `{_key(stream)}` is archived in {layout.storage.url}: export it first.",
            stream=stream,
        )
    files = _files(chain)
    if not files:
        raise ArchiveError(
            f"Nothing of `{_key(stream)}` is archived in {layout.storage.url}: export it first.",
            stream=stream,
        )
    checkpoint = Checkpoint(
        stream=stream,
        chain_length=len(chain),
        entries=sum(e.rows for e in files),
        last_id=files[-1].last_id,
        head=chain[-1].hash,
        time=datetime.now(UTC),
    )
    broken = check_files(checkpoint)
    # Checked after the chain was read, so a rewrite in between shows here, or below.
    moved = extension_problem(_chain(layout, stream), checkpoint)
    if broken is not None or moved is not None:
        raise ArchiveError(
            f"Refusing to checkpoint `{_key(stream)}`: {broken or moved}. Run verify() for the "
            "full report.",
            stream=stream,
        )
    if key is not None:
        checkpoint = checkpoint.sign(key)
    if keeper is not None:
        _witness(keeper, chain, checkpoint)
    return checkpoint


def extension_problem(chain: list[ChainRecord], checkpoint: Checkpoint) -> str | None:
    """Why `chain` does not extend `checkpoint` (rollback or rewrite), or None when it does."""
    length = checkpoint.chain_length
    if len(chain) < length:
        return (
            f"rollback: the archive's chain has {len(chain)} manifest entries, fewer than the "
            f"{length} it had at the checkpoint (entries up to {checkpoint.last_id}); an older "
            "copy of the archive was put back, or entries were removed"
        )
    if length == 0:
        return None
    at = chain[length - 1]
    if at.hash != checkpoint.head:
        label = at.file if isinstance(at, ManifestEntry) else f"a {at.kind} record"
        rebuilt = next(
            (r for r in chain if not isinstance(r, ManifestEntry) and r.kind == "rebuilt"), None
        )
        if rebuilt is not None:
            label += (
                f"; the chain was rebuilt from the files by `auditkit repair` at "
                f"{rebuilt.detail.get('at')} ({rebuilt.detail.get('reason')}), so it is a new "
                "chain: compare its files with a copy taken before the repair"
            )
        return (
            f"rewrite: manifest entry {length - 1} ({label}) holds hash {at.hash[:16]}…, "
            f"the checkpoint {checkpoint.head[:16]}…: history up to {checkpoint.last_id} was "
            "rewritten after the checkpoint (a file or manifest entry at or before it changed)"
        )
    files = _files(chain[:length])
    entries = sum(e.rows for e in files)
    last_id = files[-1].last_id if files else None
    if entries != checkpoint.entries or last_id != checkpoint.last_id:
        return (
            f"rewrite: the first {length} manifest entries hold {entries:,} entries up to "
            f"{last_id}, the checkpoint {checkpoint.entries:,} up to {checkpoint.last_id}"
        )
    return None


def verified_heads(layout: ArchiveLayout, horizons: dict[str, str | None]) -> dict[str, str]:
    """The chain head of each stream whose chain still ends at the horizon verify reported."""
    heads = {}
    for stream, horizon in horizons.items():
        chain = _chain(layout, stream)
        files = _files(chain)
        if files and files[-1].last_id == horizon:
            heads[stream] = chain[-1].hash
    return heads


def _chain(layout: ArchiveLayout, stream: str) -> list[ChainRecord]:
    """The stream's manifest chain (files and ledger records), in order: the one place
    this module reads it."""
    return layout.read(stream).records


def _files(chain: list[ChainRecord]) -> list[ManifestEntry]:
    return [record for record in chain if isinstance(record, ManifestEntry)]


def _witness(keeper: Witness, chain: list[ChainRecord], checkpoint: Checkpoint) -> None:
    """Give `checkpoint` to the witness, unless the archive does not extend its latest."""
    text = keeper.latest(checkpoint.stream)
    if text is not None:
        try:
            previous = Checkpoint.parse(text)
        except InvalidCheckpoint as exc:
            raise WitnessRefused(
                f"{keeper} holds an unreadable checkpoint of `{_key(checkpoint.stream)}` ({exc}); "
                "nothing was added. Look at what wrote it.",
                stream=checkpoint.stream,
            ) from None
        problem = extension_problem(chain, previous)
        if problem is not None:
            raise WitnessRefused(
                f"The archive of `{_key(checkpoint.stream)}` does not extend the latest checkpoint "
                f"in {keeper}: {problem}. Nothing was added; find out what changed the archive.",
                stream=checkpoint.stream,
            )
    keeper.append(checkpoint.stream, str(checkpoint), checkpoint.chain_length, checkpoint.taken)


def _fields(values: list[str]) -> Checkpoint:
    stream, length, entries, last_id, head, when = values
    try:
        key = json.loads(stream)
    except json.JSONDecodeError:
        key = None
    if not isinstance(key, str) or not stream.startswith('"'):
        raise InvalidCheckpoint(
            f"Checkpoint line 2: the stream must be a JSON string, found {_shown(stream)}."
        )
    for number, value in ((3, length), (4, entries)):
        if not _COUNT.fullmatch(value):
            raise InvalidCheckpoint(
                f"Checkpoint line {number}: expected a whole number, found {_shown(value)}."
            )
    try:
        time = datetime.strptime(when, _TIME).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidCheckpoint(
            f"Checkpoint line 7: expected a UTC time like 2026-03-01T12:00:00.000000Z, found "
            f"{_shown(when)}."
        ) from None
    try:
        return Checkpoint(key, int(length), int(entries), last_id, head, time)
    except InvalidCheckpoint as exc:
        raise InvalidCheckpoint(f"Not a valid checkpoint: {exc}") from None


def _signatures(block: str, blank: bool) -> tuple[tuple[str, str], ...]:
    if not blank:
        return ()
    found = []
    for number, line in enumerate(block.rstrip("\n").split("\n"), len(_KEYS) + 3):
        name, _, encoded = line.removeprefix(_DASH).partition(" ")
        if not line.startswith(_DASH) or not _NAME.fullmatch(name) or not _is_signature(encoded):
            raise InvalidCheckpoint(
                f"Checkpoint line {number} should be a signature `— <name> <base64>`, found "
                f"{_shown(line)}."
            )
        found.append((name, encoded))
    return tuple(found)


def _is_signature(encoded: str) -> bool:
    try:
        return len(base64.b64decode(encoded, validate=True)) > 4
    except (binascii.Error, ValueError):
        return False


def _key(stream: str) -> str:
    """A stream key for a one-line message: as it is, or JSON-escaped when it holds controls."""
    return stream if stream.isprintable() else json.dumps(stream)[1:-1]


def _shown(line: str) -> str:
    """A line quoted for a one-line message, cut when long."""
    if not line:
        return "nothing"
    return f"`{line[:60]}…`" if len(line) > 60 else f"`{line}`"
