"""The `auditkit` command: the library's jobs for cron, CI and a terminal.

Exit codes: 0 done, 1 the job found something (findings, a failed verification),
2 bad usage or input (an option's value, a Redis URL that names no server, an archive that
is missing or does not hold the stream, SQL that DuckDB refuses), 3 the job could not run
(Redis unreachable or refusing, permission denied, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import auditkit as ak
from auditkit._cli.render import FORMATS, SHOWN, terminal_width, wrap_text
from auditkit._cli.render import print_frame as _print_frame
from auditkit._cli.words import cli_words as _cli_words

# pandas, pyarrow, DuckDB and redis-py load in the commands that use them: `--help` and
# a usage error answer at once.
if TYPE_CHECKING:
    import pyarrow as pa
    import redis
    from redis.cluster import RedisCluster

__all__ = ["main"]

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3


class UsageError(ak.AuditKitError, ValueError):
    """The command line asks for something that cannot work as given."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    for out in (sys.stdout, sys.stderr):
        # A key that is not UTF-8 (a str with surrogate escapes) is written `\\xNN`.
        if isinstance(out, io.TextIOWrapper):
            out.reconfigure(errors=SHOWN)
    parser = _parser()
    args = parser.parse_args(_command_first(parser, list(sys.argv[1:] if argv is None else argv)))
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.run(args)
        return code
    except ak.EnvelopeMismatch as exc:
        # The library's next step names Python; here it is the command line's.
        print(
            f"auditkit: error: {exc.summary} Run `auditkit inspect {exc.stream}` to see its "
            f"fields and a proposed envelope (--output envelope.toml saves it), then pass "
            "--envelope envelope.toml or a preset (default, flat, faststream, bullmq).",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except (ak.InvalidStreamID, ak.InvalidCheckpoint, ak.InvalidKey, UsageError) as exc:
        print(f"auditkit: error: {_cli_words(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except ak.AuditKitError as exc:
        print(f"auditkit: error: {_cli_words(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("auditkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (`auditkit inspect s | head -2`): no traceback, and no second
        # error when Python flushes stdout at exit. 141 is a shell's code for SIGPIPE.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _command_first(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`auditkit --redis-url URL audit orders` read as `auditkit audit --redis-url URL
    orders`: options written before the command (as git and docker take them) go after it."""
    if not argv or not argv[0].startswith("-") or argv[0] in ("-h", "--help", "--version"):
        return argv
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands: dict[str, argparse.ArgumentParser] = sub.choices
    flags = {
        option
        for command in commands.values()
        for action in command._actions
        if action.nargs == 0
        for option in action.option_strings
    }
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 1 if "=" in argv[i] or argv[i] in flags else 2  # an option and its value
    if i < len(argv) and argv[i] in commands:
        return [argv[i], *argv[:i], *argv[i + 1 :]]
    return argv


def _entries(n: int) -> str:
    return f"{n:,} {'entry' if n == 1 else 'entries'}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auditkit",
        description="Audit, time-travel and archive event streams stored in Redis Streams.",
        epilog="Exit codes: 0 done, 1 findings, 2 bad usage, 3 could not run.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"auditkit {ak.__version__}",
        help="print auditkit's version and exit",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = _command(
        sub,
        "demo",
        _run_demo,
        "Seed the demo data set and summarise it.",
        "Starts an embedded Redis (or uses --redis-url / $REDIS_URL), writes the demo "
        "streams (idempotent), and prints what they hold.",
        redis="demo",
    )
    demo.add_argument("--reset", action="store_true", help="delete and rewrite the demo streams")
    demo.add_argument(
        "--report",
        default="auditkit-report",
        metavar="DIR",
        help="folder for the HTML report, e.g. --report reports/demo (default: auditkit-report)",
    )
    listing = _command(
        sub,
        "streams",
        _run_streams,
        "List streams: length, first/last ID and time, groups, memory.",
        "One row per stream matching PATTERN (SCAN ... TYPE stream), with Redis 7's "
        "entries-added and max-deleted-entry-id counters where the server has them. The "
        "table shows the main columns; --format json or csv gives every one.",
    )
    listing.add_argument(
        "pattern", nargs="?", default="*", help="glob pattern, e.g. 'orders:*' (default: *)"
    )
    _format_option(listing)

    export = _command(
        sub,
        "export",
        _run_export,
        "Archive a stream's new entries to Parquet.",
        "Incremental, idempotent and crash-safe: writes the entries after the last archived "
        "one, up to the stream's current end (see docs/archive.md).",
    )
    export.add_argument("stream", help="stream key, e.g. orders")
    _archive_option(export)
    _envelope_option(export)
    export.add_argument(
        "--rows-per-file",
        type=int,
        default=50_000,
        metavar="N",
        help="at most N entries per Parquet file, e.g. --rows-per-file 100000 (default: 50000)",
    )
    export.add_argument(
        "--bytes-per-file",
        type=int,
        default=256 << 20,
        metavar="BYTES",
        help="at most about BYTES of raw entries per file, e.g. --bytes-per-file 67108864 "
        "(default: 268435456, 256 MiB)",
    )
    export.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="FIELD",
        help="leave a field out of the archive, e.g. --drop email or --drop payload.card "
        "(repeatable; recorded in the archive, and applied by every later export)",
    )
    export.add_argument(
        "--pseudonymize",
        action="append",
        default=[],
        metavar="FIELD",
        help="replace a field by a keyed HMAC, e.g. --pseudonymize payload.customer.email "
        "(repeatable; needs --key-env)",
    )
    _key_option(export)

    verify = _command(
        sub,
        "verify",
        _run_verify,
        "Prove an archive complete and untouched (exit 1 when it is not).",
        "Checks files, hashes, the manifest chain and ID ranges; unless --offline, also "
        "compares the live stream with the archive and counts entries lost before archiving. "
        "With --since or --witness, fails unless the archive extends the checkpoints kept "
        "outside it. After the findings, prints the archive's current checkpoint of each "
        "stream when all is ok (--format json: one object with ok, findings, checkpoints).",
        redis="offline",
    )
    verify.add_argument(
        "stream", nargs="?", help="stream key, e.g. orders (default: every archived stream)"
    )
    _archive_option(verify)
    verify.add_argument(
        "--offline", action="store_true", help="check the files only, no Redis (no URL needed)"
    )
    _anchor_options(verify, "fail")
    _key_option(verify)
    _format_option(verify)
    verify.add_argument(
        "--fail-on",
        choices=("info", "warning", "error", "critical"),
        default="error",
        help="exit 1 on a finding of this severity or worse, e.g. --fail-on critical "
        "(default: error)",
    )

    checkpoint = _command(
        sub,
        "checkpoint",
        _run_checkpoint,
        "Print the archive's checkpoint of a stream: keep it to prove the archive later.",
        "A small text naming the head of the stream's manifest chain (docs/archive.md, "
        '"Proving the archive to a third party"). Keep it outside the archive; '
        "`auditkit verify --since FILE` fails if the archive is later rewritten or rolled "
        "back. Example: auditkit checkpoint orders --archive archive/ --sign-key signing.pem "
        "--witness redis://witness:6379/0 --output orders.checkpoint",
        redis="unused",
    )
    checkpoint.add_argument("stream", help="stream key, e.g. orders")
    _archive_option(checkpoint)
    checkpoint.add_argument(
        "--sign-key",
        metavar="PEM",
        help="sign with this Ed25519 private key (unencrypted PEM; make one with `openssl "
        "genpkey -algorithm ed25519 -out signing.pem`), e.g. --sign-key signing.pem",
    )
    _witness_option(
        checkpoint,
        "also keep the checkpoint there (refused when the archive does not extend the "
        "latest one already there)",
    )
    checkpoint.add_argument(
        "--output",
        metavar="FILE",
        help="also write the checkpoint to FILE, e.g. --output orders.checkpoint",
    )

    trim = _command(
        sub,
        "trim",
        _run_trim,
        "XTRIM MINID a stream up to its archived horizon, verified again first.",
        "Reads the manifest under the stream's lease, checks every file's SHA-256, compares "
        "each live entry that would go with its archived copy, and refuses (exit 3) when "
        "anything differs, when the stream was recreated, when a recorded loss is not "
        "acknowledged, when consumer groups have pending (delivered, unacknowledged) or "
        "undelivered entries below the cut, on a replica, or (with --since or --witness) "
        "when the archive no longer extends a checkpoint kept outside it.",
    )
    trim.add_argument("stream", help="stream key, e.g. orders")
    _archive_option(trim)
    trim.add_argument(
        "--before",
        metavar="ID|TIME",
        help="trim only entries below this ID or time, e.g. 2026-03-01 (never above the "
        "archived horizon)",
    )
    trim.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything and print what would go, removing nothing",
    )
    trim.add_argument(
        "--allow-pending",
        action="store_true",
        help="trim entries consumer groups were delivered but have not acknowledged",
    )
    trim.add_argument(
        "--allow-undelivered",
        action="store_true",
        help="trim entries consumer groups were never delivered (their consumers never see them)",
    )
    _anchor_options(trim, "refuse")
    _key_option(trim)

    acknowledge = _command(
        sub,
        "acknowledge",
        _run_acknowledge,
        "Acknowledge a loss recorded in the archive's ledger, with a reason.",
        "Losses (entries that left the stream before they could be archived) fail verify and "
        "block trim until acknowledged. RECORD is the ledger record verify names. Example: "
        "auditkit acknowledge orders 7 --reason 'MAXLEN cap in the producer until v1.2'",
        redis="unused",
    )
    acknowledge.add_argument("stream", help="stream key, e.g. orders")
    acknowledge.add_argument(
        "record", type=int, help="the loss's ledger record, as verify names it, e.g. 7"
    )
    acknowledge.add_argument(
        "--reason",
        required=True,
        metavar="TEXT",
        help="why the loss is accepted (kept for auditors), e.g. --reason 'MAXLEN cap in "
        "the producer until v1.2'",
    )
    _archive_option(acknowledge)

    repair = _command(
        sub,
        "repair",
        _run_repair,
        "Rebuild a stream's manifest from its files (lost, damaged, or format 1).",
        "Reads and hashes every file of the stream, chains them in ID order, and records in "
        "the chain that it was rebuilt and why. Copies of entries another file holds are "
        "left out after checking they are the same. Example: auditkit repair orders "
        "--archive archive/ --reason 'manifest deleted by a cleanup job'",
        redis="unused",
    )
    repair.add_argument("stream", help="stream key, e.g. orders")
    repair.add_argument(
        "--reason",
        required=True,
        metavar="TEXT",
        help="why it is rebuilt (kept for auditors), e.g. --reason 'manifest deleted by a "
        "cleanup job'",
    )
    _archive_option(repair)

    restore = _command(
        sub,
        "restore",
        _run_restore,
        "Write archived entries back into a stream: a new key, or the trimmed stream itself.",
        "Checks the manifest chain and every archived file's SHA-256 first, and writes "
        "nothing when one does not match (exit 3). Entries the target already holds with "
        "the same ID and fields are kept, so a restore that was stopped can be run again; "
        "one with other fields refuses (exit 3). Without --to, refills STREAM itself below "
        "its live entries, keeping its consumer groups and their pending entries. Example: "
        "auditkit restore orders --to orders:restored --archive archive/ "
        "--redis-url redis://localhost:6379/0",
    )
    restore.add_argument("stream", help="the archived stream's key, e.g. orders")
    restore.add_argument(
        "--to",
        metavar="TARGET",
        help="the key to write into, e.g. --to orders:restored (default: STREAM itself, "
        "refilled below its live entries)",
    )
    _archive_option(restore)

    query = _command(
        sub,
        "query",
        _run_query,
        "Run SQL over the archive (view `events`), with --live the live tail too.",
        "Example: auditkit query --archive archive/ --live "
        '"select event_type, count(*) from events group by 1"',
        redis="live",
    )
    query.add_argument(
        "sql",
        help="a DuckDB query over the view `events`, e.g. 'select count(*) from events'",
    )
    audit_command = _command(
        sub,
        "audit",
        _run_audit,
        "Audit a stream: integrity, consumer groups, durability (exit 1 on findings).",
        "Prints every finding (check, severity, stream, id, aggregate, detail), then a count "
        "per check and severity; --format json or csv prints the findings alone, for "
        "machines; --output writes them to a file. Exit 1 when a finding is a warning or "
        "worse, 0 when there are none or only informational ones.",
    )
    audit_command.add_argument("stream", help="stream key or glob pattern, e.g. 'orders:*'")
    _envelope_option(audit_command)
    _key_option(audit_command)
    drift_command = _command(
        sub,
        "drift",
        _run_drift,
        "Schema drift of a stream's payloads over time (exit 1 on warnings).",
        "Per event type, schema version and window: versions seen, fields appearing, "
        "disappearing or changing type, with or without a version bump (docs/drift.md).",
    )
    drift_command.add_argument("stream", help="stream key or glob pattern, e.g. 'orders:*'")
    _envelope_option(drift_command)
    _key_option(drift_command)
    drift_command.add_argument(
        "--archive",
        metavar="DIR|URL",
        help="the archive the stream was exported to: its whole history is read (archived, "
        "then live events), e.g. --archive archive/",
    )
    drift_command.add_argument(
        "--window",
        default="month",
        metavar="WINDOW",
        help="hour, day, week, month, or a pandas offset such as 15min, 6h, 2D, e.g. "
        "--window week (default: month)",
    )
    drift_command.add_argument(
        "--effective",
        action="store_true",
        help="windows by occurred_at (effective time), not by record time",
    )
    drift_command.add_argument(
        "--registry",
        metavar="DIR",
        help="declared JSON Schemas to check, one folder per event type, e.g. --registry schemas/",
    )
    drift_command.add_argument(
        "--write-registry",
        metavar="DIR",
        help="write the observed schemas as a registry to start from, e.g. --write-registry "
        "schemas/",
    )
    _format_option(drift_command)
    state = _command(
        sub,
        "state",
        _run_state,
        "One aggregate's state as of a moment, as a projection computes it.",
        "Replays the aggregate's events up to --at (a stream ID or time; record time unless "
        "--effective) through a projection and prints its state: your own with --projection "
        "module:object, or one described with --last, --count and --sum. Given none, the "
        "last value of every payload field and the count of each event type. Example: "
        "auditkit state accounts acct-7 --at 2026-03-01 --sum balance=Deposited:payload.amount "
        "--sum balance=Withdrawn:-payload.amount",
    )
    state.add_argument(
        "stream",
        help="stream key, or a template such as 'account:{aggregate_id}' for one stream per "
        "aggregate, e.g. accounts",
    )
    state.add_argument("aggregate_id", help="the aggregate's id, e.g. acct-7")
    _envelope_option(state)
    state.add_argument(
        "--archive",
        metavar="DIR|URL",
        help="an archive holding the stream's older (perhaps trimmed) events, e.g. --archive "
        "archive/; default: auditkit.toml's archive",
    )
    state.add_argument(
        "--at",
        metavar="ID|TIME",
        help="a stream ID or an ISO-8601 time, e.g. --at 2026-03-01T12:00Z (default: now)",
    )
    state.add_argument("--effective", action="store_true", help="use occurred_at, not record time")
    state.add_argument(
        "--projection",
        metavar="MODULE:OBJECT",
        help="an auditkit Projection importable from this folder or PYTHONPATH, e.g. "
        "--projection projections:accounts (the object `accounts` in projections.py)",
    )
    state.add_argument(
        "--last",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="a state field holding a column's last value, e.g. --last owner=payload.owner "
        "(repeatable)",
    )
    state.add_argument(
        "--count",
        action="append",
        default=[],
        metavar="FIELD=TYPE[,TYPE]",
        help="a state field counting events of these types ('*': all), e.g. --count "
        "deposits=Deposited (repeatable)",
    )
    state.add_argument(
        "--sum",
        action="append",
        default=[],
        metavar="FIELD=TYPE:COLUMN",
        help="a state field adding a column of one event type (-COLUMN subtracts), e.g. "
        "--sum balance=Deposited:payload.amount --sum balance=Withdrawn:-payload.amount "
        "(repeatable)",
    )
    _format_option(state)
    _key_option(state)
    audit_command.add_argument(
        "--output",
        metavar="PATH",
        help="also write every finding to a file, by its extension: .parquet, .csv, .json "
        "or .xlsx (with openpyxl), e.g. --output findings.parquet",
    )
    audit_command.add_argument(
        "--terminal",
        action="append",
        default=[],
        metavar="TYPE",
        help="an event type that ends an aggregate, e.g. --terminal Closed (repeatable)",
    )
    audit_command.add_argument(
        "--idempotency-field",
        metavar="COLUMN",
        help="the column that must be unique per event, e.g. --idempotency-field "
        "payload.request_id (default: none checked)",
    )
    audit_command.add_argument(
        "--version-field",
        metavar="COLUMN",
        help="the column holding each aggregate's version, checked for gaps and duplicates, "
        "e.g. --version-field payload.version (default: none checked)",
    )
    audit_command.add_argument(
        "--archive",
        metavar="DIR|URL",
        help="the archive the stream was exported to: the stream is audited over its whole "
        "history (archived, then live events) and the archive's verification joins the "
        "findings, e.g. --archive archive/; default: auditkit.toml's archive, left out with "
        "a note while it holds nothing",
    )
    audit_command.add_argument(
        "--select",
        metavar="CHECKS",
        help="comma list of checks, prefixes or families to run, e.g. --select pending,poison",
    )
    audit_command.add_argument(
        "--ignore",
        metavar="CHECKS",
        help="comma list of checks to skip, e.g. --ignore no-persistence",
    )
    audit_command.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a limit, repeatable: skew, stale_after, idle_after (milliseconds), poison_after, "
        "lag_warning, pending_count, e.g. --threshold poison_after=5",
    )
    audit_command.add_argument(
        "--fail-on",
        choices=("info", "warning", "error", "critical"),
        default="warning",
        help="exit 1 on a finding not accepted of this severity or worse, e.g. --fail-on error "
        "(default: warning)",
    )
    audit_command.add_argument(
        "--baseline",
        metavar="FILE",
        help="accepted findings (TOML or JSON): fail only on others, e.g. --baseline "
        "audit-baseline.toml",
    )
    audit_command.add_argument(
        "--write-baseline",
        metavar="FILE",
        help="write every finding to FILE as accepted (needs --reason), then exit 0, e.g. "
        "--write-baseline audit-baseline.toml",
    )
    audit_command.add_argument(
        "--reason",
        metavar="TEXT",
        help="why --write-baseline accepts them, e.g. --reason 'test server, no persistence'",
    )
    _format_option(audit_command)
    _archive_option(query)
    query.add_argument(
        "--live", action="store_true", help="add the live tail from Redis (needs a Redis URL)"
    )
    _key_option(query)
    _envelope_option(
        query, "for the live tail (default: the envelope each stream was archived with)"
    )
    _format_option(query)
    inspect_command = _command(
        sub,
        "inspect",
        _run_inspect,
        "Show a stream's raw layout and propose an envelope for it.",
        "Samples the head, middle and tail of STREAM, shows each field (share of entries, "
        "an example), detects the payload format (JSON, FastStream frames, msgpack, flat "
        "fields), and prints a proposed envelope as TOML with the share of entries each "
        "concept fills. Pass the TOML to other commands with --envelope FILE. --format "
        "json prints one object (fields, format, matches, the envelope's TOML); csv the "
        "fields.",
    )
    inspect_command.add_argument("stream", help="stream key, e.g. orders")
    inspect_command.add_argument(
        "--sample",
        type=int,
        default=300,
        metavar="N",
        help="entries to look at, e.g. --sample 1000 (default: 300)",
    )
    inspect_command.add_argument(
        "--output",
        metavar="FILE",
        help="write the proposed envelope's TOML alone to FILE, e.g. --output envelope.toml",
    )
    _format_option(inspect_command)
    report_command = _command(
        sub,
        "report",
        _run_report,
        "Write an auditor's HTML report of streams (exit 1 when it fails).",
        "One self-contained HTML file: the verdict, every finding (audit, schema drift, "
        "archive verification) linked to the events behind it, plots, run metadata and a "
        "catalogue of the checks; findings.csv and findings.parquet beside it. Exit 1 when "
        "a finding is critical or an error.",
    )
    report_command.add_argument(
        "stream", nargs="+", help="stream keys or glob patterns, e.g. payments 'orders:*'"
    )
    report_command.add_argument(
        "--output",
        required=True,
        metavar="DIR",
        help="folder to write the report to, e.g. --output audit-report/",
    )
    _archive_option(report_command)
    _envelope_option(report_command)
    _key_option(report_command)
    sample = _command(
        sub,
        "sample",
        _run_sample,
        "Cut a test fixture from a stream: its latest entries and consumer-group state.",
        "Writes the latest --count entries, every pending entry's message, the groups, "
        "consumers and pending entries (delivery counts, idle times) and the stream's "
        "counters, for auditkit.testing's seed() (docs/testing.md). Example: auditkit sample "
        "orders --count 500 --output tests/samples/orders.jsonl --drop email",
    )
    sample.add_argument("stream", help="stream key, e.g. orders")
    sample.add_argument(
        "--output",
        required=True,
        metavar="FILE",
        help="a .jsonl or .parquet file, e.g. --output tests/samples/orders.jsonl",
    )
    sample.add_argument(
        "--count",
        type=int,
        default=1_000,
        metavar="N",
        help="latest entries, e.g. --count 500 (default: 1000)",
    )
    _envelope_option(sample, "where --drop and --pseudonymize find payload. paths")
    for name in ("drop", "pseudonymize"):
        sample.add_argument(
            f"--{name}",
            action="append",
            default=[],
            metavar="FIELD",
            help=f"as for export, e.g. --{name} email",
        )
    _key_option(sample)
    return parser


def _envelope_option(command: argparse.ArgumentParser, purpose: str = "") -> None:
    command.add_argument(
        "--envelope",
        metavar="FILE|PRESET",
        help="where the entries carry type, aggregate id, version, time and payload: a TOML "
        "file (see `auditkit inspect`) or a preset (default, flat, faststream, bullmq); "
        "e.g. --envelope flat or --envelope envelope.toml; default: auditkit.toml's envelope "
        "for the stream" + (f"; {purpose}" if purpose else ""),
    )


def _key_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--key-env",
        metavar="NAME",
        help="the environment variable holding the pseudonymisation key, e.g. "
        "--key-env AUDITKIT_KEY (never the key itself on the command line)",
    )


def _archive_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--archive",
        metavar="DIR|URL",
        help="the archive folder, or object storage such as s3://bucket/prefix (credentials "
        "and endpoint from the AWS_* environment variables), e.g. --archive archive/; "
        "default: auditkit.toml's archive",
    )


def _anchor_options(command: argparse.ArgumentParser, verb: str) -> None:
    """--since, --public-key, --witness: what was kept outside the archive, which it must
    still extend (`verb`: what the command does when it does not)."""
    command.add_argument(
        "--since",
        metavar="FILE|TEXT",
        help=f"a checkpoint kept earlier (its file, or its text): {verb} unless the archive "
        "still extends it, e.g. --since orders-2026-03-01.checkpoint",
    )
    _public_key_option(command)
    _witness_option(
        command, f"{verb} unless the archive extends the latest checkpoint this witness holds"
    )


def _anchor(args: argparse.Namespace) -> dict[str, Any]:
    """The --since/--public-key/--witness arguments of Archive.verify and trim, checked."""
    since = _checkpoint_text(args.since) if args.since else None
    if args.public_key and not (since or args.witness):
        raise UsageError("--public-key checks checkpoints: pass --since or --witness too.")
    return {"since": since, "public_key": args.public_key, "witness": args.witness}


def _public_key_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--public-key",
        metavar="PEM",
        help="the Ed25519 public key that must have signed the checkpoints (`openssl pkey "
        "-in signing.pem -pubout -out signing.pub.pem` makes it), e.g. --public-key "
        "signing.pub.pem",
    )


def _witness_option(command: argparse.ArgumentParser, purpose: str) -> None:
    command.add_argument(
        "--witness",
        metavar="URL|DIR",
        help="checkpoints kept apart from the archive: a Redis URL (stream "
        "auditkit:witness:<stream>) or a folder or object storage URL; "
        f"{purpose}; e.g. --witness redis://witness:6379/0 or --witness /mnt/worm/checkpoints",
    )


def _format_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table (default: fits the terminal, 100 columns when not one), json (one "
        "document of records) or csv, e.g. --format json",
    )


RedisUse = Literal["required", "demo", "offline", "live", "unused"]

_REDIS_URL_HELP = (
    "the Redis server, e.g. --redis-url redis://localhost:6379/0; default: $REDIS_URL, "
    "else redis_url in auditkit.toml"
)
_WITHOUT_URL: dict[str, str] = {
    "required": "; one of the three is required",
    "demo": "; with none, a throwaway embedded redis-server is started",
    "offline": "; one of the three is required unless --offline",
    "live": "; needed with --live only",
    "unused": "; not used by this command, which reads the archive only (accepted so one "
    "set of options serves every command)",
}


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    run: Callable[[argparse.Namespace], int],
    summary: str,
    description: str,
    *,
    redis: RedisUse = "required",
) -> argparse.ArgumentParser:
    command = sub.add_parser(name, help=summary, description=description)
    command.add_argument(
        "--redis-url",
        metavar="URL",
        default=None,
        help=_REDIS_URL_HELP + _WITHOUT_URL[redis],
    )
    command.add_argument(
        "--config",
        metavar="FILE",
        help="settings file, e.g. --config ci/auditkit.toml (default: auditkit.toml, or "
        "[tool.auditkit] in pyproject.toml, in this folder or the nearest above)",
    )
    command.set_defaults(run=run)
    return command


def _settings(args: argparse.Namespace) -> ak.Config:
    config: ak.Config | None = getattr(args, "_config", None)
    if config is None:
        try:
            config = ak.Config.load(args.config) if args.config else ak.Config.find()
        except FileNotFoundError:
            raise UsageError(f"--config `{args.config}` does not exist.") from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        args._config = config
    return config


def _client(args: argparse.Namespace, *, embedded: bool = False) -> redis.Redis | RedisCluster:
    if args.redis_url is not None:  # an empty --redis-url is a mistake, not "the default"
        url, source = args.redis_url, "--redis-url"
    elif os.environ.get("REDIS_URL"):
        url, source = os.environ["REDIS_URL"], "REDIS_URL"
    else:
        url, source = _settings(args).redis_url, "redis_url in auditkit.toml"
    if url is None and not embedded:
        # An embedded server starts empty: listing, exporting or verifying against it would
        # answer about nothing, and look like an answer.
        raise UsageError(
            f"`auditkit {args.command}` needs your Redis: pass --redis-url URL, set REDIS_URL, "
            "or set redis_url in auditkit.toml."
        )
    try:
        return ak.connect(url)
    except ak.ConnectionFailed as exc:
        if isinstance(exc.__cause__, ValueError):  # the URL itself, refused before connecting
            raise UsageError(f"{source} {exc}") from None
        raise


def _archive_root(args: argparse.Namespace) -> str:
    root = _given_archive(args)
    if root is None:
        raise UsageError(
            f"`auditkit {args.command}` needs an archive: pass --archive DIR|URL or set "
            "archive in auditkit.toml."
        )
    return root


def _given_archive(args: argparse.Namespace) -> str | None:
    """--archive, else auditkit.toml's archive, else None; a folder or an object store URL."""
    root: str
    if args.archive is not None:  # an empty --archive is a mistake, not "the default"
        root, source = args.archive, "--archive"
    elif (configured := _settings(args).archive) is not None:
        root, source = str(configured), "archive in auditkit.toml"
    else:
        return None
    if not root.strip():
        raise UsageError(
            f"{source} is empty (`{root}`): pass the archive folder, or object storage such "
            "as s3://bucket/prefix."
        )
    scheme = urlsplit(root).scheme
    if scheme in ("", "file") or len(scheme) == 1:  # a local path (`C:\...`: scheme `c`)
        path = Path(root.removeprefix("file://"))
        # The nearest part that exists must be a folder: export creates the rest.
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            inside = "" if existing == path else f" is inside `{existing}`, which"
            raise UsageError(
                f"{source} `{root}`{inside} is not a folder: pass a folder (export creates "
                "it when missing), or object storage such as s3://bucket/prefix."
            )
    return root


def _check_output(path: str | None, example: str) -> None:
    """--output names a file in a folder that exists; checked before the job runs."""
    if path is None:
        return
    target = Path(path)
    if not path or target.is_dir():
        raise UsageError(
            f"--output `{path}` is a folder, not a file: pass a file name such as "
            f"`{target / example}`."
        )
    if not target.parent.is_dir():
        raise UsageError(
            f"--output `{path}`: the folder `{target.parent}` does not exist. Create it, or "
            "pass a file in a folder that does."
        )


def _write_output(path: str, write: Callable[[str], object]) -> None:
    try:
        write(path)
    except OSError as exc:
        raise UsageError(f"--output `{path}` cannot be written ({exc.strerror or exc}).") from None


def _envelope(args: argparse.Namespace, stream: str | None) -> ak.Envelope | None:
    """--envelope, else the config's envelope for the stream, else None (the default, or
    for an archived stream the envelope it was archived with)."""
    if getattr(args, "envelope", None):
        try:
            return ak.Envelope.of(args.envelope)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--envelope: {exc}") from None
    config = _settings(args)
    if stream is not None and config.names_envelope(stream):
        try:
            return config.envelope_for(stream)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return None


def _run_demo(args: argparse.Namespace) -> int:
    from auditkit._demo import run_demo

    width = terminal_width()
    for part in run_demo(_client(args, embedded=True), reset=args.reset, report=args.report):
        if isinstance(part, str):
            print(wrap_text(part, width), flush=True)
        else:
            _print_frame(part, "table", width=width)
    return EXIT_OK


_STREAMS_TABLE = ("key", "length", "first_ts", "last_ts", "groups", "memory_bytes")


def _run_streams(args: argparse.Namespace) -> int:
    frame = ak.streams(_client(args), args.pattern)
    if args.format == "table":  # what a person reads; JSON and CSV keep every column
        frame = frame[list(_STREAMS_TABLE)].copy()
        for column in ("first_ts", "last_ts"):  # the ID holds the milliseconds
            frame[column] = frame[column].dt.floor("s")
    _print_frame(frame, args.format)
    return EXIT_OK


def _run_export(args: argparse.Namespace) -> int:
    if args.rows_per_file < 1:
        raise UsageError(
            f"--rows-per-file must be at least 1, got `{args.rows_per_file}`: it is how many "
            "entries each Parquet file holds (default: 50000)."
        )
    if args.bytes_per_file < 1:
        raise UsageError(
            f"--bytes-per-file must be at least 1, got `{args.bytes_per_file}`: it is about "
            "how many bytes of raw entries each Parquet file holds (default: 268435456)."
        )
    archive = _archive(
        args,
        rows_per_file=args.rows_per_file,
        bytes_per_file=args.bytes_per_file,
        envelope=_envelope(args, args.stream),
        drop=args.drop,
        pseudonymize=args.pseudonymize,
    )
    report = archive.export(_client(args), args.stream)
    print(
        f"{args.stream}: {_entries(report.rows)} in {report.files} new file(s); "
        f"archived up to {report.horizon}"
    )
    if report.lost:
        ledger = archive.losses(args.stream)
        open_ = ledger[~ledger["acknowledged"]].tail(len(report.losses))
        for loss, record in zip(report.losses, open_["record"], strict=False):
            where = (
                f"after {loss['after']}" if loss["after"] else "before this archive's first export"
            )
            print(
                f"auditkit: {args.stream}: {_entries(int(loss['count']))} left the stream "
                f"{where} and could not be archived; recorded as ledger record {record}. "
                f"Look into it, then `auditkit acknowledge {args.stream} {record} --reason "
                "TEXT`.",
                file=sys.stderr,
            )
        return EXIT_FINDINGS
    return EXIT_OK


def _archive(args: argparse.Namespace, **options: Any) -> ak.Archive:
    """The archive named by --archive (or auditkit.toml), with --key-env's key."""
    key = None
    if getattr(args, "key_env", None):
        key = os.environ.get(args.key_env)
        if not key:
            raise UsageError(
                f"--key-env `{args.key_env}`: that environment variable is not set or empty; "
                "export the key in it first."
            )
    try:
        return ak.Archive(_archive_root(args), key=key, **options)
    except ValueError as exc:
        raise UsageError(
            str(exc).replace("pseudonymize needs a key", "--pseudonymize needs --key-env")
        ) from None


def _run_verify(args: argparse.Namespace) -> int:
    anchor = _anchor(args)
    archive = _existing_archive(args, args.stream)
    client = None if args.offline else _client(args)
    with _as_usage():
        report = archive.verify(client, args.stream, **anchor)
    # The chain's head now, for the audit record: only of an archive that verified.
    checkpoints = [
        str(archive.checkpoint(stream))
        for stream, horizon in report.horizons.items()
        if report.ok and horizon is not None
    ]
    if args.format == "json":
        findings = json.loads(report.findings.to_json(orient="records", date_format="iso"))
        print(json.dumps({"ok": report.ok, "findings": findings, "checkpoints": checkpoints}))
    else:
        if args.format == "table":
            _print_findings(report.findings)
        else:
            _print_frame(report.findings, args.format)
        # CSV stays one table on stdout; the checkpoints go beside it.
        shown = sys.stdout if args.format == "table" else sys.stderr
        for text in checkpoints:
            print(f"\n{text}", end="", file=shown)
    if args.format == "table":
        state = "ok" if report.ok else "FAILED"
        print(f"verify: {state} ({len(report.findings)} finding(s))", file=sys.stderr)
    failing = _SEVERITIES[: _SEVERITIES.index(args.fail_on) + 1]
    return EXIT_FINDINGS if report.findings["severity"].isin(failing).any() else EXIT_OK


def _run_checkpoint(args: argparse.Namespace) -> int:
    archive = _existing_archive(args, args.stream)
    with _as_usage():
        checkpoint = archive.checkpoint(
            args.stream, signing_key=args.sign_key, witness=args.witness
        )
    text = str(checkpoint)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise UsageError(f"--output `{args.output}`: {exc.strerror}.") from None
    print(text, end="")
    return EXIT_OK


@contextlib.contextmanager
def _as_usage() -> Iterator[None]:
    """A library's ValueError or TypeError about its arguments is bad usage here."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ak.AuditKitError):
            raise
        raise UsageError(str(exc)) from None


def _checkpoint_text(value: str) -> str:
    """--since: a checkpoint's text, or the file holding it."""
    if "\n" in value or value.startswith("auditkit-checkpoint/"):
        return value
    try:
        with open(value, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise UsageError(
            f"--since `{value}` is neither a file nor a checkpoint's text; give the file "
            "`auditkit checkpoint --output` wrote."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--since `{value}` cannot be read: {exc}.") from None


def _run_trim(args: argparse.Namespace) -> int:
    anchor = _anchor(args)
    archive = _existing_archive(args, args.stream)
    client = _client(args)
    options = {
        "before": args.before,
        "allow_pending": args.allow_pending,
        "allow_undelivered": args.allow_undelivered,
        **anchor,
    }
    if args.dry_run:
        with _as_usage():
            print(archive.plan_trim(client, args.stream, **options))
        return EXIT_OK
    with _as_usage():
        removed = archive.trim(client, args.stream, **options)
    print(f"{args.stream}: trimmed {removed:,} archived entries")
    return EXIT_OK


def _reason(args: argparse.Namespace) -> str:
    if not args.reason.strip():
        raise UsageError(
            "--reason is empty: say why (who looked, what was found); it is kept in the "
            "archive for auditors."
        )
    return str(args.reason)


def _run_acknowledge(args: argparse.Namespace) -> int:
    _reason(args)
    archive = _existing_archive(args, args.stream)
    archive.acknowledge(args.stream, args.record, reason=args.reason)
    print(f"{args.stream}: the loss at ledger record {args.record} is acknowledged")
    return EXIT_OK


def _run_repair(args: argparse.Namespace) -> int:
    report = _archive(args).repair(args.stream, reason=_reason(args))
    left = f"; {len(report.left_out)} copies left out and removed" if report.left_out else ""
    print(
        f"{args.stream}: manifest rebuilt from {report.files} file(s), {report.rows:,} "
        f"entries{left}. Run `auditkit verify` next."
    )
    return EXIT_OK


def _run_audit(args: argparse.Namespace) -> int:
    writer = _findings_writer(args.output)
    _check_output(args.output, "findings.parquet")
    if args.write_baseline and not (args.reason or "").strip():
        raise UsageError("--write-baseline needs --reason TEXT: it is kept with each finding.")
    archive = _audit_archive(args)
    try:
        findings = ak.audit(
            _client(args),
            args.stream,
            envelope=_envelope(args, args.stream),
            archive=archive,
            terminal_types=args.terminal,
            idempotency_field=args.idempotency_field,
            version_field=args.version_field,
            select=_names(args.select),
            ignore=_names(args.ignore),
            thresholds=_thresholds(args.threshold),
            baseline=args.baseline,
        )
    except ValueError as exc:
        if isinstance(exc, ak.AuditKitError):
            raise
        # "select `x` names no check" -> "--select `x` ..."; baseline messages name the file.
        message = str(exc)
        option = message.partition(" ")[0]
        if option in ("select", "ignore", "threshold"):
            message = f"--{message}"
        raise UsageError(message) from None
    if args.write_baseline:
        path = ak.write_baseline(findings, args.write_baseline, reason=args.reason)
        print(f"audit: {len(findings):,} finding(s) accepted in {path}", file=sys.stderr)
        return EXIT_OK
    if args.output is not None and writer is not None:
        _write_output(args.output, lambda path: writer(findings, path))
    counted = findings.assign(findings=1)
    if args.format != "table":  # the findings alone, every one: a document for machines
        _print_frame(findings, args.format)
    else:
        # One stream audited: its key, maybe long, need not repeat on every row.
        one_stream = findings["stream"].dropna().nunique() <= 1
        _print_findings(findings.drop(columns="stream") if one_stream else findings)
        if len(findings):
            summary = counted.groupby(["severity", "check"])["findings"].sum().reset_index()
            print()
            _print_frame(summary, "table")
    # Severities are listed worst first: those up to --fail-on's fail, unless accepted.
    failing = _SEVERITIES[: _SEVERITIES.index(args.fail_on) + 1]
    open_ = ~counted["accepted"] if "accepted" in counted else True
    serious = int(counted.loc[counted["severity"].isin(failing) & open_, "findings"].sum())
    total = len(findings)
    accepted = (
        f" not accepted, {int(counted['accepted'].sum()):,} accepted"
        if "accepted" in counted
        else ""
    )
    print(
        f"audit: {total:,} finding(s), {serious:,} {args.fail_on} or worse{accepted}",
        file=sys.stderr,
    )
    return EXIT_FINDINGS if serious else EXIT_OK


_WRITERS: dict[str, Callable[[Any, str], object]] = {
    ".parquet": lambda frame, path: frame.to_parquet(path, index=False),
    ".csv": lambda frame, path: frame.to_csv(path, index=False),
    ".json": lambda frame, path: frame.to_json(path, orient="records", date_format="iso"),
    ".xlsx": lambda frame, path: frame.to_excel(path, index=False, sheet_name="findings"),
}


def _findings_writer(output: str | None) -> Callable[[Any, str], object] | None:
    """How --output writes the findings, by its extension; checked before the job runs."""
    if output is None:
        return None
    suffix = Path(output).suffix.lower()
    if suffix not in _WRITERS:
        raise UsageError(
            f"--output `{output}` must end in .parquet, .csv, .json or .xlsx, e.g. --output "
            "findings.parquet."
        )
    if suffix == ".xlsx":
        import importlib.util

        if importlib.util.find_spec("openpyxl") is None:
            raise UsageError(
                f"--output `{output}`: writing .xlsx needs openpyxl: pip install openpyxl "
                "(or write .csv, .json or .parquet)."
            )
    return _WRITERS[suffix]


_SEVERITIES = ("critical", "error", "warning", "info")


def _thresholds(given: list[str]) -> dict[str, int]:
    """--threshold NAME=VALUE options, values in whole numbers (durations in milliseconds)."""
    out = {}
    for item in given:
        name, _, value = item.partition("=")
        if not value.strip().isdigit():
            raise UsageError(f"--threshold `{item}` must be NAME=VALUE, a whole number.")
        out[name.strip()] = int(value)
    return out


def _names(value: str | None) -> list[str] | None:
    """A comma list given to --select or --ignore."""
    return None if value is None else [n.strip() for n in value.split(",") if n.strip()]


def _run_drift(args: argparse.Namespace) -> int:
    client = _client(args)
    plain = not set("*?[") & set(args.stream)
    source: Any = (client, args.stream)
    if args.archive is not None:
        if not plain:
            raise UsageError(
                f"--archive reads one stream's history, and `{args.stream}` is a pattern; "
                "name one stream."
            )
        # The stream's whole history: its archived events, then the live ones.
        source = _readable_archive(args, args.stream).events_table(stream=args.stream, live=client)
    elif plain:
        _trimmed_note(client, args.stream, False, "this drift reads")
    try:
        report = ak.schema_drift(
            source,
            window=args.window,
            registry=args.registry,
            envelope=_envelope(args, args.stream),
            clock="effective" if args.effective else "record",
        )
    except ValueError as exc:
        if isinstance(exc, ak.AuditKitError):
            raise
        raise UsageError(str(exc)) from None
    if args.write_registry:
        print(f"registry written to {report.write_registry(args.write_registry)}", file=sys.stderr)
    _print_frame(report.findings[["check", "severity", "detail"]], args.format)
    serious = (report.findings["severity"] != "info").sum()
    timeline = report.timeline
    # What was looked at, so "(none)" reads as "no drift in these events", not "nothing".
    print(
        f"drift: {len(report.findings)} finding(s), {serious} warning or worse, over "
        f"{int(timeline['events'].sum()):,} events of {timeline['event_type'].nunique()} "
        f"type(s) in {timeline['window'].nunique()} window(s) by "
        f"{'effective' if args.effective else 'record'} time",
        file=sys.stderr,
    )
    return EXIT_FINDINGS if serious else EXIT_OK


def _audit_archive(args: argparse.Namespace) -> ak.Archive | None:
    """--archive must hold the stream (a pattern: some stream); auditkit.toml's archive is
    left out, saying so, when it holds nothing yet (no export ran)."""
    if args.archive is not None:
        plain = not set("*?[") & set(args.stream)  # a glob pattern, as ak.audit reads it
        return _existing_archive(args, args.stream if plain else None)
    root = _given_archive(args)
    if root is None:
        return None
    archive = _archive(args)
    held = archive.streams()
    if not held and not archive.layout.orphans():
        print(
            f"auditkit: note: the archive `{root}` in auditkit.toml {_holds_nothing(root)}; "
            "auditing without it.",
            file=sys.stderr,
        )
        return None
    plain = not set("*?[") & set(args.stream)
    if plain and args.stream not in held and not archive.layout.stream_files(args.stream):
        print(
            f"auditkit: note: the archive `{root}` in auditkit.toml does not hold "
            f"`{args.stream}` (no export of it yet); auditing without it.",
            file=sys.stderr,
        )
        return None
    return archive


def _state_archive(args: argparse.Namespace) -> ak.Archive | None:
    """--archive must hold the stream; auditkit.toml's archive is used when it does."""
    if args.archive is None:
        return _archive(args) if _given_archive(args) is not None else None
    if _TEMPLATE in args.stream:
        raise UsageError(
            f"--archive reads one stream, and `{args.stream}` is a stream per aggregate; "
            "name the aggregate's stream key instead, e.g. "
            f"`{args.stream.replace(_TEMPLATE, args.aggregate_id)}`."
        )
    return _readable_archive(args, args.stream)


def _readable_archive(args: argparse.Namespace, stream: str) -> ak.Archive:
    """The archive named, holding `stream` with its manifest: its events are read."""
    archive = _existing_archive(args, stream)
    if stream not in archive.streams():  # files of it, no manifest: verify calls it damage
        raise ak.ArchiveDamaged(
            f"The archive `{_archive_root(args)}` has files of `{stream}` but no manifest (it "
            "was lost or deleted), so its events cannot be read as archived. Run `auditkit "
            f"verify`, then `auditkit repair {stream} --archive {_archive_root(args)} "
            "--reason TEXT`.",
            stream=stream,
        )
    return archive


def _trimmed_note(
    client: Any, stream: str, archived: bool, what: str = "this state replays"
) -> None:
    """Say so when the stream lost entries (Redis 7 counts them) and no archive holds them:
    the state is then of the live entries only."""
    if archived or _TEMPLATE in stream:
        return
    try:
        info = client.xinfo_stream(stream)
    except Exception:  # a server or key that cannot say: nothing to add
        return
    added = info.get("entries-added")
    if added is None or added <= info["length"]:
        return
    print(
        f"auditkit: note: `{stream}` lost {added - info['length']:,} entries to trimming or "
        f"deletion (Redis counts them); {what} its {info['length']:,} live entries only. "
        "Pass --archive DIR if an archive holds the others.",
        file=sys.stderr,
    )


def _run_state(args: argparse.Namespace) -> int:
    import pandas as pd

    clock: Literal["record", "effective"] = "effective" if args.effective else "record"
    projection = _projection(args)  # checked before anything is read
    # One read: the events up to --at in record time (all of them in effective time), from
    # which the aggregate's own are replayed twice, once to list them and once for values.
    archive = _state_archive(args)
    client = _client(args)
    began = ""
    # Read up to --at in record time, unless the archive's history is read (all of it).
    held = archive is not None and args.stream in archive.streams()
    table_cut = clock == "record" and not held
    try:
        table = _stream_events(
            client,
            args.stream,
            args.aggregate_id,
            end=args.at if clock == "record" else None,
            envelope=_envelope(args, args.stream),
            archive=archive if held else None,
        )
        every_event = ak.Projection(None, {"*": lambda state, event: state})
        events = every_event.history(
            table, args.aggregate_id, at=args.at, clock=clock, missing="initial"
        )
    except ak.InvalidStreamID as exc:  # --at is the one bound given here
        raise UsageError(f"--at {exc}") from None
    _trimmed_note(client, args.stream, held)
    if events.empty:
        hint = (
            ""
            if args.effective
            else (
                " If the events were recorded after they happened (a backfill), --effective asks "
                "by their occurred_at."
            )
        )
        close = ""
        later = None
        try:  # the ids the events read do hold that are most like it (`n81159`: `N81159`)
            later = every_event.history(table, args.aggregate_id, clock=clock)
        except ak.AggregateNotFound as exc:
            if exc.close_matches:
                close = " The closest ids: " + ", ".join(f"`{c}`" for c in exc.close_matches) + "."
            if args.at is not None and clock == "record" and table_cut:
                # The read stopped at --at: the aggregate may begin after it.
                with contextlib.suppress(ak.AggregateNotFound):
                    later = every_event.history(
                        _stream_events(
                            client,
                            args.stream,
                            args.aggregate_id,
                            end=None,
                            envelope=_envelope(args, args.stream),
                            archive=archive if held else None,
                        ),
                        args.aggregate_id,
                        clock=clock,
                    )
        if later is not None and not later.empty:
            # It began later: at --at its state is the initial one (as ak's state_at says).
            first = later.iloc[0]
            when = first.get("occurred_at") if clock == "effective" else first["ts"]
            began = (
                f"{args.aggregate_id}: no event up to {args.at} ({clock} time), so its state "
                f"then is the initial one; its first event is {first['id']} "
                f"({'occurred' if clock == 'effective' else 'recorded'} {when})"
            )
        else:
            raise UsageError(
                f"No event of aggregate `{args.aggregate_id}` in `{args.stream}` up to "
                f"{args.at or 'now'} ({clock} time).{close} Check the id and the stream (a "
                "template such as 'account:{aggregate_id}' reads one stream per aggregate)." + hint
            )
    if projection is None:  # none given: every payload field's last value, each type's count
        columns = [c for c in table.column_names if c.startswith(_PAYLOAD)]
        types = sorted(set(events["event_type"]) - {None})
        projection = ak.Projection.declarative(
            last={c[len(_PAYLOAD) :]: c for c in columns} or {"event_type": "event_type"},
            count={f"events.{t}": t for t in types},
        )
    try:
        with _as_usage():  # a projection that does not fit these events (a column, the ids)
            state = projection.state_at(
                table,
                args.aggregate_id,
                at=args.at,
                clock=clock,
                missing="initial" if events.empty else "raise",  # it began after --at
            )
    except ak.ProjectionError as exc:
        # --last/--count/--sum naming a column no event has, or summing text: the options'
        # fault. A module's handler that fails is the job failing (exit 3).
        if args.projection or isinstance(exc, ak.HandlerFailed):
            raise
        raise UsageError(str(exc)) from None
    fields = state if isinstance(state, dict) else {"state": state}
    # JSON and CSV keep each value's own type (a number, null); the table shows text.
    values = list(fields.values())
    shown = values if args.format != "table" else [_state_text(v) for v in values]
    frame = pd.DataFrame({"field": list(fields), "value": pd.Series(shown, dtype=object)})
    _print_frame(frame, args.format)
    if events.empty:
        print(began, file=sys.stderr)
    elif args.format == "table":
        last = events.iloc[-1]
        # The time the clock orders by: when recorded, or (effective) when it occurred.
        when = last.get("occurred_at") if clock == "effective" else last["ts"]
        print(
            f"{args.aggregate_id}: {len(events)} events, the last {last['id']} "
            f"({'occurred' if clock == 'effective' else 'recorded'} {when}), {clock} time",
            file=sys.stderr,
        )
    return EXIT_OK


def _state_text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def _projection(args: argparse.Namespace) -> ak.Projection | None:
    """--projection MODULE:OBJECT, or the projection --last, --count and --sum describe."""
    described = args.last or args.count or args.sum
    if args.projection and described:
        raise UsageError(
            "--projection and --last/--count/--sum both describe the state: give one or the other."
        )
    if args.projection:
        return _imported_projection(args.projection)
    if not described:
        return None
    last = dict(
        _pair(value, "--last", "=", "FIELD=COLUMN", "owner=payload.owner") for value in args.last
    )
    count: dict[str, list[str]] = {}
    for value in args.count:
        field, types = _pair(value, "--count", "=", "FIELD=TYPE[,TYPE]", "deposits=Deposited")
        count.setdefault(field, []).extend(t.strip() for t in types.split(",") if t.strip())
    sums: dict[str, dict[str, str]] = {}
    for value in args.sum:
        example = "balance=Deposited:payload.amount"
        field, typed = _pair(value, "--sum", "=", "FIELD=TYPE:COLUMN", example)
        # The type ends at the first colon: columns such as `case:concept:name` keep theirs.
        event_type, column = _pair(typed, "--sum", ":", "FIELD=TYPE:COLUMN", example, given=value)
        sums.setdefault(field, {})[event_type] = column
    with _as_usage():
        return ak.Projection.declarative(
            last=last or None,
            count={f: "*" if "*" in types else types for f, types in count.items()} or None,
            sum=sums or None,
        )


def _pair(
    value: str, option: str, separator: str, form: str, example: str, *, given: str = ""
) -> tuple[str, str]:
    """`value` split at the first `separator`, both sides non-empty; `given` is the whole."""
    head, found, tail = value.partition(separator)
    if not found or not head.strip() or not tail.strip():
        raise UsageError(f"{option} `{given or value}` is not {form}; e.g. {option} {example}.")
    return head.strip(), tail.strip()


def _imported_projection(spec: str) -> ak.Projection:
    """The Projection `module:object` names, imported from this folder or PYTHONPATH."""
    import importlib

    module_name, found, attribute = spec.partition(":")
    if not found or not module_name or not attribute:
        raise UsageError(
            f"--projection `{spec}` is not MODULE:OBJECT; e.g. --projection "
            "projections:accounts for the object `accounts` in projections.py."
        )
    if os.getcwd() not in sys.path and "" not in sys.path:  # as `python -m` would
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(
                f"--projection `{spec}`: no module `{module_name}` in this folder or on "
                "PYTHONPATH; run from the folder holding it, or add that folder to PYTHONPATH."
            ) from None
        raise UsageError(
            f"--projection `{spec}`: importing `{module_name}` failed: {exc}."
        ) from None
    except Exception as exc:  # the user's module raised while loading: say where
        raise UsageError(
            f"--projection `{spec}`: importing `{module_name}` failed: {type(exc).__name__}: {exc}"
        ) from None
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise UsageError(f"--projection `{spec}`: `{module_name}` has no `{attribute}`.")
        value = getattr(value, part)
    if not isinstance(value, ak.Projection):
        raise UsageError(
            f"--projection `{spec}` is a {type(value).__name__}, not an auditkit Projection; "
            "name an object made with ak.Projection(...) or ak.Projection.declarative(...)."
        )
    return value


_SHOWN_PER_CHECK = 50
"""Findings of one check the terminal table shows; the machine formats hold every one."""


def _print_findings(findings: Any) -> None:
    """Findings as a terminal table, at most 50 per check, saying how many more there are."""
    shown = findings.groupby("check", sort=False).head(_SHOWN_PER_CHECK)
    _print_frame(shown, "table")
    if len(shown) < len(findings):
        held = findings["check"].value_counts()
        for check, n in held[held > _SHOWN_PER_CHECK].items():
            print(
                f"... and {n - _SHOWN_PER_CHECK:,} more `{check}` findings ({n:,} in all): "
                "--format csv or json lists every one"
            )


_PAYLOAD = "payload."
"""The prefix of the payload's columns (docs/load.md)."""
_TEMPLATE = "{aggregate_id}"


def _stream_events(
    client: redis.Redis | RedisCluster,
    stream: str,
    aggregate_id: str,
    *,
    end: str | None,
    envelope: ak.Envelope | None,
    archive: ak.Archive | None = None,
) -> pa.Table:
    """The events `auditkit state` replays: of a stream, or of one aggregate's own stream;
    with `archive` (one that holds the stream), its history: archive, then live entries."""
    import pyarrow as pa

    streams: str | list[str] = stream
    if _TEMPLATE in stream:
        head, _, tail = stream.partition(_TEMPLATE)
        envelope = (envelope or ak.Envelope()).replace(
            aggregate_id_from_key=f"^{re.escape(head)}(?P<id>.+){re.escape(tail)}$"
        )
        key = stream.replace(_TEMPLATE, aggregate_id)
        if not client.exists(key):
            return pa.table({"aggregate_id": pa.array([], pa.string())})
        streams = [key]
    if archive is not None and isinstance(streams, str):  # an archive holding the stream
        # The archived events, then the live ones after the archive's end, with its
        # envelope and privacy rules (pseudonymised like the files); the replay cuts at --at.
        return archive.events_table(stream=streams, live=client)
    table = ak.read_arrow(client, streams, end=end, envelope=envelope, keep_payload=True)
    # The payload's text stays only where a field had values of several types (the
    # `auditkit.mixed_types` mark, docs/archive-format.md): there replay needs each payload
    # as written; elsewhere the typed columns are exact.
    mixed = any(
        f.metadata and b"auditkit.mixed_types" in f.metadata
        for f in table.schema
        if f.name.startswith(_PAYLOAD)
    )
    return (
        table if mixed or "payload" not in table.column_names else table.drop_columns(["payload"])
    )


def _run_query(args: argparse.Namespace) -> int:
    import duckdb

    root = _archive_root(args)
    archive = _archive(args, envelope=_envelope(args, None))
    for folder in archive.layout.orphans():
        print(
            f"auditkit: warning: `{folder}` holds archived files but no manifest: its events "
            "are not in this query. Run `auditkit verify`, then `auditkit repair`.",
            file=sys.stderr,
        )
    if not archive.streams():  # --live adds the tails of the streams it holds: none
        raise ArchiveMissing(
            f"The archive `{root}` {_holds_nothing(root)}: check --archive, or run `auditkit "
            "export` first (query reads the archived streams, with --live their live tails)."
        )
    connection = archive.duckdb(live=_client(args) if args.live else None)
    try:
        frame = connection.execute(args.sql).df()
    except (duckdb.ProgrammingError, duckdb.DataError, duckdb.NotSupportedError) as exc:
        # Syntax, an unknown table or column, a cast or value the SQL asks for that cannot
        # be: the query's fault. (Reading the files failing is not: exit 3 below.) DuckDB's
        # message goes on with the query's line and a caret under the fault.
        reason = " ".join(str(exc).split("\n\n")[0].split())
        raise UsageError(
            f"DuckDB refused the query ({reason}). Check the SQL: the events are in the view "
            "`events`."
        ) from None
    except duckdb.Error as exc:
        raise ak.AuditKitError(f"DuckDB refused the query: {exc}") from exc
    _print_frame(frame, args.format)
    return EXIT_OK


def _run_restore(args: argparse.Namespace) -> int:
    archive = _existing_archive(args, args.stream)
    target = args.to or args.stream
    archived = sum(entry.rows for entry in archive.entries(args.stream))
    written = archive.restore(_client(args), args.stream, target)
    print(
        f"{args.stream}: restored {written:,} archived entries into `{target}` "
        f"({archived - written:,} of {archived:,} were there already)"
    )
    return EXIT_OK


class ArchiveMissing(UsageError):
    """The archive named holds nothing: an answer from it would be about nothing."""


def _holds_nothing(root: str) -> str:
    local = "://" not in root and not Path(root).exists()
    return "does not exist" if local else "holds no stream (no manifest under it)"


def _existing_archive(args: argparse.Namespace, stream: str | None) -> ak.Archive:
    root = _archive_root(args)
    archive = _archive(args)
    held = archive.streams()
    if (stream is None and archive.layout.orphans()) or (
        stream is not None and stream not in held and archive.layout.stream_files(stream)
    ):
        return archive  # files whose manifest was lost: verify says so, as damage (exit 1)
    old = archive.layout.format1_manifests()
    if old and (stream is None or stream not in held):
        raise ArchiveMissing(
            f"The archive `{root}` was written by an earlier auditkit (format 1, such as "
            f"`{old[0]}`): run `auditkit repair STREAM --archive {root} --reason TEXT` for "
            "each stream to upgrade it."
        )
    if not held:
        raise ArchiveMissing(
            f"The archive `{root}` {_holds_nothing(root)}: check --archive, or run "
            "`auditkit export` first."
        )
    if stream is not None and stream not in held:
        shown = ", ".join(f"`{s}`" for s in held[:10])
        raise ArchiveMissing(
            f"The archive `{root}` does not hold stream `{stream}`; it holds {shown}. Check "
            "the stream's name and --archive."
        )
    return archive


def _run_inspect(args: argparse.Namespace) -> int:
    if args.sample < 3:
        raise UsageError(f"--sample must be at least 3, got `{args.sample}`.")
    _check_output(args.output, "envelope.toml")
    found = ak.inspect(_client(args), args.stream, sample=args.sample)
    if args.output is not None:
        _write_output(args.output, lambda path: Path(path).write_text(found.toml(), "utf-8"))
    if args.format == "csv":  # the rows: one per field
        _print_frame(found.fields, "csv")
    elif args.format == "json":
        fields = json.loads(found.fields.to_json(orient="records", default_handler=str))
        document = {
            "stream": found.stream,
            "length": found.length,
            "sampled": found.sampled,
            "fields": fields,
            "format": found.format,
            "matches": found.matches,
            "envelope": found.toml(),
        }
        print(json.dumps(document, ensure_ascii=False))
    else:
        width = terminal_width()
        print(wrap_text(str(found), width))
        if args.output is not None:
            print(f"\nThe envelope is in {args.output}: pass --envelope {args.output}.")
        else:
            print("\n" + wrap_text(found.toml(), width, toml=True), end="")
    return EXIT_OK


def _run_report(args: argparse.Namespace) -> int:
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise UsageError(f"--output `{args.output}` is a file: pass a folder for the report.")
    # An archive that holds nothing would leave its part of the report silently empty.
    archive = _existing_archive(args, None) if _given_archive(args) else None
    one = args.stream[0] if len(args.stream) == 1 else None
    try:
        result = ak.report(
            _client(args),
            args.stream,
            output=args.output,
            archive=archive,
            envelope=_envelope(args, one),
        )
    except OSError as exc:
        raise UsageError(f"--output `{args.output}` cannot be written ({exc}).") from None
    counts = result.findings["severity"].value_counts()
    summary = ", ".join(f"{int(n):,} {severity}" for severity, n in counts.items())
    print(result.html)
    print(
        f"report: {result.verdict}, {len(result.findings):,} finding(s) ({summary})",
        file=sys.stderr,
    )
    return EXIT_OK if result.ok else EXIT_FINDINGS


def _run_sample(args: argparse.Namespace) -> int:
    from auditkit.testing import write_sample

    if args.count < 1:
        raise UsageError(f"--count must be at least 1, got `{args.count}`.")
    if not args.output.endswith((".jsonl", ".parquet")):
        raise UsageError(f"--output `{args.output}` must end in .jsonl or .parquet.")
    _check_output(args.output, "sample.jsonl")
    key = os.environ.get(args.key_env) if args.key_env else None
    if args.key_env and not key:
        raise UsageError(f"--key-env `{args.key_env}`: that environment variable is not set.")
    try:
        sample = write_sample(
            _client(args), args.stream, args.output, count=args.count,
            envelope=_envelope(args, args.stream), drop=args.drop,
            pseudonymize=args.pseudonymize, key=key,
        )  # fmt: skip
    except ValueError as exc:
        if isinstance(exc, ak.AuditKitError):
            raise
        raise UsageError(
            str(exc).replace("pseudonymize needs a key", "--pseudonymize needs --key-env")
        ) from None
    for note in sample.notes:
        print(f"auditkit: note: {note}", file=sys.stderr)
    print(
        f"{args.stream}: {_entries(len(sample.entries))}, {len(sample.groups)} group(s), "
        f"{len(sample.pending):,} pending written to {args.output}"
    )
    return EXIT_OK
