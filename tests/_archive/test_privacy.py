"""Personal data on export: dropped or pseudonymised before anything is written."""

import json

import pyarrow.parquet as pq
import pytest

import auditkit as ak

BASE_MS = 1_772_323_200_000
SECRET_EMAIL = "ann.smith@example.com"
SECRET_NAME = "Ann Smith"
SECRET_IBAN = "DE44500105175407324931"


def _customers(r, n=40, start=0):
    for i in range(start, start + n):
        r.xadd(
            "customers",
            {
                "type": "CustomerRegistered",
                "aggregate_id": f"c-{i % 4}",
                "email": SECRET_EMAIL if i % 4 == 0 else f"user{i}@example.com",
                "payload": json.dumps(
                    {
                        "name": SECRET_NAME if i % 4 == 0 else f"user {i}",
                        "bank": {"iban": SECRET_IBAN},
                        "plan": "basic",
                    }
                ),
            },
            id=f"{BASE_MS + i}-0",
        )


def _all_bytes(root):
    """Every file's bytes (footers, statistics, manifest, state) and every decoded value
    (data pages are compressed: their plain text shows only once read)."""
    raw = b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())
    values = b"".join(
        repr(pq.read_table(p).to_pylist()).encode() + repr(pq.read_metadata(p).to_dict()).encode()
        for p in root.rglob("*.parquet")
    )
    return raw + values


def test_nothing_personal_reaches_the_files(r, tmp_path):
    _customers(r)
    arc = ak.Archive(
        tmp_path, drop=["payload.bank.iban"], pseudonymize=["email", "payload.name"], key=b"k-1"
    )
    arc.export(r, "customers")
    written = _all_bytes(tmp_path)  # data, `fields`, statistics, metadata, manifest, state
    for secret in (SECRET_EMAIL, SECRET_NAME, SECRET_IBAN, "k-1"):
        assert secret.encode() not in written, secret
    table = pq.read_table(next(tmp_path.rglob("*.parquet")))
    emails = table.column("email").to_pylist()
    assert all(e.startswith("hmac:") for e in emails)
    assert emails[0] == emails[4] != emails[1]  # the same person keeps one pseudonym
    assert "payload.bank.iban" not in table.column_names
    assert table.column("payload.plan").to_pylist()[0] == "basic"
    assert arc.verify(r, "customers").ok


def test_the_key_decides_the_pseudonyms_and_is_never_shown(r, tmp_path):
    _customers(r, n=4)
    one = ak.Archive(tmp_path / "one", pseudonymize=["email"], key="first key")
    two = ak.Archive(tmp_path / "two", pseudonymize=["email"], key="second key")
    one.export(r, "customers")
    two.export(r, "customers")
    first = pq.read_table(next((tmp_path / "one").rglob("*.parquet"))).column("email")[0].as_py()
    second = pq.read_table(next((tmp_path / "two").rglob("*.parquet"))).column("email")[0].as_py()
    assert first != second
    assert "first key" not in repr(one) and "first key" not in repr(one.privacy)
    with pytest.raises(ValueError, match="needs a key"):
        ak.Archive(tmp_path, pseudonymize=["email"])


def test_verify_without_the_key_says_it_could_not_compare_and_is_not_ok(r, tmp_path):
    _customers(r)
    ak.Archive(tmp_path, pseudonymize=["email"], key=b"k").export(r, "customers")
    report = ak.Archive(tmp_path).verify(r, "customers")
    assert not report.ok
    finding = report.findings.set_index("check").loc["content-not-compared"]
    assert finding["severity"] == "error" and "needs the same key" in finding["detail"]
    assert ak.Archive(tmp_path).verify(None, "customers").ok  # offline: files and chain only
    with_key = ak.Archive(tmp_path, key=b"k")  # the rules come from the archive
    report = with_key.verify(r, "customers")
    assert report.ok and "content-not-compared" not in set(report.findings["check"])
    wrong = ak.Archive(tmp_path, key=b"another")
    assert "not the key" in wrong.verify(r, "customers").findings["detail"].str.cat()
    with pytest.raises(ak.TrimRefused, match="cannot be compared"):
        ak.Archive(tmp_path).trim(r, "customers")


def test_the_archive_keeps_its_rules_for_every_later_export(r, tmp_path):
    _customers(r, n=4)
    ak.Archive(tmp_path, drop=["payload.name"], pseudonymize=["email"], key=b"k").export(
        r, "customers"
    )
    _customers(r, n=4, start=4)
    # A later export without the rules (a cron job): refused without the key ...
    with pytest.raises(ak.ArchiveError, match=r"email pseudonymised; export needs the same key"):
        ak.Archive(tmp_path).export(r, "customers")
    # ... refused with other rules or another key, and nothing written ...
    with pytest.raises(ak.ArchiveError, match="not the rules given"):
        ak.Archive(tmp_path, drop=["iban"], key=b"k").export(r, "customers")
    with pytest.raises(ak.ArchiveError, match="not the key"):
        ak.Archive(tmp_path, key=b"other").export(r, "customers")
    # ... and with the key alone, the recorded rules apply.
    assert ak.Archive(tmp_path, key=b"k").export(r, "customers").rows == 4
    for path in tmp_path.rglob("*.parquet"):
        table = pq.read_table(path)
        assert "payload.name" not in table.column_names
        assert all(v.startswith("hmac:") for v in table.column("email").to_pylist())
        raw = b"".join(v for row in table.column("fields").to_pylist() for v in row)
        assert b"@example.com" not in raw and b"user " not in raw


def test_the_live_tail_beside_the_archive_follows_its_rules(r, tmp_path):
    _customers(r, n=4)
    ak.Archive(tmp_path, drop=["payload.name"], pseudonymize=["email"], key=b"k").export(
        r, "customers"
    )
    _customers(r, n=3, start=4)
    with pytest.raises(ak.ArchiveError, match="the live tail needs the same key"):
        ak.Archive(tmp_path).duckdb(live=r)
    con = ak.Archive(tmp_path, key=b"k").duckdb(live=r)
    emails = [v for (v,) in con.execute("select email from events").fetchall()]
    assert len(emails) == 7 and all(v.startswith("hmac:") for v in emails)
    assert "payload.name" not in [c for (c, *_) in con.execute("describe events").fetchall()]
    assert ak.Archive(tmp_path).duckdb().execute("select count(*) from events").fetchone() == (4,)


def test_a_custom_envelopes_archive_verifies_and_trims_under_its_rules(r, tmp_path):
    # A process log inside one JSON field `body`; the resource is personal.
    for i in range(20):
        body = {"concept:name": "Check", "case": f"case-{i % 4}", "org:resource": f"R{i % 3}"}
        r.xadd("receipt", {"body": json.dumps(body)}, id=f"{1_772_323_200_000 + i}-0")
    envelope = {
        "payload": "body",
        "event_type": "payload.concept:name",
        "aggregate_id": "payload.case",
    }
    key = "k" * 32
    ak.Archive(tmp_path, envelope=envelope, pseudonymize=["payload.org:resource"], key=key).export(
        r, "receipt"
    )
    # Later, as an auditor would: the archive's own envelope and rules, the key alone given.
    auditor = ak.Archive(tmp_path, key=key)
    report = auditor.verify(r, "receipt")
    assert report.ok, report.findings[["check", "detail"]].head(3).to_string()
    assert "conflict" not in set(report.findings["check"])
    assert auditor.trim(r, "receipt") == 20
