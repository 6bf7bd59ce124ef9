"""A damaged or lost manifest stops export: it never erases archived (perhaps trimmed)
history, and never appends to a broken chain. `repair` rebuilds it from the files, and the
chain says it was rebuilt."""

from __future__ import annotations

import json

import pytest
from test_archive import BASE_MS, _fill

import auditkit as ak

DAY = 86_400_000


def _archived_and_trimmed(r, tmp_path):
    """Three days of entries archived in three files, verified and trimmed from the stream."""
    for day in range(3):
        _fill(r, n=100, start_ms=BASE_MS + day * DAY)
    archive = ak.Archive(tmp_path, rows_per_file=100)
    archive.export(r, "orders")
    assert archive.verify(r, "orders").ok
    assert archive.trim(r, "orders", allow_pending=True) > 0
    _fill(r, n=10, start_ms=BASE_MS + 5 * DAY)  # new entries for the next export
    return archive


def _manifest(tmp_path):
    (version,) = tmp_path.glob("_manifest/orders/*.jsonl")
    return version


def _data_files(tmp_path):
    return sorted(p for p in tmp_path.rglob("*.parquet") if not p.name.startswith("."))


def test_a_lost_manifest_stops_export_and_keeps_every_file(r, tmp_path):
    archive = _archived_and_trimmed(r, tmp_path)
    files = _data_files(tmp_path)
    assert len(files) == 3
    _manifest(tmp_path).unlink()
    with pytest.raises(
        ak.ArchiveDamaged, match=r"3 file\(s\) of `orders` its manifest should list"
    ):
        archive.export(r, "orders")
    assert _data_files(tmp_path) == files  # the trimmed history is still there
    assert not archive.verify(r, "orders").ok
    _repaired(archive, r, rows=300)


def test_an_unreadable_manifest_line_stops_export(r, tmp_path):
    archive = _archived_and_trimmed(r, tmp_path)
    files = _data_files(tmp_path)
    manifest = _manifest(tmp_path)
    lines = manifest.read_text().splitlines(keepends=True)  # a header, then the records
    manifest.write_text(lines[0] + "{not json\n" + "".join(lines[2:]))
    before = manifest.read_text()
    with pytest.raises(ak.ArchiveError, match=r"unreadable line\(s\) \[2\]"):
        archive.export(r, "orders")
    assert _data_files(tmp_path) == files
    assert manifest.read_text() == before  # nothing appended to the broken chain
    _repaired(archive, r, rows=300)


def test_a_manifest_whose_chain_is_broken_stops_export(r, tmp_path):
    archive = _archived_and_trimmed(r, tmp_path)
    manifest = _manifest(tmp_path)
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text(lines[0] + lines[1] + lines[3])  # a record left out: the chain breaks
    with pytest.raises(ak.ArchiveDamaged, match="the hash chain breaks at record 2"):
        archive.export(r, "orders")
    assert len(_data_files(tmp_path)) == 3
    _repaired(archive, r, rows=300)


def test_more_unlisted_files_than_a_crash_leaves_are_not_removed(r, tmp_path):
    archive = _archived_and_trimmed(r, tmp_path)
    files = _data_files(tmp_path)
    # Copies of a listed file under another month's folder, named past the horizon, by a
    # writer whose manifest is missing: not provably anybody's leftovers.
    for n in range(4):
        target = tmp_path / files[0].parent.parent / f"month=2027-0{n + 1}"
        target.mkdir()
        name = f"{BASE_MS + 400 * DAY + n}-0_{BASE_MS + 400 * DAY + n}-0.e9.parquet"
        (target / name).write_bytes(files[0].read_bytes())
    with pytest.raises(ak.ArchiveDamaged, match=r"4 file\(s\) of `orders` its manifest should"):
        archive.export(r, "orders")
    assert len(_data_files(tmp_path)) == 7


def test_a_manifest_cut_short_stops_export(r, tmp_path):
    # Its last entry gone, the chain is intact but shorter: that entry's file must not pass
    # for a killed export's leftover and be removed.
    archive = _archived_and_trimmed(r, tmp_path)
    manifest = _manifest(tmp_path)
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(lines[:-1]))
    with pytest.raises(ak.ArchiveDamaged, match="records were cut from its end"):
        archive.export(r, "orders")
    assert len(_data_files(tmp_path)) == 3
    _repaired(archive, r, rows=300)


def _repaired(archive, r, *, rows):
    """repair rebuilds the chain from the files; verify then says it was rebuilt, and
    export goes on where the files end."""
    report = archive.repair("orders", reason="manifest damaged in the test")
    assert (report.files, report.rows, report.left_out) == (3, rows, [])
    verified = archive.verify(r, "orders")
    assert verified.ok, verified.findings
    rebuilt = verified.findings.set_index("check").loc["manifest-rebuilt", "detail"]
    assert "manifest damaged in the test" in rebuilt
    assert archive.export(r, "orders").rows == 10
    assert archive.verify(r, "orders").ok


@pytest.mark.parametrize("fault", ["flipped-byte", "deleted"])
def test_nothing_is_answered_from_a_file_that_is_not_what_was_archived(r, tmp_path, fault):
    from auditkit._cli.main import main

    for i in range(30):
        body = json.dumps({"concept:name": "Check", "case": f"case-{i % 4}"})
        r.xadd("receipt", {"body": body}, id=f"{1_772_323_200_000 + i}-0")
    envelope = {
        "payload": "body",
        "event_type": "payload.concept:name",
        "aggregate_id": "payload.case",
    }
    arc = ak.Archive(tmp_path / "arc", envelope=envelope, rows_per_file=10)
    arc.export(r, "receipt")
    first = sorted((tmp_path / "arc").rglob("*.parquet"))[0]
    if fault == "deleted":
        first.unlink()
    else:
        data = bytearray(first.read_bytes())
        data[len(data) // 2] ^= 0x01  # inside the data pages: the file still parses
        first.write_bytes(bytes(data))
    damaged = ak.Archive(tmp_path / "arc")
    for read in (
        lambda: damaged.events_table(stream="receipt"),
        lambda: damaged.events_table(stream="receipt", live=r),
        lambda: damaged.duckdb().execute("select count(*) from events").fetchall(),
        lambda: list(damaged.iter_tables(stream="receipt")),
    ):
        with pytest.raises(ak.ArchiveDamaged, match=rf"`{first.name}`|{first.parent.name}"):
            read()
    url = ["--redis-url", f"redis://127.0.0.1:{r.connection_pool.connection_kwargs['port']}/0"]
    r.xtrim("receipt", maxlen=0, approximate=False)
    query = ["query", "--archive", str(tmp_path / "arc"), "select count(*) from events"]
    assert main(query) == 3
    state = ["state", "receipt", "case-1", "--archive", str(tmp_path / "arc"), *url]
    assert main(state) == 3
    # The audit still runs: the archive's verification names the damage.
    findings = ak.audit(r, "receipt", envelope=envelope, archive=damaged)
    assert {"file-changed", "file-missing"} & set(findings["check"]), findings["check"].tolist()
