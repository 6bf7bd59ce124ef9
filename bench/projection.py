"""Rebuilding every aggregate's state: auditkit's replay against a naive pandas loop.

    .venv/bin/python bench/projection.py --events 1000000

Starts a private redis-server, writes N events for 10k accounts, loads them once, then
times `states_at` for all accounts (balances from Deposited/Withdrawn), each best of
--repeat, in this one process:

  naive       read_pandas -> to_dict("records") -> payload dict per row -> handler
  table       Projection.states_at over the Arrow table (plain Python handlers)
  redis       Projection.states_at((client, stream)): reading included, exact payloads
  declarative Projection.declarative(...).states_at, one DuckDB GROUP BY
"""

from __future__ import annotations

import argparse
import gc
import math
import time
from collections.abc import Callable
from typing import Any

from _data import STREAM, seed_events

import auditkit as ak


def opened(state: dict[str, Any], event: Any) -> dict[str, Any]:
    return {**state, "open": True}


def deposited(state: dict[str, Any], event: Any) -> dict[str, Any]:
    return {**state, "balance": state["balance"] + event["payload"]["amount"]}


def withdrawn(state: dict[str, Any], event: Any) -> dict[str, Any]:
    return {**state, "balance": state["balance"] - event["payload"]["amount"]}


def closed(state: dict[str, Any], event: Any) -> dict[str, Any]:
    return {**state, "open": False}


HANDLERS = {
    "AccountOpened": opened,
    "Deposited": deposited,
    "Withdrawn": withdrawn,
    "AccountClosed": closed,
}
INITIAL = {"balance": 0.0, "open": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with ak.EmbeddedRedis() as server:
        client = server.client()
        seed_events(client, STREAM, args.events)
        table = ak.read_arrow(client, STREAM, progress=False)
        frame = ak.read_pandas(client, STREAM, progress=False)
        projection = ak.Projection(INITIAL, HANDLERS)
        declarative = ak.Projection.declarative(
            sum={"balance": {"Deposited": "payload.amount", "Withdrawn": "-payload.amount"}}
        )
        runs: dict[str, Callable[[], Any]] = {
            "naive": lambda: _naive(frame),
            "table": lambda: projection.states_at(table),
            "redis": lambda: projection.states_at((client, STREAM)),
            "declarative": lambda: declarative.states_at(table),
        }
        results = {name: _best(run, args.repeat) for name, run in runs.items()}
        balances = {
            name: dict(zip(out["aggregate_id"], out["balance"], strict=True))
            if name != "naive"
            else {k: v["balance"] for k, v in out.items()}
            for name, (_, out) in results.items()
        }
    print(f"{args.events:,} events, {len(balances['table']):,} aggregates")
    for name, (seconds, _) in results.items():
        print(f"  {name:12s} {seconds:7.3f} s  ({args.events / seconds / 1e6:5.2f} M events/s)")
    naive = results["naive"][0]
    for name in ("table", "redis", "declarative"):
        print(f"naive / {name:12s} {naive / results[name][0]:6.2f}x")
    agree = all(
        math.isclose(balances["naive"][k], balances[name][k], rel_tol=1e-9, abs_tol=1e-6)
        for name in ("table", "redis", "declarative")
        for k in balances["naive"]
    )
    print(f"all four agree on every balance: {agree}")


def _best(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = math.inf, None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        out = run()
        best = min(best, time.perf_counter() - started)
    return best, out


def _naive(frame: Any) -> dict[str, dict[str, Any]]:
    states: dict[str, dict[str, Any]] = {}
    payload_columns = [c for c in frame.columns if c.startswith("payload.")]
    for record in frame.sort_values(["ts", "seq"]).to_dict("records"):
        handler = HANDLERS.get(record["event_type"])
        if handler is None:
            continue
        payload = {c[8:]: record[c] for c in payload_columns if record[c] == record[c]}
        state = states.get(record["aggregate_id"], INITIAL)
        states[record["aggregate_id"]] = handler(state, {**record, "payload": payload})
    return states


if __name__ == "__main__":
    main()
