"""Loading a stream into Arrow/pandas, against a bare hiredis read and the naive path.

    .venv/bin/python bench/load.py --events 1000000

Starts a private redis-server, writes N events (five fields, a ~100-byte JSON payload),
then times, each in a fresh process so peak memory is its own:

  (a) floor  — a bare hiredis read of the whole range (XRANGE pages of 10k on a socket)
  (b) naive  — redis-py `xrange` pages of 10k -> list of dicts -> DataFrame -> json_normalize
  (c) arrow  — auditkit.read_arrow
  (d) pandas — auditkit.read_pandas
  (e) batches — auditkit.iter_batches, batches discarded (memory must not grow with N)

and prints the ratios the design asks for: (c)/(a) <= 1.5, (b)/(c) >= 7, peak RSS of
(c) <= 3x the table's nbytes. Times are the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import subprocess
import sys
import time
from typing import Any

from _data import STREAM, seed_events

PAGE = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default="floor,naive,arrow,pandas,batches")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.port)))
        return

    import auditkit as ak

    with ak.EmbeddedRedis() as server:
        started = time.perf_counter()
        seed_events(server.client(), STREAM, args.events)
        print(
            f"seeded {args.events:,} events in {time.perf_counter() - started:.1f} s "
            f"(redis-server {server.version})"
        )
        results: dict[str, dict[str, Any]] = {}
        for mode in args.modes.split(","):
            runs = [_run_child(mode, server.port) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            best["peak_rss"] = max(r["peak_rss"] for r in runs)
            results[mode] = best
            times = ", ".join(f"{r['seconds']:.3f}" for r in runs)
            print(
                f"  {mode:7s} {best['seconds']:7.3f} s  peak RSS {best['peak_rss'] / 1e6:8.1f} MB"
                f"  (runs: {times})"
            )
    if not {"floor", "naive", "arrow", "pandas"} <= set(results):
        return
    floor, naive, arrow, pandas_ = (results[m] for m in ("floor", "naive", "arrow", "pandas"))
    nbytes = arrow["nbytes"]
    lines = [
        ("table nbytes (MB)", nbytes / 1e6, ""),
        ("read_arrow / hiredis floor", arrow["seconds"] / floor["seconds"], "target <= 1.5"),
        ("read_pandas / hiredis floor", pandas_["seconds"] / floor["seconds"], ""),
        ("naive / read_arrow", naive["seconds"] / arrow["seconds"], "target >= 7"),
        ("naive / read_pandas", naive["seconds"] / pandas_["seconds"], ""),
        ("read_arrow peak RSS / nbytes", arrow["peak_rss"] / nbytes, "target <= 3"),
        ("  minus the idle interpreter", (arrow["peak_rss"] - arrow["idle_rss"]) / nbytes, ""),
        ("naive peak RSS / read_arrow's", naive["peak_rss"] / arrow["peak_rss"], ""),
    ]
    if "batches" in results:
        batches = results["batches"]
        growth = (batches["peak_rss"] - batches["idle_rss"]) / 1e6
        lines.append(("iter_batches RSS growth (MB)", growth, "bounded: same for any length"))
    print()
    for label, value, target in lines:
        print(f"{label:32s} {value:8.2f}  {target}")


def _run_child(mode: str, port: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--port", str(port)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _child(mode: str, port: int) -> dict[str, Any]:
    import pandas as pd
    import redis

    import auditkit as ak

    idle = _rss()
    nbytes = 0
    started = time.perf_counter()
    if mode == "floor":
        rows = _hiredis_read(port)
    elif mode == "naive":
        client = redis.Redis(port=port)
        entries: list[dict[str, Any]] = []
        start = "-"
        while True:
            page = client.xrange(STREAM, min=start, max="+", count=PAGE)
            for entry_id, fields in page:
                row = {k.decode(): v.decode() for k, v in fields.items()}
                row["id"] = entry_id.decode()
                entries.append(row)
            if len(page) < PAGE:
                break
            ms, seq = page[-1][0].decode().split("-")
            start = f"{ms}-{int(seq) + 1}"
        frame = pd.DataFrame(entries)
        payload = pd.json_normalize([json.loads(p) for p in frame.pop("payload")])
        frame = pd.concat([frame, payload.add_prefix("payload.")], axis=1)
        rows = len(frame)
    elif mode == "arrow":
        table = ak.read_arrow(redis.Redis(port=port), STREAM, progress=False)
        rows, nbytes = table.num_rows, table.nbytes
    elif mode == "batches":
        rows = 0
        for batch in ak.iter_batches(redis.Redis(port=port), STREAM, progress=False):
            rows += batch.num_rows
    else:
        frame = ak.read_pandas(redis.Redis(port=port), STREAM, progress=False)
        rows = len(frame)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": rows,
        "nbytes": nbytes,
        "peak_rss": _rss(),
        "idle_rss": idle,
    }


def _hiredis_read(port: int) -> int:
    # As fast as a plain read gets: one socket, a reused receive buffer, no cyclic GC
    # (read_arrow turns it off too), pages parsed by hiredis into Python lists.
    import gc

    import hiredis

    gc.disable()
    sock = socket.create_connection(("127.0.0.1", port))
    reader = hiredis.Reader()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    rows = 0
    start = b"-"
    while True:
        parts = [b"XRANGE", STREAM.encode(), start, b"+", b"COUNT", str(PAGE).encode()]
        sock.sendall(
            b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        )
        reply: Any = False
        while reply is False:
            received = sock.recv_into(view)
            reader.feed(view, 0, received)
            reply = reader.gets()
        rows += len(reply)
        if len(reply) < PAGE:
            break
        ms, seq = reply[-1][0].split(b"-")
        start = b"%s-%d" % (ms, int(seq) + 1)
    sock.close()
    gc.enable()
    return rows


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    main()
