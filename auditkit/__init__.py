"""auditkit: audit, time-travel and archive event-sourced systems stored in Redis Streams.

>>> import auditkit as ak
>>> client = ak.connect()  # $REDIS_URL, else a throwaway embedded redis-server
>>> client.ping()
True
"""

from auditkit._archive.archive import Archive, ExportReport
from auditkit._archive.checkpoint import Checkpoint
from auditkit._archive.verify import VerifyReport
from auditkit._audit.audit import audit
from auditkit._audit.durability import check_durability
from auditkit._audit.groups import check_groups, consumer_groups, pending_entries
from auditkit._audit.integrity import check_integrity
from auditkit._audit.readmodel import check_read_model
from auditkit._config import Config
from auditkit._demo import seed_demo
from auditkit._drift.report import DriftReport, schema_drift
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
from auditkit._load.envelope import Envelope
from auditkit._load.inspect import Inspection, inspect
from auditkit._load.reader import iter_batches, read_arrow, read_pandas
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
    "redact",
    "report",
    "schema_drift",
    "seed_demo",
    "streams",
    "unify_tables",
]
