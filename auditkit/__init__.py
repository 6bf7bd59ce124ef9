"""auditkit: audit, time-travel and archive event-sourced systems stored in Redis Streams.

>>> import auditkit as ak
>>> client = ak.connect()  # $REDIS_URL, else a throwaway embedded redis-server
>>> client.ping()
True
"""

import typing as _typing

# Registers the `auditkit.shown` error handler at once: text streams name it before any
# module that writes such text is loaded.
import auditkit._redis.text as _text  # noqa: F401
from auditkit._exceptions import (
    AggregateNotFound,
    ArchiveBusy,
    ArchiveDamaged,
    ArchiveEnvelopeConflict,
    ArchiveError,
    ArchiveFenced,
    AuditKitError,
    AuthenticationFailed,
    ConnectionFailed,
    EmbeddedServerFailed,
    EnvelopeMismatch,
    FieldTypeMismatch,
    HandlerFailed,
    InvalidCheckpoint,
    InvalidKey,
    InvalidStreamID,
    MissingEffectiveTime,
    MissingUpcaster,
    NoEvents,
    PermissionDenied,
    ProjectionError,
    RedisServerNotFound,
    ServerTooOld,
    StreamNotFound,
    StreamRecreated,
    TargetExists,
    TrimRefused,
    UnknownEventType,
    WitnessRefused,
    WrongKeyType,
)
from auditkit._lazy import lazy_names as _lazy_names

if _typing.TYPE_CHECKING:
    from auditkit._archive.archive import Archive, ExportReport
    from auditkit._archive.checkpoint import Checkpoint
    from auditkit._archive.verify import VerifyReport
    from auditkit._audit.audit import audit
    from auditkit._audit.durability import check_durability
    from auditkit._audit.groups import check_groups, consumer_groups, pending_entries
    from auditkit._audit.integrity import check_integrity
    from auditkit._audit.readmodel import check_read_model
    from auditkit._audit.selection import write_baseline
    from auditkit._config import Config
    from auditkit._demo import seed_demo
    from auditkit._drift.report import DriftReport, schema_drift
    from auditkit._load.envelope import Envelope
    from auditkit._load.inspect import Inspection, inspect
    from auditkit._load.reader import iter_batches, read_arrow, read_pandas, read_polars
    from auditkit._load.unify import unify_tables
    from auditkit._redis.connection import connect
    from auditkit._redis.embedded import EmbeddedRedis
    from auditkit._redis.ids import StreamID
    from auditkit._redis.streams import streams
    from auditkit._report.report import AuditReport, report
    from auditkit._secrets import redact
    from auditkit._timetravel.projection import Projection
    from auditkit._timetravel.replay import Event

__version__ = "0.1.0"

__all__ = [
    "AggregateNotFound",
    "Archive",
    "ArchiveBusy",
    "ArchiveDamaged",
    "ArchiveEnvelopeConflict",
    "ArchiveError",
    "ArchiveFenced",
    "AuditKitError",
    "AuditReport",
    "AuthenticationFailed",
    "Checkpoint",
    "Config",
    "ConnectionFailed",
    "DriftReport",
    "EmbeddedRedis",
    "EmbeddedServerFailed",
    "Envelope",
    "EnvelopeMismatch",
    "Event",
    "ExportReport",
    "FieldTypeMismatch",
    "HandlerFailed",
    "Inspection",
    "InvalidCheckpoint",
    "InvalidKey",
    "InvalidStreamID",
    "MissingEffectiveTime",
    "MissingUpcaster",
    "NoEvents",
    "PermissionDenied",
    "Projection",
    "ProjectionError",
    "RedisServerNotFound",
    "ServerTooOld",
    "StreamID",
    "StreamNotFound",
    "StreamRecreated",
    "TargetExists",
    "TrimRefused",
    "UnknownEventType",
    "VerifyReport",
    "WitnessRefused",
    "WrongKeyType",
    "audit",
    "check_durability",
    "check_groups",
    "check_integrity",
    "check_read_model",
    "connect",
    "consumer_groups",
    "inspect",
    "iter_batches",
    "pending_entries",
    "read_arrow",
    "read_pandas",
    "read_polars",
    "redact",
    "report",
    "schema_drift",
    "seed_demo",
    "streams",
    "unify_tables",
    "write_baseline",
]

# The rest loads on first use (PEP 562), so that `auditkit --help` and `import auditkit`
# do not pay for pandas, pyarrow, DuckDB and redis-py before they are needed.
_LAZY = {
    "Archive": "auditkit._archive.archive",
    "AuditReport": "auditkit._report.report",
    "Checkpoint": "auditkit._archive.checkpoint",
    "Config": "auditkit._config",
    "DriftReport": "auditkit._drift.report",
    "EmbeddedRedis": "auditkit._redis.embedded",
    "Envelope": "auditkit._load.envelope",
    "Event": "auditkit._timetravel.replay",
    "ExportReport": "auditkit._archive.archive",
    "Inspection": "auditkit._load.inspect",
    "Projection": "auditkit._timetravel.projection",
    "StreamID": "auditkit._redis.ids",
    "VerifyReport": "auditkit._archive.verify",
    "audit": "auditkit._audit.audit",
    "check_durability": "auditkit._audit.durability",
    "check_groups": "auditkit._audit.groups",
    "check_integrity": "auditkit._audit.integrity",
    "check_read_model": "auditkit._audit.readmodel",
    "connect": "auditkit._redis.connection",
    "consumer_groups": "auditkit._audit.groups",
    "inspect": "auditkit._load.inspect",
    "iter_batches": "auditkit._load.reader",
    "pending_entries": "auditkit._audit.groups",
    "read_arrow": "auditkit._load.reader",
    "read_pandas": "auditkit._load.reader",
    "read_polars": "auditkit._load.reader",
    "redact": "auditkit._secrets",
    "report": "auditkit._report.report",
    "schema_drift": "auditkit._drift.report",
    "seed_demo": "auditkit._demo",
    "streams": "auditkit._redis.streams",
    "unify_tables": "auditkit._load.unify",
    "write_baseline": "auditkit._audit.selection",
}


__getattr__, __dir__ = _lazy_names(__name__, _LAZY, __all__)
