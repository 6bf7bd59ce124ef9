"""auditkit's exceptions.

Every error auditkit raises derives from `AuditKitError`. Specific errors also derive from
the matching builtin, so `except KeyError` keeps working for callers who do not know us:

    AuditKitError
    ├── ConnectionFailed (ConnectionError)      cannot reach or talk to Redis
    │   └── AuthenticationFailed                credentials rejected
    ├── PermissionDenied (PermissionError)      the ACL user may not run a command
    ├── RedisServerNotFound (FileNotFoundError) no redis-server binary for the embedded server
    ├── EmbeddedServerFailed (RuntimeError)     redis-server did not start
    ├── StreamNotFound (KeyError)               the key does not exist
    ├── WrongKeyType (TypeError)                the key exists but is not a stream
    ├── ServerTooOld (RuntimeError)             an option needs a newer Redis
    ├── InvalidStreamID (ValueError)            a value is not a stream ID, time or bound
    ├── EnvelopeMismatch (ValueError)           the envelope does not fit the stream's entries
    ├── NoEvents (ValueError)                   nothing to check: no events, or none typed
    ├── ArchiveError                            the archive cannot do what was asked
    │   ├── ArchiveEnvelopeConflict (ValueError) an export's envelope is not the archive's
    │   ├── ArchiveBusy (RuntimeError)          another process holds the stream's lease
    │   ├── StreamRecreated                     the stream was deleted and created again
    │   ├── TargetExists (FileExistsError)      restore's target holds other entries
    │   ├── TrimRefused                         trimming now could lose events
    │   ├── InvalidCheckpoint (ValueError)      a checkpoint's text is malformed, or its
    │   │                                       signature fails
    │   ├── InvalidKey (ValueError)             a signing or public key cannot be used
    │   └── WitnessRefused                      the archive does not extend what a witness holds
    └── ProjectionError                         replaying events failed
        ├── AggregateNotFound (KeyError)        no event of that aggregate id at all
        ├── UnknownEventType (KeyError)         no handler for a type (unknown="raise")
        ├── MissingUpcaster (LookupError)       an old version has no path to the current one
        ├── HandlerFailed (RuntimeError)        a handler raised; names the event
        ├── MissingEffectiveTime (ValueError)   effective-time replay without `occurred_at`
        └── FieldTypeMismatch (TypeError)       a declarative sum meets values it cannot add

Messages name the value (in backticks), the cause, and the next step; the same context is
kept as attributes. Secrets never appear in them: every message passes through `redact`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from auditkit._secrets import redact

__all__ = [
    "AggregateNotFound",
    "ArchiveBusy",
    "ArchiveDamaged",
    "ArchiveEnvelopeConflict",
    "ArchiveError",
    "ArchiveFenced",
    "AuditKitError",
    "AuthenticationFailed",
    "ConnectionFailed",
    "EmbeddedServerFailed",
    "EnvelopeMismatch",
    "FieldTypeMismatch",
    "HandlerFailed",
    "InvalidCheckpoint",
    "InvalidKey",
    "InvalidStreamID",
    "MissingEffectiveTime",
    "MissingUpcaster",
    "NoEvents",
    "PermissionDenied",
    "ProjectionError",
    "RedisServerNotFound",
    "ServerTooOld",
    "StreamNotFound",
    "StreamRecreated",
    "TargetExists",
    "TrimRefused",
    "UnknownEventType",
    "WitnessRefused",
    "WrongKeyType",
]


class AuditKitError(Exception):
    """The root of every error auditkit raises."""

    def __init__(self, message: str) -> None:
        self.message = redact(message)
        super().__init__(self.message)

    def __str__(self) -> str:
        # KeyError.__str__ would quote the message; ours reads as a sentence.
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ConnectionFailed(AuditKitError, ConnectionError):
    """Redis could not be reached, timed out, or dropped the connection."""

    def __init__(self, message: str, *, address: str | None = None) -> None:
        self.address = redact(address) if address is not None else None
        super().__init__(message)


class AuthenticationFailed(ConnectionFailed):
    """Redis rejected the username or password."""


class PermissionDenied(AuditKitError, PermissionError):
    """The connected ACL user is not allowed to run a command auditkit needs."""

    def __init__(self, message: str, *, command: str | None = None) -> None:
        self.command = command
        super().__init__(message)


class RedisServerNotFound(AuditKitError, FileNotFoundError):
    """No `redis-server` binary is available for an embedded server."""


class EmbeddedServerFailed(AuditKitError, RuntimeError):
    """An embedded `redis-server` process did not start or stopped unexpectedly."""


class StreamNotFound(AuditKitError, KeyError):
    """The stream key does not exist."""

    def __init__(self, message: str, *, stream: str) -> None:
        self.stream = stream
        super().__init__(message)


class WrongKeyType(AuditKitError, TypeError):
    """The key exists but holds another Redis type than a stream."""

    def __init__(self, message: str, *, key: str, key_type: str | None = None) -> None:
        self.key = key
        self.key_type = key_type
        super().__init__(message)


class ServerTooOld(AuditKitError, RuntimeError):
    """The connected Redis server is older than an option or command requires."""

    def __init__(self, message: str, *, required: str, actual: str | None = None) -> None:
        self.required = required
        self.actual = actual
        super().__init__(message)


class InvalidStreamID(AuditKitError, ValueError):
    """A value is not a stream ID, a time, or a range bound auditkit understands."""

    def __init__(self, message: str, *, value: object = None) -> None:
        self.value = value
        super().__init__(message)


class EnvelopeMismatch(AuditKitError, ValueError):
    """The envelope does not fit the stream: a concept it names is missing from entries.

    Attributes:
        stream: the stream read.
        shares: per concept the envelope requires and entries lack: (entries carrying
            it, entries read).
        fields: the field names the entries read do have.
        summary: the message without its last sentence (the next step), for callers that
            word the next step themselves (the CLI names its own options).
    """

    def __init__(
        self,
        message: str,
        *,
        stream: str,
        shares: dict[str, tuple[int, int]],
        fields: list[str],
        summary: str,
    ) -> None:
        self.stream = stream
        self.shares = shares
        self.fields = fields
        self.summary = redact(summary)
        super().__init__(message)


class NoEvents(AuditKitError, ValueError):
    """A job found nothing to work on: the source holds no events, or none has what it needs.

    Raised rather than answering with an empty report, which would read as "all is well".
    """

    def __init__(self, message: str, *, source: str, missing: str) -> None:
        self.source = source
        self.missing = missing  # "events", or the column every event lacks
        super().__init__(message)


class ProjectionError(AuditKitError):
    """Replaying events through a Projection failed."""


class AggregateNotFound(ProjectionError, KeyError):
    """No event of the aggregate at all, at any time: a misspelled id, or another stream.

    `close_matches` holds the nearest ids the events do hold (at most three), best first.
    """

    def __init__(
        self, message: str, *, aggregate_id: object, close_matches: Sequence[object] = ()
    ) -> None:
        self.aggregate_id = aggregate_id
        self.close_matches = list(close_matches)
        super().__init__(message)

    def __str__(self) -> str:
        # KeyError.__str__ would print the message inside quotes, as it does a missing key.
        return self.message


class UnknownEventType(ProjectionError, KeyError):
    """An event type has no handler and the projection was told to refuse unknown types."""

    def __init__(self, message: str, *, event_type: str | None, event_id: str) -> None:
        self.event_type = event_type
        self.event_id = event_id
        super().__init__(message)


class MissingUpcaster(ProjectionError, LookupError):
    """Events of an old schema version occur, but no upcaster chain leads to the current one."""

    def __init__(self, message: str, *, event_type: str, version: int, event_id: str) -> None:
        self.event_type = event_type
        self.version = version
        self.event_id = event_id
        super().__init__(message)


class HandlerFailed(ProjectionError, RuntimeError):
    """A handler or upcaster raised; the message names the event it was applying."""

    def __init__(self, message: str, *, event_id: str, event_type: str | None) -> None:
        self.event_id = event_id
        self.event_type = event_type
        super().__init__(message)


class MissingEffectiveTime(ProjectionError, ValueError):
    """Effective-time replay needs `occurred_at` on every event."""


class FieldTypeMismatch(ProjectionError, TypeError):
    """A declarative `sum` reads values it cannot add as numbers without loss.

    `types` maps each kind of value seen (`int`, `float`, `number as text`, `text`, ...)
    to where it occurs (`Deposited v2`); `problems` lists the kinds that cannot be added.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str,
        column: str,
        types: Mapping[str, Sequence[str]],
        problems: Sequence[str],
    ) -> None:
        self.field = field
        self.column = column
        self.types = {kind: list(places) for kind, places in types.items()}
        self.problems = list(problems)
        super().__init__(message)


class ArchiveError(AuditKitError):
    """The archive cannot do what was asked without risking an event."""

    def __init__(self, message: str, *, stream: str | None = None) -> None:
        self.stream = stream
        super().__init__(message)


class ArchiveBusy(ArchiveError, RuntimeError):
    """Another exporter or trimmer holds the stream's single-writer lease."""


class ArchiveFenced(ArchiveError, RuntimeError):
    """This writer's lease expired while it was paused, and a newer writer took it over."""


class ArchiveDamaged(ArchiveError):
    """The archive's manifest or files are not what its chain says: nothing was written."""


class StreamRecreated(ArchiveError):
    """The live stream is not the one archived: it was deleted and created again."""


class ArchiveEnvelopeConflict(ArchiveError, ValueError):
    """An export's envelope differs from the one the archive's stream was written with."""


class TargetExists(ArchiveError, FileExistsError):
    """`Archive.restore`'s target already holds entries that are not the archive's, or
    ends past archived entries it lacks (which Redis cannot add below its last ID)."""


class TrimRefused(ArchiveError):
    """Trimming was refused: the archive is unverified, or entries are still needed."""


class InvalidCheckpoint(ArchiveError, ValueError):
    """A checkpoint's text is not one auditkit wrote, or its signature does not hold."""


class InvalidKey(ArchiveError, ValueError):
    """A signing or public key is missing, unreadable, or not an Ed25519 key."""


class WitnessRefused(ArchiveError):
    """The archive does not extend the latest checkpoint a witness holds: nothing was added."""


# Tracebacks name the public path (`auditkit.StreamNotFound`), the one users import.
for _name in __all__:
    globals()[_name].__module__ = "auditkit"
del _name
