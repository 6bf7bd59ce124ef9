"""Archiving: export against read_arrow of the same range, no-op re-export, export memory.

    .venv/bin/python bench/archive.py --events 1000000 --big 5000000

Starts a private redis-server, writes N events, then times (each in a fresh process,
best of --repeat): `read_arrow` of the whole stream, `Archive.export` of it into an empty
folder, and a second export with nothing new. Then writes --big events and measures the
peak RSS of exporting them (target < 500 MB: memory bounded by rows_per_file).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _data import STREAM, seed_events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--big", type=int, default=5_000_000, help="0 to skip")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.port, args.root)))
        return

    import auditkit as ak

    work = Path(tempfile.mkdtemp(prefix="auditkit-bench-"))
    try:
        with ak.EmbeddedRedis() as server:
            started = time.perf_counter()
            seed_events(server.client(), STREAM, args.events)
            print(f"seeded {args.events:,} events in {time.perf_counter() - started:.1f} s")
            read = min(_run("read", server.port, work / "x")["seconds"] for _ in range(args.repeat))
            exports, noops = [], []
            for i in range(args.repeat):
                root = work / f"arc{i}"
                exports.append(_run("export", server.port, root))
                noops.append(_run("export", server.port, root))
            export = min(exports, key=lambda r: r["seconds"])
            noop = min(r["seconds"] for r in noops)
            size = sum(p.stat().st_size for p in (work / "arc0").rglob("*.parquet"))
            print(f"  read_arrow        {read:7.3f} s")
            print(
                f"  export            {export['seconds']:7.3f} s  ({export['files']} files, "
                f"{size / 1e6:.1f} MB of Parquet)"
            )
            print(f"  no-op re-export   {noop:7.3f} s")
            print(f"export / read_arrow  {export['seconds'] / read:6.2f}x   (target <= 1.3)")
            # Reading the archive back: every file's size and SHA-256 are checked against
            # its manifest first; the baseline is pyarrow reading the same files unchecked.
            times = {
                mode: min(
                    _run(mode, server.port, work / "arc0")["seconds"] for _ in range(args.repeat)
                )
                for mode in ("files", "events_table", "query")
            }
            print(f"  pyarrow, the files  {times['files']:7.3f} s")
            print(f"  events_table        {times['events_table']:7.3f} s")
            print(f"  duckdb count/sum    {times['query']:7.3f} s")
            print(f"events_table / pyarrow  {times['events_table'] / times['files']:6.2f}x")
            if args.big:
                started = time.perf_counter()
                seed_events(server.client(), STREAM, args.big)
                print(f"seeded {args.big:,} events in {time.perf_counter() - started:.1f} s")
                big = _run("export", server.port, work / "big")
                print(
                    f"  export of {args.big:,}: {big['seconds']:.1f} s, peak RSS "
                    f"{big['peak_rss'] / 1e6:.0f} MB   (target < 500)"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(mode: str, port: int, root: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--port", str(port), "--root", str(root)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _child(mode: str, port: int, root: str) -> dict[str, Any]:
    import redis

    import auditkit as ak

    client = redis.Redis(port=port)
    started = time.perf_counter()
    files = 0
    if mode == "read":
        ak.read_arrow(client, STREAM, progress=False)
    elif mode == "files":
        import pyarrow.parquet as pq

        for path in sorted(Path(root).rglob("*.parquet")):
            pq.read_table(path)
    elif mode == "events_table":
        ak.Archive(root).events_table(stream=STREAM)
    elif mode == "query":
        sql = "select count(*), count(distinct aggregate_id) from events"
        ak.Archive(root).duckdb().execute(sql).fetchall()
    else:
        files = ak.Archive(root).export(client, STREAM, progress=False).files
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"seconds": seconds, "files": files, "peak_rss": peak}


if __name__ == "__main__":
    main()
