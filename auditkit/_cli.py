"""The `auditkit` command: the library's jobs for cron, CI and a terminal.

Exit codes: 0 done, 1 the job found something (findings, a failed verification),
2 bad usage or input, 3 the job could not run (Redis unreachable, permission denied, ...).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import pandas as pd
import redis

import auditkit
from auditkit._connection import address_of, connect
from auditkit._demo import DEMO_STREAMS, seed_demo
from auditkit._exceptions import AuditKitError, InvalidStreamID
from auditkit._reader import read_arrow
from auditkit._secrets import redact
from auditkit._streams import streams

__all__ = ["main"]

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_FAILED = 0, 1, 2, 3


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.run(args)
        return code
    except InvalidStreamID as exc:
        print(f"auditkit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AuditKitError as exc:
        print(f"auditkit: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("auditkit: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auditkit",
        description="Audit, time-travel and archive event streams stored in Redis Streams.",
        epilog="Exit codes: 0 done, 1 findings, 2 bad usage, 3 could not run.",
    )
    parser.add_argument("--version", action="version", version=f"auditkit {auditkit.__version__}")
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
    return parser


def _format_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--format",
        choices=("table", "json", "csv"),
        default="table",
        help="output: an aligned table (default), JSON records, or CSV",
    )


def _print_frame(frame: pd.DataFrame, output_format: str) -> None:
    if output_format == "json":
        print(frame.to_json(orient="records", date_format="iso"))
    elif output_format == "csv":
        print(frame.to_csv(index=False), end="")
    elif frame.empty:
        print("(none)")
    else:
        print(frame.to_string(index=False))


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
        help="Redis to use (default: $REDIS_URL, else an embedded throwaway server)",
    )
    command.set_defaults(run=run)
    return command


def _client(args: argparse.Namespace) -> redis.Redis:
    return connect(args.redis_url)


def _run_demo(args: argparse.Namespace) -> int:
    client = _client(args)
    written = seed_demo(client, reset=args.reset)
    print(f"Demo data at {redact(address_of(client))}")
    overview = streams(client, "demo:*").set_index("key")
    for stream in DEMO_STREAMS:
        row = overview.loc[stream]
        events = read_arrow(client, stream)
        counts = events.group_by("event_type").aggregate([("id", "count")]).to_pylist()
        kinds = ", ".join(f"{c['event_type']} {c['id_count']:,}" for c in counts)
        aggregates = len(events.column("aggregate_id").unique())
        print(
            f"  {stream}: {row['length']:,} entries ({written[stream]:,} written now), "
            f"{row['first_id']} ({row['first_ts']:%Y-%m-%d}) .. "
            f"{row['last_id']} ({row['last_ts']:%Y-%m-%d})"
        )
        print(f"    {aggregates:,} aggregates; {kinds}")
    return EXIT_OK


def _run_streams(args: argparse.Namespace) -> int:
    _print_frame(streams(_client(args), args.pattern), args.format)
    return EXIT_OK
