"""What each check means, why it matters and how to fix it: the report's catalogue.

One entry per check name that `ak.audit`, `ak.schema_drift` and `Archive.verify` can
emit; a test reads the code for those names and fails when one has no entry here.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["CATALOGUE", "Entry", "entry"]


class Entry(NamedTuple):
    """One check: the family it belongs to, what it means, why it matters, how to fix."""

    family: str
    means: str
    matters: str
    fix: str


_I, _G, _D, _S, _A = "integrity", "consumer groups", "durability", "schema drift", "archive"

CATALOGUE: dict[str, Entry] = {
    # ---- integrity ---------------------------------------------------------------------
    "version-gap": Entry(
        _I,
        "An aggregate's version numbers skip one or more values.",
        "Events of that aggregate are missing: its state rebuilt from the stream is wrong.",
        "Find the missing versions (archive, producer logs) and restore them; check the "
        "trimming policy and the producer's error handling.",
    ),
    "version-duplicate": Entry(
        _I,
        "Two events of one aggregate carry the same version.",
        "A lost optimistic-concurrency check: two writers both thought they were next.",
        "Append with a version check (a Lua script or WATCH/MULTI); decide which event wins.",
    ),
    "version-regression": Entry(
        _I + ", " + _S,
        "A version number goes back: an aggregate's version, or an event type's schema "
        "version still written after a newer one appeared.",
        "Out-of-order writes, or a producer still running old code after a deploy.",
        "Find the producer (the detail names it) and upgrade or stop it; order appends per "
        "aggregate.",
    ),
    "duplicate-idempotency-key": Entry(
        _I,
        "Two events carry the same idempotency key.",
        "A retried command was applied twice: money moved twice, a mail sent twice.",
        "Deduplicate on the key when appending; compensate the duplicate.",
    ),
    "idempotency-field-missing": Entry(
        _I,
        "The idempotency field named for the check is absent from the events.",
        "Duplicates cannot be detected, so their absence proves nothing.",
        "Name the field that holds the key (`idempotency_field`), or add one to the events.",
    ),
    "version-field-missing": Entry(
        _I,
        "The version field named for the check is absent from the events.",
        "Gaps and duplicates per aggregate cannot be detected.",
        "Name the field that holds the aggregate version (`version_field`).",
    ),
    "event-after-terminal": Entry(
        _I,
        "An aggregate has events after its terminal event (closed, deleted).",
        "Commands were accepted on an entity that no longer exists.",
        "Reject commands on ended aggregates; review the events listed.",
    ),
    "clock-skew": Entry(
        _I,
        "Record time (the stream ID) and effective time (`occurred_at`) differ by more "
        "than the tolerance.",
        "A late or early producer clock, or events recorded long after they happened: "
        "queries by either clock disagree.",
        "Synchronise producer clocks (NTP); for backfills, query by effective time.",
    ),
    "clock-regression": Entry(
        _I,
        "An aggregate's `occurred_at` goes back in time from one event to the next.",
        "Effective-time queries see the events in another order than they were recorded.",
        "Check the producer's clock and whether events were replayed out of order.",
    ),
    "unknown-event-type": Entry(
        _I,
        "Events whose type no handler of the projection knows.",
        "The projection silently ignores them: its state misses their effect.",
        "Add a handler (or an upcaster) for the type, or confirm it can be ignored.",
    ),
    "missing-envelope": Entry(
        _I,
        "No event has one of the envelope's concepts (aggregate id, type, version).",
        "Checks per aggregate treat the whole stream as one group.",
        "Pass an envelope that names the field (`auditkit inspect STREAM` proposes one).",
    ),
    "read-model-drift": Entry(
        _I,
        "A read model (a Redis hash, say) differs from the state the events rebuild.",
        "Users see numbers the history does not support.",
        "Rebuild the read model from the events; find the projector bug or the lost event.",
    ),
    "read-model-missing": Entry(
        _I,
        "An aggregate the events describe has no read model entry.",
        "The read model lost it, or its projector never ran for it.",
        "Rebuild the read model entry from the events.",
    ),
    "read-model-extra": Entry(
        _I,
        "A read model entry has no events behind it.",
        "Data written outside the event store, or events lost after the projection ran.",
        "Find who wrote the entry; restore the events or delete the entry.",
    ),
    # ---- consumer groups ---------------------------------------------------------------
    "poison-message": Entry(
        _G,
        "A pending entry delivered more times than the threshold, never acknowledged.",
        "A consumer fails on it every time: it blocks or loops, and its effect never happens.",
        "Read its payload (linked evidence), fix the consumer or move it to a dead-letter "
        "stream (XACK after copying).",
    ),
    "pending-stale": Entry(
        _G,
        "An entry pending at a consumer for longer than the threshold.",
        "The consumer crashed mid-work: the entry is not processed until claimed.",
        "XAUTOCLAIM it to a live consumer; find why the consumer stopped.",
    ),
    "pending-trimmed": Entry(
        _G,
        "A pending entry whose message no longer exists in the stream.",
        "It was trimmed or deleted before being acknowledged: it can never be processed.",
        "Restore it from the archive if it matters, then XACK it; trim only below what "
        "every group has acknowledged.",
    ),
    "consumer-idle": Entry(
        _G,
        "A consumer not seen for longer than the threshold.",
        "With pending entries it holds work nobody does; without, it is clutter.",
        "XAUTOCLAIM its entries, then XGROUP DELCONSUMER.",
    ),
    "group-lag": Entry(
        _G,
        "Entries added to the stream that the group has not been delivered yet.",
        "Consumers fall behind: effects happen late, and trimming may remove undelivered entries.",
        "Add consumers or fix the slow one; watch the lag over time.",
    ),
    # ---- durability --------------------------------------------------------------------
    "no-persistence": Entry(
        _D,
        "Neither AOF nor RDB snapshots are enabled.",
        "A restart loses every event: the stream is the system of record.",
        "Enable `appendonly yes` (and snapshots).",
    ),
    "aof-off": Entry(
        _D,
        "Only RDB snapshots persist the data.",
        "A crash loses every event since the last snapshot.",
        "Enable `appendonly yes`.",
    ),
    "appendfsync-no": Entry(
        _D,
        "The AOF is fsynced when the OS decides (`appendfsync no`).",
        "A power loss may lose up to ~30 s of acknowledged events.",
        "Set `appendfsync everysec` (or `always`).",
    ),
    "evicting-policy": Entry(
        _D,
        "The maxmemory policy may evict keys, streams included.",
        "Under memory pressure Redis deletes history without a trace.",
        "Set `maxmemory-policy noeviction` for the event store.",
    ),
    "replica": Entry(
        _D,
        "The server is a replica.",
        "Its data lags the primary; audits of it may miss the latest events.",
        "Audit the primary for current state; a replica is fine for history.",
    ),
    "durability-unknown": Entry(
        _D,
        "Persistence settings could not be read (CONFIG or INFO refused).",
        "Durability is unproven, not proven bad.",
        "Grant +config|get and +info to the auditing user, or ask an administrator.",
    ),
    "trimmed-not-archived": Entry(
        _D,
        "The stream was trimmed (its first entries are gone) and no archive holds them.",
        "History is lost: state at past times cannot be rebuilt.",
        "Archive before trimming (`auditkit export`, then `auditkit trim`).",
    ),
    # ---- schema drift ------------------------------------------------------------------
    "drift-without-version-bump": Entry(
        _S,
        "A payload field appears, disappears or changes type with no new schema version.",
        "Consumers and upcasters keyed on the version cannot tell the shapes apart.",
        "Bump the schema version with shape changes; add an upcaster for the old shape.",
    ),
    "mixed-types": Entry(
        _S,
        "A payload field holds values of several JSON types in one window.",
        "Consumers that expect one type fail or compute wrong results.",
        "Find the producer writing the other type (linked samples) and fix it.",
    ),
    "hidden-types": Entry(
        _S,
        "A field's values had several types, made text by the loader, yet read as one.",
        'A number written as text (`"15"`) cannot be told from a number here.',
        "Check the producers of the field; load with read_arrow to keep the types.",
    ),
    "field-added": Entry(
        _S,
        "A newer schema version adds a payload field.",
        "Expected evolution; old events lack the field.",
        "Make sure an upcaster fills it for old versions.",
    ),
    "field-removed": Entry(
        _S,
        "A newer schema version drops a payload field.",
        "Consumers reading the field get nothing from new events.",
        "Confirm no consumer needs it.",
    ),
    "type-change": Entry(
        _S,
        "A newer schema version changes a payload field's type.",
        "Consumers that handle both versions must convert.",
        "Provide an upcaster that converts the old type.",
    ),
    "undeclared-type": Entry(
        _S,
        "An event type is not in the schema registry.",
        "Nobody declared its shape: nothing checks what producers write.",
        "Add its JSON Schema to the registry (`report.write_registry` starts one).",
    ),
    "undeclared-version": Entry(
        _S,
        "A schema version of a type is not in the registry.",
        "A producer writes a version nobody declared.",
        "Declare the version, or stop the producer writing it.",
    ),
    "schema-mismatch": Entry(
        _S,
        "Observed payloads differ from the declared JSON Schema (field, type, required).",
        "Producers and the contract disagree.",
        "Fix the producer or the schema, whichever is wrong.",
    ),
    "no-upcaster-path": Entry(
        _S,
        "An old schema version occurs with no upcaster chain to the current version.",
        "Projections fail or misread those events.",
        "Write the missing upcaster (`upcast_v1_v2`).",
    ),
    # ---- archive -----------------------------------------------------------------------
    "archive-format": Entry(
        _A,
        "The archive was written in a format this auditkit does not read.",
        "Nothing in it can be verified.",
        "Use the auditkit version that wrote it.",
    ),
    "manifest-missing": Entry(
        _A,
        "The stream's manifest is gone, though files or a checkpoint say it existed.",
        "Nothing proves which files belong to the archive.",
        "Restore the manifest from a backup, or `auditkit repair` (recorded in the chain).",
    ),
    "manifest-unreadable": Entry(
        _A,
        "A manifest line is not a manifest record.",
        "The chain of hashes is broken there: later files are unproven.",
        "Restore the manifest from a backup, or `auditkit repair`.",
    ),
    "manifest-chain": Entry(
        _A,
        "A manifest record's hash does not chain to the previous one.",
        "The manifest was edited: records were changed, removed or inserted.",
        "Treat the archive as tampered; restore from a backup and compare.",
    ),
    "manifest-cut": Entry(
        _A,
        "The manifest ends before its recorded length.",
        "Records were cut off the end: a rollback.",
        "Restore the manifest from a backup; compare with a kept checkpoint.",
    ),
    "manifest-rebuilt": Entry(
        _A,
        "The manifest was rebuilt from the files (`auditkit repair`).",
        "The chain before the rebuild is no longer proven by hashes.",
        "Review the reason recorded; take a new checkpoint.",
    ),
    "range-overlap": Entry(
        _A,
        "Two archived files hold overlapping ID ranges.",
        "Entries would be counted twice by a reader of the folder.",
        "Run `auditkit repair`; check for two writers.",
    ),
    "range-gap": Entry(
        _A,
        "IDs are missing between two archived files.",
        "The archive does not hold the stream's whole history.",
        "Re-export the range if the stream still holds it; else record the loss.",
    ),
    "file-missing": Entry(
        _A,
        "A file the manifest lists is gone.",
        "Its entries are lost from the archive.",
        "Restore it from a backup, or `auditkit repair` to record the loss.",
    ),
    "file-changed": Entry(
        _A,
        "A file's SHA-256 differs from the manifest's.",
        "The file was changed after it was written: its content is unproven.",
        "Restore it from a backup; treat as tampering until explained.",
    ),
    "file-unreadable": Entry(
        _A,
        "A file cannot be read as Parquet.",
        "Its entries are unavailable.",
        "Restore it from a backup.",
    ),
    "file-content": Entry(
        _A,
        "A file holds other entries than the manifest lists (count or ID range).",
        "The file does not match its record.",
        "Restore it from a backup, or re-export the range.",
    ),
    "file-unlisted": Entry(
        _A,
        "A file the manifest should list is not in it.",
        "A manifest was lost or cut short, or a file was added by hand.",
        "Run `auditkit repair`, or remove the file added by hand.",
    ),
    "file-leftover": Entry(
        _A,
        "A file left by an interrupted writer, not in the manifest.",
        "A reader globbing the folder counts its entries twice.",
        "Run the next export (it removes it), or read through the manifest.",
    ),
    "file-in-flight": Entry(
        _A,
        "A file past the manifest's end: an export is writing it.",
        "Nothing, unless no export is running (then it is a leftover).",
        "Wait for the export, or rerun it.",
    ),
    "stream-deleted": Entry(
        _A,
        "The live stream no longer exists; the archive holds its history.",
        "Expected after a retirement; unexpected otherwise.",
        "Confirm the stream was retired on purpose.",
    ),
    "stream-recreated": Entry(
        _A,
        "The live stream's counters say it was deleted and created again.",
        "Live and archived entries are different histories under one name.",
        "Archive the new stream elsewhere; investigate the deletion.",
    ),
    "conflict": Entry(
        _A,
        "An archived entry differs from the live entry with the same ID.",
        "One of the two was rewritten: history is not what was archived.",
        "Compare both (linked evidence); treat as tampering until explained.",
    ),
    "content-not-compared": Entry(
        _A,
        "Live entries could not be compared with the archive (privacy rules, key).",
        "Conflicts would not show.",
        "Pass the archive's key (--key-env NAME) and verify again.",
    ),
    "loss-unknown": Entry(
        _A,
        "The server (Redis < 7) has no entries-added counter.",
        "Entries trimmed before they were archived cannot be counted.",
        "Upgrade to Redis 7, or archive before any trim.",
    ),
    "loss-recorded": Entry(
        _A,
        "Entries left the stream before they were archived; the ledger records the range.",
        "History is incomplete in that range.",
        "Find why; acknowledge with `auditkit acknowledge STREAM N --reason TEXT`.",
    ),
    "loss-acknowledged": Entry(
        _A,
        "A recorded loss that an operator acknowledged, with the reason.",
        "Known and explained; it stays in the record.",
        "Nothing more; the reason is the evidence.",
    ),
    "checkpoint-extended": Entry(
        _A,
        "The archive extends the checkpoint given to verify.",
        "Proof that nothing archived before the checkpoint was rewritten or rolled back.",
        "Nothing; keep the new checkpoint too.",
    ),
    "checkpoint-not-extended": Entry(
        _A,
        "The archive does not extend the checkpoint given to verify.",
        "It was rewritten or rolled back since the checkpoint.",
        "Treat as tampering: compare with backups and the witness.",
    ),
    "checkpoint-signature": Entry(
        _A,
        "A checkpoint's Ed25519 signature is missing, invalid or by another key.",
        "The checkpoint itself cannot be trusted.",
        "Verify against the public key of who signed it; investigate a bad signature.",
    ),
    "checkpoint-witness": Entry(
        _A,
        "The witness could not be read, or its latest checkpoint is not extended.",
        "The outside proof of the archive's history is missing or contradicts it.",
        "Check the witness's access; treat a contradiction as tampering.",
    ),
}


def entry(check: str) -> Entry:
    """The catalogue entry of a check; a check not catalogued gets a plain one."""
    return CATALOGUE.get(
        check,
        Entry("other", "A check this version's catalogue does not describe.", "", ""),
    )
