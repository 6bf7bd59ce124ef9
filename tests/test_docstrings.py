"""Every example in auditkit's docstrings runs here, against a private Redis, and must print
what the docstring says it prints.

Examples run with a small namespace of real objects (`NAMESPACE` below says what each name
holds), so they read like a user's session. None may be skipped: an example that cannot run
goes, or is rewritten until it does.
"""

from __future__ import annotations

import doctest
import importlib
import json
import pkgutil
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
import redis

import auditkit as ak

NAMESPACE = {
    "r": "a client of a private Redis holding `orders`, `payments`, `orders:eu`, `orders:us` "
    "and `accounts`",
    "events": "the `accounts` stream read with `ak.read_arrow`",
}


def _examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = []
    modules = ["auditkit"] + [
        info.name
        for info in pkgutil.walk_packages(ak.__path__, prefix="auditkit.")
        if info.name != "auditkit.__main__"  # importing it runs the command line
    ]
    for name in sorted(modules):
        module = importlib.import_module(name)
        for test in finder.find(module, module=module):
            # A name re-exported by another module is found there too: keep its own module's.
            if test.examples and test.name.startswith(module.__name__):
                found.append(test)
    return sorted(found, key=lambda t: t.name)


EXAMPLES = _examples()


def test_the_package_has_examples() -> None:
    assert len(EXAMPLES) >= 10


def test_no_example_is_skipped() -> None:
    skipped = [
        f"{test.name}: {example.source.strip()}"
        for test in EXAMPLES
        for example in test.examples
        if example.options.get(doctest.SKIP)
    ]
    assert skipped == []


@pytest.fixture
def namespace(
    r: redis.Redis, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    monkeypatch.delenv("REDIS_URL", raising=False)
    _seed(r)
    yield {"r": r, "events": ak.read_arrow(r, "accounts")}


@pytest.mark.parametrize("test", EXAMPLES, ids=[t.name for t in EXAMPLES])
def test_docstring_example(test: doctest.DocTest, namespace: dict[str, Any]) -> None:
    test.globs = {**test.globs, **namespace}
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    report: list[str] = []
    result = runner.run(test, out=report.append)
    assert result.failed == 0, "".join(report)


def _seed(r: redis.Redis) -> None:
    """The streams the examples talk about, with fixed IDs so outputs are stable."""
    day = 1772323200000  # 2026-03-01T00:00:00Z
    hour = 3_600_000
    orders = [
        ("OrderPlaced", "order-1", {"amount": 40}),
        ("OrderPlaced", "order-2", {"amount": 15}),
        ("OrderPaid", "order-1", {"amount": 40}),
        ("OrderClosed", "order-1", {}),
        ("OrderPaid", "order-2", {"amount": "15"}),  # a type change, no version bump
        ("OrderRefunded", "order-1", {"amount": 40}),  # after the order was closed
    ]
    for n, (kind, order, payload) in enumerate(orders):
        fields = {"type": kind, "aggregate_id": order, "payload": json.dumps(payload)}
        r.xadd("orders", fields, id=f"{day + n * 10 * hour}-0")
    for n in range(3):
        r.xadd("payments", {"type": "PaymentTaken", "payload": "{}"}, id=f"{day + n}-0")
    for region, count in (("eu", 3), ("us", 2)):
        for n in range(count):
            r.xadd(f"orders:{region}", {"type": "OrderPlaced", "payload": "{}"}, id=f"{day + n}-0")
    deposits = [("2026-02-27", 100.0), ("2026-03-01T09:00Z", 25.5), ("2026-03-02", 50.0)]
    for when, amount in deposits:
        sid = ak.StreamID.from_datetime(pd.Timestamp(when, tz="UTC").to_pydatetime())
        fields = {
            "type": "Deposited",
            "aggregate_id": "acct-7",
            "payload": json.dumps({"amount": amount}),
        }
        r.xadd("accounts", fields, id=str(sid))
