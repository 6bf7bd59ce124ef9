"""Write the incident this project's tests reproduce into a Redis: run it against a scratch
server, then cut the sample from it (README.md, "Refreshing the sample").

A payments service's task broker: each message has a JSON `body` holding the task's name,
the payment and the customer. Two refunds of one payment fail on every attempt (poison
messages), a charge is stuck at a worker that crashed, and the last tasks are not yet read.
"""

from __future__ import annotations

import json
import sys

import redis

STREAM = "payments"
GROUP = "workers"


def main(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.delete(STREAM)
    ms = 1_780_000_000_000  # 2026-05-28T20:26:40Z
    for n in range(1, 41):
        task = "refund" if n in (17, 23) else "capture" if n % 4 == 0 else "charge"
        body = {
            "task": task,
            "payment_id": f"pay-{(n + 1) // 2:03d}",
            "amount": round(10 + n * 2.5, 2),
            "customer": {"email": f"customer{n}@example.com", "country": "NL"},
        }
        client.xadd(STREAM, {"message_id": f"m-{n}", "body": json.dumps(body)}, id=f"{ms + n}-0")
    client.xgroup_create(STREAM, GROUP, id="0")
    delivered = client.xreadgroup(GROUP, "worker-1", {STREAM: ">"}, count=35)[0][1]
    for entry_id, fields in delivered:
        task = json.loads(fields[b"body"])["task"]
        if task == "refund" or entry_id == f"{ms + 30}-0".encode():
            continue
        client.xack(STREAM, GROUP, entry_id)
    # The refunds were retried on every restart: delivered six times, never acknowledged.
    for _ in range(5):
        client.xclaim(STREAM, GROUP, "worker-2", 0, [f"{ms + 17}-0", f"{ms + 23}-0"])
    # A charge taken by worker-3 forty minutes ago, which then crashed.
    client.xclaim(STREAM, GROUP, "worker-3", 0, [f"{ms + 30}-0"], idle=40 * 60_000)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "redis://localhost:6379/0")
