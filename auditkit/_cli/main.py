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
from typing import Any, Literal
from urllib.parse import urlsplit

import duckdb
import pandas as pd
import pyarrow as pa
import redis
from redis.cluster import RedisCluster

import auditkit as ak
from auditkit._demo import run_demo

__all__ = ["main"]

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3

SHOWN = "auditkit.shown"
"""The error handler auditkit registers: a key's byte that is not UTF-8 written `\\xNN`."""


class UsageError(ak.AuditKitError, ValueError):
    """The command line asks for something that cannot work as given."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    for out in (sys.stdout, sys.stderr):
        # A key that is not UTF-8 (a str with surrogate escapes) is written `\\xNN`.
        if isinstance(out, io.TextIOWrapper):
            out.reconfigure(errors=SHOWN)
    parser = _parser()
    args = parser.parse_args(argv)
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
        print(f"auditkit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ak.AuditKitError as exc:
        print(f"auditkit: error: {_cli_words(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("auditkit: interrupted", file=sys.stderr)
        return 130


# The library names its own keyword arguments as next steps; here they are options.
_CLI_WORDS = (
    ("pass allow_pending=True (--allow-pending)", "pass --allow-pending"),
    ("pass allow_undelivered=True (--allow-undelivered)", "pass --allow-undelivered"),
    ("trim with before= below its position", "trim with --before below its position"),
    ("trim only below them with before=", "trim only below them with --before"),
    (" (Archive.acknowledge)", ""),
    ("see Archive.losses (on the command line, `auditkit verify`)", "see `auditkit verify`"),
    (
        "(Archive(..., key=...); on the command line --key-env NAME, the environment "
        "variable holding it)",
        "(--key-env NAME, the environment variable holding it)",
    ),
    ("run verify() for", "run `auditkit verify` for"),
)


def _cli_words(message: str) -> str:
    for library, cli in _CLI_WORDS:
        message = message.replace(library, cli)
    return message


def _entries(n: int) -> str:
    return f"{n:,} {'entry' if n == 1 else 'entries'}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auditkit",
        description="Audit, time-travel and archive event streams stored in Redis Streams.",
        epilog="Exit codes: 0 done, 1 findings, 2 bad usage, 3 could not run.",
    )
    parser.add_argument("--version", action="version", version=f"auditkit {ak.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = _command(
        sub,
        "demo",
        _run_demo,
        "Seed the demo data set and summarise it.",
        "Starts an embedded Redis (or uses --redis-url / $REDIS_URL), writes the demo "
        "streams (idempotent), and prints what they hold.",
    )
    demo.add_argument("--reset", action="store_true", help="delete and rewrite the demo streams")
    demo.add_argument(
        "--report",
        default="auditkit-report",
        metavar="DIR",
        help="folder for the HTML report (default: auditkit-report)",
    )
    listing = _command(
        sub,
        "streams",
        _run_streams,
        "List streams: length, first/last ID and time, groups, memory.",
        "One row per stream matching PATTERN (SCAN ... TYPE stream), with Redis 7's "
        "entries-added and max-deleted-entry-id counters where the server has them.",
    )
    listing.add_argument("pattern", nargs="?", default="*", help="glob pattern (default: *)")
    _format_option(listing)

    export = _command(
        sub,
        "export",
        _run_export,
        "Archive a stream's new entries to Parquet.",
        "Incremental, idempotent and crash-safe: writes the entries after the last archived "
        "one, up to the stream's current end (see docs/archive.md).",
    )
    export.add_argument("stream", help="stream key")
    _archive_option(export)
    _envelope_option(export)
    export.add_argument(
        "--rows-per-file",
        type=int,
        default=50_000,
        metavar="N",
        help="at most N entries per Parquet file (default: 50000)",
    )
    export.add_argument(
        "--bytes-per-file",
        type=int,
        default=256 << 20,
        metavar="BYTES",
        help="at most about BYTES of raw entries per file (default: 268435456, 256 MiB)",
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
    )
    verify.add_argument("stream", nargs="?", help="stream key (default: every archived stream)")
    _archive_option(verify)
    verify.add_argument("--offline", action="store_true", help="check the files only, no Redis")
    verify.add_argument(
        "--since",
        metavar="FILE|TEXT",
        help="a checkpoint kept earlier (its file, or its text): fail unless the archive "
        "still extends it, e.g. --since orders-2026-03-01.checkpoint",
    )
    _public_key_option(verify)
    _witness_option(
        verify,
        "fail unless the archive extends the latest checkpoint this witness holds",
    )
    _key_option(verify)
    _format_option(verify)

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
    )
    checkpoint.add_argument("stream", help="stream key")
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
        "undelivered entries below the cut, or on a replica.",
    )
    trim.add_argument("stream", help="stream key")
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
    _key_option(trim)

    acknowledge = _command(
        sub,
        "acknowledge",
        _run_acknowledge,
        "Acknowledge a loss recorded in the archive's ledger, with a reason.",
        "Losses (entries that left the stream before they could be archived) fail verify and "
        "block trim until acknowledged. RECORD is the ledger record verify names. Example: "
        "auditkit acknowledge orders 7 --reason 'MAXLEN cap in the producer until v1.2'",
    )
    acknowledge.add_argument("stream", help="stream key")
    acknowledge.add_argument(
        "record", type=int, help="the loss's ledger record, as verify names it"
    )
    acknowledge.add_argument(
        "--reason",
        required=True,
        metavar="TEXT",
        help="why the loss is accepted (kept for auditors)",
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
    )
    repair.add_argument("stream", help="stream key")
    repair.add_argument(
        "--reason", required=True, metavar="TEXT", help="why it is rebuilt (kept for auditors)"
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
    )
    query.add_argument("sql", help="a DuckDB query over the view `events`")
    audit_command = _command(
        sub,
        "audit",
        _run_audit,
        "Audit a stream: integrity, consumer groups, durability (exit 1 on findings).",
        "Prints a summary per check and severity; --output writes every finding to Parquet "
        "or CSV. Exit 1 when a finding is a warning or worse, 0 when there are none or only "
        "informational ones.",
    )
    audit_command.add_argument("stream", help="stream key or glob pattern")
    _envelope_option(audit_command)
    drift_command = _command(
        sub,
        "drift",
        _run_drift,
        "Schema drift of a stream's payloads over time (exit 1 on warnings).",
        "Per event type, schema version and window: versions seen, fields appearing, "
        "disappearing or changing type, with or without a version bump (docs/drift.md).",
    )
    drift_command.add_argument("stream", help="stream key or glob pattern")
    _envelope_option(drift_command)
    drift_command.add_argument(
        "--window",
        default="month",
        metavar="WINDOW",
        help="hour, day, week, month, or a pandas offset such as 15min, 6h, 2D (default: month)",
    )
    drift_command.add_argument(
        "--effective",
        action="store_true",
        help="windows by occurred_at (effective time), not by record time",
    )
    drift_command.add_argument("--registry", metavar="DIR", help="declared JSON Schemas to check")
    drift_command.add_argument(
        "--write-registry",
        metavar="DIR",
        help="write the observed schemas as a registry to start from",
    )
    _format_option(drift_command)
    state = _command(
        sub,
        "state",
        _run_state,
        "One aggregate as of a moment: its events and the last value of each field.",
        "Replays the aggregate's events up to --at (a stream ID or time; record time unless "
        "--effective) and prints the last value of every field and the count per event type.",
    )
    state.add_argument("stream", help="stream key, or a template such as 'account:{aggregate_id}'")
    state.add_argument("aggregate_id")
    _envelope_option(state)
    state.add_argument(
        "--archive",
        metavar="DIR|URL",
        help="an archive holding the stream's older (perhaps trimmed) events; default: "
        "auditkit.toml's archive",
    )
    state.add_argument("--at", help="a stream ID or an ISO-8601 time (default: now)")
    state.add_argument("--effective", action="store_true", help="use occurred_at, not record time")
    _format_option(state)
    audit_command.add_argument("--output", metavar="PATH", help="write findings (.parquet or .csv)")
    audit_command.add_argument(
        "--terminal",
        action="append",
        default=[],
        metavar="TYPE",
        help="an event type that ends an aggregate (repeatable)",
    )
    audit_command.add_argument("--idempotency-field", metavar="COLUMN")
    audit_command.add_argument("--version-field", metavar="COLUMN")
    audit_command.add_argument("--archive", metavar="DIR|URL", help="an archive holding the stream")
    _archive_option(query)
    query.add_argument("--live", action="store_true", help="add the live tail from Redis")
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
        "concept fills. Pass the TOML to other commands with --envelope FILE.",
    )
    inspect_command.add_argument("stream", help="stream key")
    inspect_command.add_argument(
        "--sample", type=int, default=300, metavar="N", help="entries to look at (default: 300)"
    )
    inspect_command.add_argument(
        "--output", metavar="FILE", help="write the proposed envelope's TOML alone to FILE"
    )
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
    sample.add_argument("stream", help="stream key")
    sample.add_argument("--output", required=True, metavar="FILE", help=".jsonl or .parquet")
    sample.add_argument(
        "--count", type=int, default=1_000, metavar="N", help="latest entries (default: 1000)"
    )
    _envelope_option(sample, "where --drop and --pseudonymize find payload. paths")
    for name in ("drop", "pseudonymize"):
        sample.add_argument(
            f"--{name}", action="append", default=[], metavar="FIELD", help="as for export"
        )
    _key_option(sample)
    return parser


def _envelope_option(command: argparse.ArgumentParser, purpose: str = "") -> None:
    command.add_argument(
        "--envelope",
        metavar="FILE|PRESET",
        help="where the entries carry type, aggregate id, version, time and payload: a TOML "
        "file (see `auditkit inspect`) or a preset (default, flat, faststream, bullmq); "
        "default: auditkit.toml's envelope for the stream" + (f"; {purpose}" if purpose else ""),
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
        "and endpoint from the AWS_* environment variables); default: auditkit.toml's archive",
    )


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
        choices=("table", "json", "csv"),
        default="table",
        help="output: an aligned table (default), JSON records, or CSV",
    )


def _print_frame(frame: pd.DataFrame, output_format: str) -> None:
    if output_format == "json":
        # JSON text is UTF-8: a key that is not is written as shown (`\\xNN`), as elsewhere.
        for column in [c for c in frame.columns if pd.api.types.is_object_dtype(frame[c])]:
            frame[column] = frame[column].map(_shown)
        print(frame.to_json(orient="records", date_format="iso"))
    elif output_format == "csv":
        print(frame.to_csv(index=False), end="")
    elif frame.empty:
        print("(none)")
    else:
        print(frame.to_string(index=False))


def _shown(value: Any) -> Any:
    return value.encode("utf-8", SHOWN).decode() if isinstance(value, str) else value


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    run: Callable[[argparse.Namespace], int],
    summary: str,
    description: str,
) -> argparse.ArgumentParser:
    command = sub.add_parser(name, help=summary, description=description)
    command.add_argument(
        "--redis-url",
        metavar="URL",
        default=None,
        help="Redis to use (default: $REDIS_URL, else auditkit.toml's redis_url)",
    )
    command.add_argument(
        "--config",
        metavar="FILE",
        help="settings file (default: auditkit.toml, or [tool.auditkit] in pyproject.toml, "
        "in this folder or the nearest above)",
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
    for line in run_demo(_client(args, embedded=True), reset=args.reset, report=args.report):
        print(line, flush=True)
    return EXIT_OK


def _run_streams(args: argparse.Namespace) -> int:
    _print_frame(ak.streams(_client(args), args.pattern), args.format)
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
        for loss in report.losses:
            where = f"after {loss['after']}" if loss["after"] else "before the archive began"
            print(
                f"auditkit: {args.stream}: {_entries(int(loss['count']))} left the stream "
                f"{where} before they could be archived; recorded in the archive's ledger. "
                "Run `auditkit verify` for the record, then `auditkit acknowledge` once "
                "understood.",
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
    since = _checkpoint_text(args.since) if args.since else None
    archive = _existing_archive(args, args.stream)
    client = None if args.offline else _client(args)
    if args.public_key and not (since or args.witness):
        raise UsageError("--public-key checks checkpoints: pass --since or --witness too.")
    with _as_usage():
        report = archive.verify(
            client,
            args.stream,
            since=since,
            public_key=args.public_key,
            witness=args.witness,
        )
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
        _print_frame(report.findings, args.format)
        # CSV stays one table on stdout; the checkpoints go beside it.
        shown = sys.stdout if args.format == "table" else sys.stderr
        for text in checkpoints:
            print(f"\n{text}", end="", file=shown)
    if args.format == "table":
        state = "ok" if report.ok else "FAILED"
        print(f"verify: {state} ({len(report.findings)} finding(s))", file=sys.stderr)
    return EXIT_OK if report.ok else EXIT_FINDINGS


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
    archive = _existing_archive(args, args.stream)
    client = _client(args)
    options = {
        "before": args.before,
        "allow_pending": args.allow_pending,
        "allow_undelivered": args.allow_undelivered,
    }
    if args.dry_run:
        print(archive.plan_trim(client, args.stream, **options))
        return EXIT_OK
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
    if args.output is not None and not args.output.endswith((".csv", ".parquet")):
        raise UsageError(f"--output `{args.output}` must end in .parquet or .csv.")
    _check_output(args.output, "findings.parquet")
    root = _given_archive(args)
    archive = ak.Archive(root) if root else None
    findings = ak.audit(
        _client(args),
        args.stream,
        envelope=_envelope(args, args.stream),
        archive=archive,
        terminal_types=args.terminal,
        idempotency_field=args.idempotency_field,
        version_field=args.version_field,
    )
    if args.output is not None:
        if args.output.endswith(".csv"):
            _write_output(args.output, lambda path: findings.to_csv(path, index=False))
        else:
            _write_output(args.output, lambda path: findings.to_parquet(path, index=False))
    # A check lists its first findings one by one and the rest in one row ("... and N
    # more"): the summary counts what each check found, not the rows it wrote.
    counted = findings.assign(
        findings=findings["detail"]
        .str.extract(_MORE, expand=False)
        .str.replace(",", "")
        .astype("float")
        .fillna(1)
        .astype("int64")
    )
    summary = (
        counted.groupby(["severity", "check"])["findings"].sum().reset_index()
        if len(findings)
        else findings
    )
    _print_frame(summary, "table")
    # Every severity but `info` is a warning or worse.
    serious = int(counted.loc[counted["severity"] != "info", "findings"].sum())
    total = int(counted["findings"].sum())
    print(f"audit: {total:,} finding(s), {serious:,} warning or worse", file=sys.stderr)
    return EXIT_FINDINGS if serious else EXIT_OK


def _run_drift(args: argparse.Namespace) -> int:
    try:
        report = ak.schema_drift(
            (_client(args), args.stream),
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


def _run_state(args: argparse.Namespace) -> int:
    clock: Literal["record", "effective"] = "effective" if args.effective else "record"
    # One read: the events up to --at in record time (all of them in effective time), from
    # which the aggregate's own are replayed twice, once to list them and once for values.
    archive = _given_archive(args)
    try:
        table = _stream_events(
            _client(args),
            args.stream,
            args.aggregate_id,
            end=args.at if clock == "record" else None,
            envelope=_envelope(args, args.stream),
            archive=archive,
        )
        events = _EVERY_EVENT.history(
            table, args.aggregate_id, at=args.at, clock=clock, missing="initial"
        )
    except ak.InvalidStreamID as exc:  # --at is the one bound given here
        raise UsageError(f"--at {exc}") from None
    if events.empty:
        hint = (
            ""
            if args.effective
            else (
                " If the events were recorded after they happened (a backfill), --effective asks "
                "by their occurred_at."
            )
        )
        raise UsageError(
            f"No event of aggregate `{args.aggregate_id}` in `{args.stream}` up to "
            f"{args.at or 'now'} ({clock} time). Check the id and the stream (a template such "
            "as 'account:{aggregate_id}' reads one stream per aggregate)." + hint
        )
    columns = [c for c in table.column_names if c.startswith(_PAYLOAD)]
    types = sorted(set(events["event_type"]) - {None})
    last_values = ak.Projection.declarative(
        last={c[len(_PAYLOAD) :]: c for c in columns} or {"event_type": "event_type"},
        count={f"events.{t}": t for t in types},
    )
    state = last_values.state_at(table, args.aggregate_id, at=args.at, clock=clock)
    # JSON and CSV keep each value's own type (a number, null); the table shows text.
    shown = list(state.values()) if args.format != "table" else [str(v) for v in state.values()]
    frame = pd.DataFrame({"field": list(state), "value": pd.Series(shown, dtype=object)})
    _print_frame(frame, args.format)
    if args.format == "table":
        last = events.iloc[-1]
        print(
            f"{args.aggregate_id}: {len(events)} events, the last {last['id']} "
            f"({last['ts']}), {clock} time",
            file=sys.stderr,
        )
    return EXIT_OK


_MORE = r"^\.\.\. and ([\d,]+) more "
"""The row a check writes for the findings beyond those it lists one by one."""
_PAYLOAD = "payload."
"""The prefix of the payload's columns (docs/load.md)."""
_TEMPLATE = "{aggregate_id}"
_EVERY_EVENT = ak.Projection(None, {"*": lambda state, event: state})


def _stream_events(
    client: redis.Redis | RedisCluster,
    stream: str,
    aggregate_id: str,
    *,
    end: str | None,
    envelope: ak.Envelope | None,
    archive: str | None = None,
) -> pa.Table:
    """The events `auditkit state` replays: of a stream, or of one aggregate's own stream;
    from the archive, when it holds the stream, and the live entries after it."""
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
    held = ak.Archive(archive) if archive and isinstance(streams, str) else None
    if held is not None and streams in held.streams():
        horizon = held.horizon(streams)
        archived = held.events_table(stream=streams)
        try:  # the replay cuts at --at; the live entries are those after the archive's end
            tail = ak.read_arrow(
                client,
                streams,
                start=horizon.next() if horizon else None,
                envelope=envelope or held.envelope_of(streams),
            )
        except ak.StreamNotFound:
            return archived  # deleted since: its history is all in the archive
        return ak.unify_tables([archived, tail])
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
    root = _archive_root(args)
    archive = _archive(args, envelope=_envelope(args, None))
    for folder in archive.layout.orphans():
        print(
            f"auditkit: warning: `{folder}` holds archived files but no manifest: its events "
            "are not in this query. Run `auditkit verify`, then `auditkit repair`.",
            file=sys.stderr,
        )
    if not args.live and not archive.streams():
        raise ArchiveMissing(
            f"The archive `{root}` {_holds_nothing(root)}: check --archive (or pass --live to "
            "query the live streams only)."
        )
    connection = archive.duckdb(live=_client(args) if args.live else None)
    try:
        frame = connection.execute(args.sql).df()
    except duckdb.ProgrammingError as exc:  # syntax, unknown table or column: the SQL's
        # DuckDB's message goes on with the query's line and a caret under the fault.
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
    print(found)
    if args.output is not None:
        _write_output(args.output, lambda path: Path(path).write_text(found.toml(), "utf-8"))
        print(f"\nThe envelope is in {args.output}: pass --envelope {args.output}.")
    else:
        print("\n" + found.toml(), end="")
    return EXIT_OK


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
    print(
        f"{args.stream}: {_entries(len(sample.entries))}, {len(sample.groups)} group(s), "
        f"{len(sample.pending):,} pending written to {args.output}"
    )
    return EXIT_OK
