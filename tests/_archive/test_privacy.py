"""Personal data on export: dropped or pseudonymised before anything is written."""

import json

import pyarrow.parquet as pq
import pytest

import auditkit as ak

BASE_MS = 1_772_323_200_000
SECRET_EMAIL = "ann.smith@example.com"
SECRET_NAME = "Ann Smith"
SECRET_IBAN = "DE44500105175407324931"


def _customers(r, n=40):
    for i in range(n):
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


def test_verify_without_the_key_counts_but_does_not_compare(r, tmp_path):
    _customers(r)
    ak.Archive(tmp_path, pseudonymize=["email"], key=b"k").export(r, "customers")
    report = ak.Archive(tmp_path).verify(r, "customers")
    assert report.ok
    assert "content-not-compared" in set(report.findings["check"])
    # With the key, a changed live entry is still a conflict.
    with_key = ak.Archive(tmp_path, pseudonymize=["email"], key=b"k")
    assert "content-not-compared" not in set(with_key.verify(r, "customers").findings["check"])
