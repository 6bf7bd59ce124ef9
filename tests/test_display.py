"""How results show in Jupyter: whole details, worst first, human durations, escaped, no I/O."""

import json
import re
import socket
import time
from datetime import timedelta
from html import escape

import pandas as pd
import pyarrow.fs as pafs
import pytest

import auditkit as ak

BASE_MS = 1_772_323_200_000
TASKS = {"event_type": "payload.task_name", "aggregate_id": "task_id"}
HOSTILE = "<script>alert('x')</script>"


def _tasks(r, stream="tasks"):
    """A task broker's layout (type inside the JSON payload); one aggregate id is markup."""
    for i in range(8):
        task = HOSTILE if i in (2, 5) else f"t-{i % 3}"  # closed at 2, an event after it
        payload = {"task_name": "Closed" if i == 2 else "resize", "n": i}
        r.xadd(stream, {"task_id": task, "payload": json.dumps(payload)}, id=f"{BASE_MS + i}-0")


def _rows(html):
    return re.findall(r"<tr style=\"border-left:4px solid (#[0-9a-f]+)", html)


def test_audit_findings_stay_a_dataframe_and_show_worst_first_whole_and_escaped(r):
    _tasks(r)
    r.xgroup_create("tasks", "workers", id="0")
    r.xreadgroup("workers", "w-1", {"tasks": ">"}, count=1)
    findings = ak.audit(
        r, "tasks", envelope=TASKS, terminal_types=["Closed"], stale_after=timedelta(0)
    )
    assert isinstance(findings, pd.DataFrame)
    html = findings._repr_html_()
    severities = re.findall(r">(critical|error|warning|info)</span></td>", html)
    rank = ["critical", "error", "warning", "info"]
    assert severities == sorted(severities, key=rank.index)
    assert {"error", "warning"} <= set(severities)
    assert len(_rows(html)) == len(findings)
    for detail in findings["detail"]:  # whole, where pandas cuts at 50 characters
        assert _escaped(detail) in html
    longest = max(findings["detail"], key=len)
    assert len(longest) > 50
    assert _escaped(longest) in html
    assert HOSTILE not in html and "&lt;script&gt;" in html
    # A filtered or reordered result shows the same way; a column selection as a table.
    errors = findings[findings["severity"] == "error"]
    assert "<span" in errors._repr_html_() and len(_rows(errors._repr_html_())) == len(errors)
    assert "border-left" not in findings[["check"]]._repr_html_()


def _escaped(text):
    import html

    return html.escape(text, quote=True)


def test_accepted_findings_are_shown_dimmed_with_their_reason(r):
    _tasks(r)
    findings = ak.audit(
        r,
        "tasks",
        envelope=TASKS,
        select="durability",
        baseline=[{"check": "no-persistence", "reason": "a <throwaway> server"}],
    )
    html = findings._repr_html_()
    assert "(1 accepted)" in html and "opacity:0.55" in html
    assert "a &lt;throwaway&gt; server" in html


def test_pending_idle_times_show_in_human_units(r):
    _tasks(r)
    r.xgroup_create("tasks", "workers", id="0")
    r.xreadgroup("workers", "w-1", {"tasks": ">"}, count=2)
    time.sleep(0.02)
    pending = ak.pending_entries(r, "tasks", envelope=TASKS)
    html = pending._repr_html_()
    idle = int(pending["idle_ms"].iloc[0])
    assert f'title="{idle} ms">{idle} ms<' in html
    groups = ak.consumer_groups(r, "tasks")._repr_html_()
    assert "oldest_pending_idle_ms" in groups and " ms</td>" in groups


def test_human_units():
    from auditkit._display import human_bytes, human_ms

    assert [human_ms(v) for v in (850, 12_500, 245_000, 3 * 3_600_000, 3 * 86_400_000)] == [
        "850 ms",
        "12.5 s",
        "4 min 5 s",
        "3.0 h",
        "3.0 d",
    ]
    assert human_bytes(256 << 20) == "256.0 MiB" and human_bytes(12) == "12 B"


def test_export_and_verify_reports_show_their_verdict(r, tmp_path):
    _tasks(r)
    arc = ak.Archive(tmp_path / "arc", envelope=TASKS)
    exported = arc.export(r, "tasks")
    html = exported._repr_html_()
    assert "Archive export" in html and ">done<" in html and exported.horizon in html
    report = arc.verify(r, "tasks")
    assert report.ok and ">ok<" in report._repr_html_()
    assert f"archived up to {exported.horizon}" in report._repr_html_()
    next(tmp_path.joinpath("arc").rglob("*.parquet")).write_bytes(b"changed")
    broken = arc.verify(r, "tasks")
    html = broken._repr_html_()
    assert ">FAILED<" in html and "file-changed" in html
    assert ">critical</span>" in html


def test_an_archive_display_does_no_io_and_shows_no_key():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{port}",
        scheme="http",
        access_key="key",
        secret_key="s3cret",
        region="us-east-1",
        connect_timeout=0.5,
        request_timeout=0.5,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
    )
    arc = ak.Archive(
        "s3://bucket/prefix",
        filesystem=nowhere,
        pseudonymize=["email"],
        key="the-secret-hmac-key",
    )
    started = time.monotonic()
    html = arc._repr_html_()
    assert time.monotonic() - started < 0.2
    assert "s3://bucket/prefix" in html and "email" in html and "given (never shown)" in html
    assert "the-secret-hmac-key" not in html and "s3cret" not in html
    with pytest.raises(OSError):
        arc.streams()  # the same archive does reach for the storage when asked


def test_projection_and_drift_report_displays(r):
    _tasks(r)

    def on_resize(state, event):
        return state

    projection = ak.Projection(initial=dict, handlers={"resize": on_resize, "<b>": on_resize})
    html = projection._repr_html_()
    assert "on_resize" in html and "&lt;b&gt;" in html and "<b>" not in html
    report = ak.schema_drift((r, "tasks"), envelope=TASKS)
    html = report._repr_html_()
    assert "Schema drift" in html and "Versions seen" in html and "resize" in html


def test_a_selection_of_finding_columns_still_shows(r):
    # The schema-drift notebook shows `report.findings[["check", "severity", "detail"]]`:
    # columns left out (stream, id) are not sorted by.
    _tasks(r)
    findings = ak.audit(r, "tasks", envelope=TASKS, terminal_types=["Closed"])
    assert len(findings)
    html = findings[["check", "severity", "detail"]]._repr_html_()
    assert len(_rows(html)) == len(findings)
    # Without a check column it is a plain table, all rows still there.
    plain = findings[["severity", "detail"]]._repr_html_()
    assert plain.count("<tr") == len(findings) + 1


def test_inspection_trim_plan_repair_and_checkpoint_show_as_cards(r, tmp_path):
    key = "tasks<b>"  # a key that is markup, as any key may be
    for i in range(8):  # a task broker's layout; the first entry's task id is markup
        payload = json.dumps({"task_name": "resize", "n": i})
        r.xadd(key, {"task_id": HOSTILE if i == 0 else f"t-{i}", "payload": payload})
    shown_key = "tasks&lt;b&gt;"
    found = ak.inspect(r, key)
    html = found._repr_html_()
    assert f"Stream `{shown_key}`" in html and "fits the sample" in html
    assert "task_id" in html and "`payload.task_name`" in html and "fills 100%" in html
    assert "&lt;script&gt;" in html and HOSTILE not in html and key not in html
    assert escape(found.toml()) in html  # the file to save, whole
    arc = ak.Archive(tmp_path / "arc", envelope=TASKS)
    exported = arc.export(r, key)
    plan = arc.plan_trim(r, key)
    html = plan._repr_html_()
    assert "8 entries would go" in html and plan.minid in html and exported.horizon in html
    checkpoint = arc.checkpoint(key)
    html = checkpoint._repr_html_()
    assert "not signed" in html and checkpoint.head in html and escape(str(checkpoint)) in html
    assert key not in html
    for manifest in (tmp_path / "arc" / "_manifest").rglob("*.jsonl"):
        manifest.unlink()
    repaired = ak.Archive(tmp_path / "arc").repair(key, reason="manifest deleted by a job")
    html = repaired._repr_html_()
    assert ">rebuilt<" in html and ">8<" in html and shown_key in html and key not in html
