"""`ak.report` and `auditkit report`: what the HTML file holds, on several stream layouts."""

from __future__ import annotations

import ast
import html
import re
from pathlib import Path

import pandas as pd
import pytest
from _scenario import AUTUMN, ORDERS, SPRING, plant_flat, plant_orders, plant_tasks

import auditkit as ak
from auditkit._cli.main import main
from auditkit._findings import SEVERITIES
from auditkit._report.catalogue import CATALOGUE
from auditkit._report.plots import bucket, events_per_bucket
from auditkit._report.render import quoted

PACKAGE = Path(ak.__file__).parent


def _rows(page: str) -> list[str]:
    return re.findall(r'<tr id="f-\d+"[^>]*>.*?</tr>', page)


def _anchors_resolve(page: str) -> list[str]:
    """Every in-page link whose target is missing."""
    targets = set(re.findall(r'\bid="?([^"\s>]+)', page))
    return [t for t in re.findall(r'href="#([^"]+)"', page) if t not in targets]


def test_report_of_planted_findings(r, tmp_path):
    planted = plant_orders(r)
    result = ak.report(r, ORDERS, output=tmp_path / "out")
    page = result.html.read_text()
    findings = result.findings
    # The verdict first: an error fails it.
    assert result.verdict == "fail" and not result.ok
    assert page.index("FAIL") < page.index("<table")
    for check in ("poison-message", "pending-stale", "clock-skew", "version-regression"):
        assert check in set(findings["check"]), check
    # Every finding, once, in the table; the files beside it hold the same.
    assert len(_rows(page)) == len(findings) > 25
    assert len(pd.read_csv(result.csv)) == len(findings)
    assert pd.read_parquet(result.parquet)["check"].tolist() == findings["check"].tolist()
    # Worst first, and every severity counted in the verdict.
    ranks = findings["severity"].map(SEVERITIES.index)
    assert ranks.is_monotonic_increasing
    for severity in SEVERITIES:
        count = int((findings["severity"] == severity).sum())
        assert f'<span class="badge {severity}">{count:,} {severity}</span>' in page
    assert _anchors_resolve(page) == []
    # The poison message links to its pending entry and payload, the row highlighted.
    poison = findings.index[findings["check"] == "poison-message"][0]
    row = _rows(page)[poison]
    anchor = re.search(r'href="#(ev-pending-[^"]+)"', row)
    assert anchor is not None
    section = page[page.index(f'id="{anchor[1]}"') :].split("</article>")[0]
    assert "worker-" in section and "&quot;sku&quot;" in section
    assert '<tr class="hit">' in section and planted["poison-message"] in section
    # The clock-skew finding links to its aggregate's events.
    skew = findings[(findings["check"] == "clock-skew") & (findings["id"] == planted["clock-skew"])]
    assert len(skew) == 1
    assert 'href="#ev-aggregate-orders-order-14"' in _rows(page)[skew.index[0]]
    # IDs never wrap; backticks are code, not literal.
    assert re.search(r'<td class="nowrap id" data-sort="\d{20}-\d{20}">\d+-\d+</td>', page)
    assert "`" not in "".join(re.findall(r"<td>(.*?)</td>", "".join(_rows(page))))
    # Run metadata: versions, server, thresholds, envelope.
    for label in ("auditkit", "Redis", "pyarrow", "DuckDB", "thresholds", "envelope"):
        assert f"<th>{label}</th>" in page, label
    assert r.info("server")["redis_version"] in page
    assert "poison_after 5" in page and "stale_after 15 min" in page
    # Self-contained: nothing fetched from elsewhere.
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert page.count('src="data:image/png;base64,') >= 2


def test_an_archive_adds_its_verification_and_checkpoint(r, tmp_path):
    plant_orders(r)
    archive = ak.Archive(tmp_path / "archive")
    archive.export(r, ORDERS)
    kept = str(archive.checkpoint(ORDERS))
    result = ak.report(r, [ORDERS], output=tmp_path / "ok", archive=tmp_path / "archive")
    page = result.html.read_text()
    assert html.escape(kept.splitlines()[0]) in page
    # A file removed from the archive: verify's critical finding joins, no checkpoint.
    next(Path(tmp_path / "archive").rglob("*.parquet")).unlink()
    result = ak.report(r, ORDERS, output=tmp_path / "damaged", archive=archive)
    page = result.html.read_text()
    missing = result.findings[result.findings["check"] == "file-missing"]
    assert len(missing) == 1 and missing["severity"].iloc[0] == "critical"
    assert "no checkpoint:" in page
    assert _anchors_resolve(page) == []


def test_a_flat_field_stream(any_r, tmp_path):
    r = any_r
    envelope = plant_flat(r)
    result = ak.report(r, "p2p:*", output=tmp_path, envelope=envelope)
    page = result.html.read_text()
    assert len(_rows(page)) == len(result.findings)
    assert "p2p:log" in page and "<th>activity</th>" not in page  # the type is event_type
    assert "Create Order" in page  # the drift timeline and plots read the flat type
    assert _anchors_resolve(page) == []
    # No type at all: drift is not checked, and the report says why instead of failing.
    r.xadd("untyped", {"value": "1"})
    bare = {"preset": "flat", "event_type": None}
    result = ak.report(r, ["untyped"], output=tmp_path / "untyped", envelope=bare)
    assert "Schema drift of <code>untyped</code> not checked" in result.html.read_text()


def test_a_task_broker_stream(r, tmp_path):
    envelope = plant_tasks(r)
    result = ak.report(r, "taskiq", output=tmp_path, envelope=envelope, evidence_rows=5)
    page = result.html.read_text()
    drift = result.findings[result.findings["check"] == "hidden-types"]
    assert len(drift) >= 1 and "amount" in drift["detail"].iloc[0]
    # Its evidence samples events of the type it names, at most five.
    row = _rows(page)[drift.index[0]]
    anchor = re.search(r'href="#(ev-drift-\d+)"', row)
    assert anchor is not None
    section = page[page.index(f'id="{anchor[1]}"') :].split("</article>")[0]
    assert "billing.tasks:charge" in section or "mail.tasks:send_receipt" in section
    assert 0 < section.count("<tr") - 1 <= 5
    assert "payload.kwargs.amount" in section
    # Some written as numbers, some as text: the samples show both sides.
    assert "&quot;amount&quot;: &quot;" in section and re.search(r"&quot;amount&quot;: \d", section)
    assert _anchors_resolve(page) == []


def test_an_unknown_stream_is_named(r, tmp_path):
    with pytest.raises(ak.StreamNotFound, match="`nope`"):
        ak.report(r, ["nope"], output=tmp_path)
    assert not list(tmp_path.iterdir())


def test_the_command_writes_the_report_and_exits_by_verdict(redis_server, r, tmp_path, capsys):
    plant_orders(r)
    out = tmp_path / "report"
    code = main(["report", ORDERS, "--output", str(out), "--redis-url", redis_server.url])
    printed = capsys.readouterr()
    assert code == 1  # an error finding fails the verdict
    assert printed.out.strip() == str(out / "report.html")
    assert "report: fail" in printed.err
    assert (out / "findings.parquet").is_file() and (out / "findings.csv").is_file()
    code = main(["report", "nope", "--output", str(out), "--redis-url", redis_server.url])
    err = capsys.readouterr().err
    assert (
        code == 3
        and "`nope`" in err
        and "auditkit streams" in err
        and len(err.strip().splitlines()) == 1
    )


def test_the_command_passes_a_clean_stream(start_redis, tmp_path, capsys):
    server = start_redis({"appendonly": "yes"})
    client = server.client()
    plant_tasks(client)
    client.xadd("clean", {"type": "Noted", "payload": "{}"})
    code = main(["report", "clean", "--output", str(tmp_path), "--redis-url", server.url])
    assert code == 0, capsys.readouterr().err
    assert "PASS" in (tmp_path / "report.html").read_text()
    # An archive that does not exist is named, not left out of a passing report.
    capsys.readouterr()
    missing = tmp_path / "no-archive"
    argv = ["report", "clean", "--output", str(tmp_path / "again"), "--archive", str(missing)]
    code = main([*argv, "--redis-url", server.url])
    err = capsys.readouterr().err
    assert code == 2 and str(missing) in err and len(err.strip().splitlines()) == 1, err


def test_every_check_the_code_can_emit_is_catalogued():
    """A check name is a string argument followed by a severity (`found.add("x", "warning",
    ...)`, `note("x", severity, ...)`, `_each(found, rows, "x", "error", ...)`)."""
    emitted: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if "_report" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            for name, severity in zip(node.args, node.args[1:], strict=False):
                is_severity = (
                    isinstance(severity, ast.Constant) and severity.value in SEVERITIES
                ) or (isinstance(severity, ast.Name) and severity.id == "severity")
                if is_severity and isinstance(name, ast.Constant) and isinstance(name.value, str):
                    emitted.add(name.value)
    assert len(emitted) >= 50  # the reading of the code still finds the checks
    assert {"poison-message", "file-missing", "mixed-types", "replica"} <= emitted
    assert sorted(emitted - set(CATALOGUE)) == []
    assert all(e.means and e.matters and e.fix for e in CATALOGUE.values())


def test_a_weekly_series_keeps_its_empty_weeks():
    ts = pd.Series(pd.to_datetime([SPRING, SPRING, AUTUMN], utc=True))
    events = pd.DataFrame({"ts": ts, "stream": ["a", "a", "b"]})
    unit, freq = bucket(ts.min(), ts.max())
    counts = events_per_bucket(events, "stream", freq)
    assert unit == "week"
    weeks = (AUTUMN - SPRING).days // 7 + 1
    assert len(counts) == weeks  # 35 weeks, not the two that have events
    assert counts.index[0] == pd.Timestamp("2026-03-30", tz="UTC")  # a Monday
    assert (counts.index[1:] - counts.index[:-1] == pd.Timedelta(days=7)).all()
    assert counts.sum().to_dict() == {"a": 2, "b": 1}
    assert (counts.sum(axis=1) == 0).sum() == weeks - 2


def test_backticks_become_code_and_the_rest_is_escaped():
    assert quoted("field `a<b>` is <new>") == "field <code>a&lt;b&gt;</code> is &lt;new&gt;"


def test_no_secret_reaches_the_report(start_redis, tmp_path, capsys):
    server = start_redis({"requirepass": "hunter2-report"})
    client = server.client()
    plant_tasks(client)
    client.xadd("clean", {"type": "Noted", "payload": "{}"})
    url = server.url.replace("redis://", "redis://:hunter2-report@")
    code = main(["report", "clean", "--output", str(tmp_path), "--redis-url", url])
    printed = capsys.readouterr()
    assert code == 1, printed.err  # this server persists nothing: an error finding
    page = (tmp_path / "report.html").read_text()
    assert "<th>server</th>" in page and str(server.port) in page
    for text in (page, (tmp_path / "findings.csv").read_text(), printed.out, printed.err):
        assert "hunter2-report" not in text
