"""Schema drift over a stream, against a load of the same events.

    .venv/bin/python bench/drift.py --events 200000

Starts a private redis-server and writes two streams of N events each:

  small  five fields, a ~100-byte JSON payload (the load benchmark's event set)
  wide   a process-mining log: 15 text payload fields, spread over 60 days

then times, for each, best of --repeat in this one process, alternating the two so that
both see the same machine:

  load   auditkit.read_arrow(r, stream): the baseline
  drift  auditkit.schema_drift((r, stream), window=...): reading included

and prints drift / load (target <= 1.5) and the drift time per event.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable
from typing import Any

from _data import STREAM, WIDE_STREAM, seed_events, seed_wide_log

import auditkit as ak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--window", default="day")
    args = parser.parse_args()
    with ak.EmbeddedRedis() as server:
        client = server.client()
        started = time.perf_counter()
        seed_events(client, STREAM, args.events)
        seed_wide_log(client, WIDE_STREAM, args.events)
        print(
            f"seeded 2 x {args.events:,} events in {time.perf_counter() - started:.1f} s "
            f"(redis-server {server.version}), window={args.window!r}"
        )
        print()
        print(f"{'stream':8s} {'load s':>8s} {'drift s':>8s} {'drift/load':>11s} {'us/event':>9s}")
        for label, stream in (("small", STREAM), ("wide", WIDE_STREAM)):
            runs: dict[str, Callable[[], Any]] = {
                "load": lambda s=stream: ak.read_arrow(client, s, progress=False),
                "drift": lambda s=stream: ak.schema_drift((client, s), window=args.window),
            }
            best = _alternating(runs, args.repeat)
            load, drift = best["load"], best["drift"]
            print(
                f"{label:8s} {load:8.3f} {drift:8.3f} {drift / load:11.2f} "
                f"{drift / args.events * 1e6:9.1f}"
            )
    print()
    print("target: drift/load <= 1.5")


def _alternating(runs: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """Best time of each run, taking turns so a slow moment does not favour one."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            gc.collect()
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


if __name__ == "__main__":
    main()
