"""auditkit: audit, time-travel and archive event-sourced systems stored in Redis Streams.

>>> import auditkit as ak
>>> r = ak.connect()  # $REDIS_URL, else a throwaway embedded redis-server  # doctest: +SKIP
"""

from auditkit._archive import Archive, ExportReport
from auditkit._audit import audit
from auditkit._connection import connect
from auditkit._demo import seed_demo
from auditkit._drift import DriftReport, schema_drift
from auditkit._durability import check_durability
from auditkit._embedded import EmbeddedRedis
from auditkit._envelope import Envelope
from auditkit._exceptions import (
    ArchiveBusy,
    ArchiveError,
    AuditKitError,
    AuthenticationFailed,
    ConnectionFailed,
    EmbeddedServerFailed,
    HandlerFailed,
    InvalidStreamID,
    MissingEffectiveTime,
    MissingUpcaster,
    PermissionDenied,
    ProjectionError,
    RedisServerNotFound,
    ServerTooOld,
    StreamNotFound,
    StreamRecreated,
    TrimRefused,
    UnknownEventType,
    WrongKeyType,
)
from auditkit._groups import check_groups, consumer_groups, pending_entries
from auditkit._ids import StreamID
from auditkit._integrity import check_integrity
from auditkit._projection import Projection
from auditkit._reader import iter_batches, read_arrow, read_pandas
from auditkit._readmodel import check_read_model
from auditkit._replay import Event
from auditkit._schema import unify_tables
from auditkit._secrets import redact
from auditkit._streams import streams
from auditkit._verify import VerifyReport

__version__ = "0.1.0"

__all__ = [
    "Archive",
    "ArchiveBusy",
    "ArchiveError",
    "AuditKitError",
    "AuthenticationFailed",
    "ConnectionFailed",
    "DriftReport",
    "EmbeddedRedis",
    "EmbeddedServerFailed",
    "Envelope",
    "Event",
    "ExportReport",
    "HandlerFailed",
    "InvalidStreamID",
    "MissingEffectiveTime",
    "MissingUpcaster",
    "PermissionDenied",
    "Projection",
    "ProjectionError",
    "RedisServerNotFound",
    "ServerTooOld",
    "StreamID",
    "StreamNotFound",
    "StreamRecreated",
    "TrimRefused",
    "UnknownEventType",
    "VerifyReport",
    "WrongKeyType",
    "audit",
    "check_durability",
    "check_groups",
    "check_integrity",
    "check_read_model",
    "connect",
    "consumer_groups",
    "iter_batches",
    "pending_entries",
    "read_arrow",
    "read_pandas",
    "redact",
    "schema_drift",
    "seed_demo",
    "streams",
    "unify_tables",
]
