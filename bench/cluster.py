"""Loading and exporting on a three-primary Redis Cluster against one server, same data.

    .venv/bin/python bench/cluster.py --events 1000000

Starts one redis-server and a three-primary cluster (tests/_cluster.py), writes the same
events to both: once as one stream, once split over three streams whose slots lie on three
different primaries. Then times, in a fresh process each (best of --repeat), `read_arrow`
and `Archive.export` of each layout on each deployment, and prints events per second and
the cluster / single-server ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _data import seed_events

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--streams", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.url, args.streams.split(","), args.root)))
        return

    from _cluster import Cluster

    import auditkit as ak

    work = Path(tempfile.mkdtemp(prefix="auditkit-bench-"))
    single = ak.EmbeddedRedis().start()
    cluster = Cluster(ak.EmbeddedRedis().executable).start()
    try:
        split = _one_stream_per_primary(cluster)
        layouts = {"1 stream": ["bench:events"], "3 streams": split}
        for streams in layouts.values():
            share = args.events // len(streams)
            for stream in streams:
                seed_events(single.client(), stream, share)
                seed_events(cluster.client(), stream, share)
        print(f"seeded {args.events:,} events per layout on both deployments")
        print(f"{'':22}{'one server':>14}{'cluster':>14}{'ratio':>8}")
        for name, streams in layouts.items():
            for mode in ("read", "export"):
                rates = []
                for url in (single.url, cluster.url):
                    best = min(
                        _run(mode, url, streams, work / f"arc-{mode}-{i}")
                        for i in range(args.repeat)
                    )
                    rates.append(args.events // len(streams) * len(streams) / best)
                print(
                    f"{mode + ' ' + name:22}{rates[0]:>10,.0f} ev/s{rates[1]:>10,.0f} ev/s"
                    f"{rates[1] / rates[0]:>7.2f}x"
                )
    finally:
        cluster.stop()
        single.stop()
        shutil.rmtree(work, ignore_errors=True)


def _one_stream_per_primary(cluster: Any) -> list[str]:
    chosen: dict[int, str] = {}
    i = 0
    while len(chosen) < len(cluster.nodes):
        key = f"bench:events:{i}"
        chosen.setdefault(cluster.index_of(key), key)
        i += 1
    return [chosen[index] for index in sorted(chosen)]


def _run(mode: str, url: str, streams: list[str], root: Path) -> float:
    shutil.rmtree(root, ignore_errors=True)
    command = [sys.executable, __file__, "--child", mode, "--url", url]
    command += ["--streams", ",".join(streams), "--root", str(root)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=True,
    )
    seconds: float = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return seconds


def _child(mode: str, url: str, streams: list[str], root: str) -> dict[str, Any]:
    import auditkit as ak

    client = ak.connect(url)
    started = time.perf_counter()
    if mode == "read":
        ak.read_arrow(client, streams, progress=False)
    else:
        archive = ak.Archive(root)
        for stream in streams:
            archive.export(client, stream, progress=False)
    return {"seconds": time.perf_counter() - started}


if __name__ == "__main__":
    main()
