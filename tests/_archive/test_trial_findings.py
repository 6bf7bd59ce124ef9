"""Findings from trying the archive as a new operator would, each fixed and kept as a test."""

from __future__ import annotations

import json
import shutil

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import auditkit as ak


def _add(r, stream, start, stop):
    return [
        r.xadd(stream, {"type": "T", "aggregate_id": "a", "payload": json.dumps({"n": i})})
        for i in range(start, stop)
    ]


def _key(entry_id) -> tuple[int, int]:
    ms, seq = (entry_id.decode() if isinstance(entry_id, bytes) else entry_id).split("-")
    return int(ms), int(seq)


def test_repair_refuses_a_file_whose_decoded_columns_were_edited(r, tmp_path):
    _add(r, "orders", 1, 11)
    archive = ak.Archive(tmp_path)
    archive.export(r, "orders")
    path = tmp_path / archive.entries("orders")[0].file
    table = pq.read_table(path)
    index = table.schema.get_field_index("payload.n")
    table = table.set_column(index, "payload.n", pc.multiply(table.column("payload.n"), 10))
    pq.write_table(table, path, compression="zstd")
    # The manifest vouches for the bytes it recorded: repair will not vouch for others ...
    with pytest.raises(ak.ArchiveError, match="no longer matches the SHA-256"):
        archive.repair("orders", reason="operator ran repair after a file-changed finding")
    # ... nor, with the manifest gone too, for columns the entries' fields do not decode to.
    shutil.rmtree(tmp_path / "_manifest")
    with pytest.raises(ak.ArchiveError, match=r"do not decode to|no manifest"):
        archive.repair("orders", reason="and again without the manifest")
    assert not archive.verify(r, "orders").ok


def test_repair_records_the_files_the_manifest_listed_and_are_gone(r, tmp_path):
    _add(r, "orders", 0, 30)
    archive = ak.Archive(tmp_path, rows_per_file=10)
    archive.export(r, "orders")
    lost = archive.entries("orders")[1]
    (tmp_path / lost.file).unlink()
    archive.repair("orders", reason="a file was lost")
    (loss,) = archive.losses("orders").to_dict("records")
    assert (loss["count"], loss["seen_by"]) == (10, "repair")
    report = archive.verify(r, "orders")
    assert not report.ok and "loss-recorded" in set(report.findings["check"])
    archive.acknowledge("orders", loss["record"], reason="the file is gone for good")
    with pytest.raises(ak.TrimRefused, match="10 live entries below the cut"):
        archive.trim(r, "orders")  # the entries still live are in no file: never removed
    assert archive.trim(r, "orders", before=lost.first_id) == 10
