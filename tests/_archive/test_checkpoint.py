"""Checkpoints: an anchor outside the archive, against real servers and real files.

The manifest chain alone proves an archive consistent with itself: a writer who rewrites a
trimmed file and recomputes every hash passes verify. These tests play that writer (and one
who puts an older copy back) and show that a checkpoint kept elsewhere catches both.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

import auditkit as ak
from auditkit._archive.signing import signature, verifier_key

BASE_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
STREAM = "payments"


def _fill(r, n, start=0, key=STREAM):
    pipe = r.pipeline(transaction=False)
    for i in range(start, start + n):
        payload = json.dumps({"amount": 10 + i % 7, "currency": "EUR"})
        pipe.xadd(
            key,
            {"type": "Paid", "aggregate_id": f"acct-{i % 5}", "payload": payload},
            id=f"{BASE_MS + i * 1000}-0",
        )
    pipe.execute()


def _findings(report, check):
    return report.findings[report.findings["check"] == check]


def _only(report, check):
    rows = _findings(report, check)
    assert len(rows) == 1, report.findings.to_string()
    return rows.iloc[0]


def _keys(tmp_path, name="signing"):
    key = Ed25519PrivateKey.generate()
    private = tmp_path / f"{name}.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = tmp_path / f"{name}.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, private, public


@pytest.fixture
def trimmed(r, tmp_path):
    """200 entries archived in four files, verified and trimmed: the archive is the only copy."""
    _fill(r, 200)
    arc = ak.Archive(tmp_path / "arc", rows_per_file=50)
    arc.export(r, STREAM)
    assert arc.verify(r, STREAM).ok
    assert arc.trim(r, STREAM) == 200
    return arc


def _forge(arc, stream=STREAM, factor=10):
    """What the hostile writer did: amounts x10 in the first file, its SHA-256 and the whole
    chain recomputed, so that the manifest is consistent again."""
    entries = arc.entries(stream)
    first = entries[0]
    path = arc.root / first.file
    table = pq.read_table(path)
    forged_fields = []
    for flat in table.column("fields").to_pylist():
        pairs = dict(zip(flat[0::2], flat[1::2], strict=True))
        payload = json.loads(pairs[b"payload"])
        payload["amount"] *= factor
        pairs[b"payload"] = json.dumps(payload).encode()
        forged_fields.append([part for pair in pairs.items() for part in pair])
    column = table.schema.get_field_index("fields")
    table = table.set_column(
        column, table.schema.field(column), pa.array(forged_fields, table.schema.field(column).type)
    )
    amount = table.schema.get_field_index("payload.amount")
    table = table.set_column(
        amount,
        table.schema.field(amount),
        pa.array([a * factor for a in table.column(amount).to_pylist()], table.column(amount).type),
    )
    pq.write_table(table, path, compression="zstd")
    data = path.read_bytes()
    forged = [dataclasses.replace(first, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))]
    for entry in entries[1:]:
        forged.append(entry)
    previous = "0" * 64
    chain = []
    for entry in forged:
        sealed = dataclasses.replace(entry, prev=previous).sealed()
        chain.append(sealed)
        previous = sealed.hash
    with arc.layout.writer(stream) as writer:  # the forger holds the lease, as a writer
        writer.save(chain)


def test_the_forgers_rewrite_passes_a_plain_verify_and_fails_against_a_checkpoint(r, trimmed):
    kept = str(trimmed.checkpoint(STREAM))  # what the auditor took home
    _forge(trimmed)
    # The attack as reported: consistent with itself, so a plain verify passes ...
    assert trimmed.verify(r, STREAM).ok
    assert trimmed.restore(r, STREAM, "restored") == 200
    first = json.loads(r.xrange("restored", count=1)[0][1][b"payload"])
    assert first["amount"] == 100  # ... and restore serves the forgery.
    # Against the kept checkpoint it fails, naming a rewrite.
    report = trimmed.verify(r, STREAM, since=kept)
    assert not report.ok
    row = _only(report, "checkpoint-not-extended")
    assert row["severity"] == "critical"
    assert row["detail"].startswith("the checkpoint given: rewrite:")
    assert "manifest entry 3" in row["detail"]
    # Nor will a witness take a checkpoint of the forgery once it holds the honest one.


def test_a_rollback_to_an_older_copy_fails_against_a_later_checkpoint(r, tmp_path):
    _fill(r, 100)
    arc = ak.Archive(tmp_path / "arc", rows_per_file=40)
    arc.export(r, STREAM)
    shutil.copytree(tmp_path / "arc", tmp_path / "old")
    _fill(r, 100, start=100)
    arc.export(r, STREAM)
    later = arc.checkpoint(STREAM)
    assert (later.chain_length, later.entries) == (6, 200)
    assert arc.verify(r, STREAM, since=later).ok
    shutil.rmtree(tmp_path / "arc")
    shutil.copytree(tmp_path / "old", tmp_path / "arc")
    assert ak.Archive(tmp_path / "arc").verify(r, STREAM).ok  # consistent with itself
    report = ak.Archive(tmp_path / "arc").verify(r, STREAM, since=later)
    row = _only(report, "checkpoint-not-extended")
    assert not report.ok and row["severity"] == "critical"
    assert "rollback: the archive's chain has 3 manifest entries, fewer than the 6" in row["detail"]
    # Every stream verified, the checkpoint's included, catches it too.
    assert not ak.Archive(tmp_path / "arc").verify(since=later).ok


def test_an_archive_that_extends_the_checkpoint_passes(r, tmp_path):
    _fill(r, 60)
    arc = ak.Archive(tmp_path / "arc", rows_per_file=25)
    arc.export(r, STREAM)
    early = arc.checkpoint(STREAM)
    _fill(r, 60, start=60)
    arc.export(r, STREAM)
    report = arc.verify(r, STREAM, since=early)
    assert report.ok, report.findings
    assert (
        "its 6 manifest entries begin with the checkpoint's 3"
        in _only(report, "checkpoint-extended")["detail"]
    )


def test_a_stream_gone_from_the_archive_fails_against_its_checkpoint(r, tmp_path):
    _fill(r, 30)
    _fill(r, 5, key="other")
    arc = ak.Archive(tmp_path / "arc")
    arc.export(r, STREAM)
    arc.export(r, "other")
    kept = arc.checkpoint(STREAM)
    shutil.rmtree(tmp_path / "arc" / "_manifest" / STREAM)
    report = arc.verify(since=kept)  # every stream the archive holds, and the checkpoint's
    assert "rollback" in _only(report, "checkpoint-not-extended")["detail"]


def test_checkpoints_are_refused_for_what_is_not_there_or_broken(r, tmp_path):
    arc = ak.Archive(tmp_path / "arc")
    with pytest.raises(ak.ArchiveError, match="Nothing of `payments` is archived"):
        arc.checkpoint(STREAM)
    _fill(r, 30)
    arc.export(r, STREAM)
    file = next((tmp_path / "arc").rglob("*.parquet"))
    file.write_bytes(file.read_bytes()[:-4])
    with pytest.raises(ak.ArchiveError, match="Refusing to checkpoint `payments`: file-changed"):
        arc.checkpoint(STREAM)


def test_verify_since_checks_its_arguments_before_any_io(tmp_path):
    arc = ak.Archive(tmp_path / "nothing")
    with pytest.raises(ak.InvalidCheckpoint, match="first line is `hello`"):
        arc.verify(since="hello")
    other = ak.Checkpoint("other", 1, 1, "1-0", "0" * 64, datetime.now(UTC))
    with pytest.raises(ValueError, match="The checkpoint is of stream `other`, not `payments`"):
        arc.verify(stream=STREAM, since=other)
    with pytest.raises(ValueError, match="pass since="):
        arc.verify(public_key=tmp_path / "key.pem")
    assert not (tmp_path / "nothing").exists()


# ---- the text ---------------------------------------------------------------------------

_IDS = st.builds(
    lambda ms, seq: f"{ms}-{seq}", st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)
)
_SIGNATURES = st.lists(
    st.tuples(
        st.from_regex(r"[^\s+\x00-\x1f]+", fullmatch=True),
        st.binary(min_size=5, max_size=80).map(lambda b: base64.b64encode(b).decode()),
    ),
    max_size=3,
).map(tuple)
_CHECKPOINTS = st.builds(
    ak.Checkpoint,
    stream=st.text(),
    chain_length=st.integers(0, 10**15),
    entries=st.integers(0, 10**15),
    last_id=_IDS,
    head=st.binary(min_size=32, max_size=32).map(bytes.hex),
    time=st.datetimes(timezones=st.just(UTC)),
    signatures=_SIGNATURES,
)


@given(_CHECKPOINTS)
def test_the_text_round_trips(checkpoint):
    text = str(checkpoint)
    assert ak.Checkpoint.parse(text) == checkpoint
    assert str(ak.Checkpoint.parse(text)) == text
    assert ak.Checkpoint.parse(text.encode()) == checkpoint
    # What a shell's $(cat ...) or a Windows editor leaves is read back the same.
    assert ak.Checkpoint.parse(text.rstrip("\n").replace("\n", "\r\n")) == checkpoint
    # Each key stays on its line, whatever it holds.
    assert len(checkpoint.body.splitlines()) == 7
    assert checkpoint.body.isascii()


@pytest.mark.parametrize("stream", ["orders\nhead " + "0" * 64, "\u2028", "", '"', "a b\tc\r"])
def test_keys_with_newlines_and_quotes_stay_on_their_line(stream):
    checkpoint = ak.Checkpoint(stream, 1, 1, "1-0", "a" * 64, datetime(2026, 3, 1, tzinfo=UTC))
    assert checkpoint.body.splitlines()[1] == "stream " + json.dumps(stream)
    assert ak.Checkpoint.parse(str(checkpoint)).stream == stream


_GOOD = str(
    ak.Checkpoint("orders", 3, 120, "1772323200000-0", "ab" * 32, datetime(2026, 3, 1, tzinfo=UTC))
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "first line is nothing"),
        ("orders 3 ab12", "first line is `orders 3 ab12`"),
        (_GOOD.replace("chain-length 3", "chain 3"), "line 3 should be `chain-length ...`"),
        (_GOOD.replace("entries 120", "entries 0120"), "line 4: expected a whole number"),
        (_GOOD.replace("entries 120", "entries -1"), "line 4: expected a whole number"),
        (_GOOD.replace("1772323200000-0", "yesterday"), "last_id must be a stream ID"),
        (_GOOD.replace("ab" * 32, "AB" * 32), "head must be 64 lowercase hex digits"),
        (_GOOD.replace('"orders"', "orders"), "line 2: the stream must be a JSON string"),
        (_GOOD.replace('"orders"', '"ord\\u0065rs"'), "line 2 is not written as auditkit"),
        (_GOOD.replace(".000000Z", "Z"), "line 7: expected a UTC time"),
        (_GOOD + "extra line", "line 8 should be blank or the end"),
        (_GOOD.replace("time", "note x\ntime"), "line 7 should be `time ...`"),
        (_GOOD + "\n— auditkit !!!", "line 9 should be a signature"),
        (_GOOD.replace("orders", "ord\x00ers"), "line 2 holds a control character"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_a_malformed_checkpoint_is_a_one_line_error(text, message):
    with pytest.raises(ak.InvalidCheckpoint, match=message) as raised:
        ak.Checkpoint.parse(text)
    assert "\n" not in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_the_signature_lines_are_gos_signed_notes():
    # The example of golang.org/x/mod/sumdb/note's documentation: its signer key's seed,
    # its text, and the signature line and verifier key Go prints for them.
    encoded = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(encoded)[1:])
    text = (
        "If you think cryptography is the answer to your problem,\n"
        "then you don't know what your problem is.\n"
    )
    assert signature(text, "PeterNeumann", key) == (
        "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
    )
    assert verifier_key("PeterNeumann", key.public_key()) == (
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    )


# ---- signatures -------------------------------------------------------------------------


def test_a_signed_checkpoint_verifies_with_its_public_key(r, tmp_path):
    key, private, public = _keys(tmp_path)
    _fill(r, 30)
    arc = ak.Archive(tmp_path / "arc")
    arc.export(r, STREAM)
    signed = arc.checkpoint(STREAM, signing_key=private)
    assert str(signed).splitlines()[-1].startswith("— auditkit ")
    signed.check_signature(public)
    signed.check_signature(key.public_key())
    assert arc.checkpoint(STREAM, signing_key=key).signatures[0][0] == "auditkit"
    report = arc.verify(r, STREAM, since=str(signed), public_key=public)
    assert report.ok, report.findings
    assert _findings(report, "checkpoint-signature").empty
    unchecked = arc.verify(r, STREAM, since=signed)
    assert _only(unchecked, "checkpoint-signature")["severity"] == "info"


def test_a_signature_by_another_key_or_over_an_edited_text_fails(r, tmp_path):
    _, private, public = _keys(tmp_path)
    _, other_private, other_public = _keys(tmp_path, "other")
    _fill(r, 30)
    arc = ak.Archive(tmp_path / "arc")
    arc.export(r, STREAM)
    signed = arc.checkpoint(STREAM, signing_key=private)

    wrong_key = arc.verify(r, STREAM, since=signed, public_key=other_public)
    row = _only(wrong_key, "checkpoint-signature")
    assert not wrong_key.ok and row["severity"] == "critical"
    assert "not by the public key given" in row["detail"] and "another key" in row["detail"]
    with pytest.raises(ak.InvalidCheckpoint, match="another key"):
        signed.check_signature(other_public)

    # Edited after signing: the archive really holds 30 entries, the text claims 31.
    edited = str(signed).replace("entries 30", "entries 31")
    report = arc.verify(r, STREAM, since=edited, public_key=public)
    detail = _only(report, "checkpoint-signature")["detail"]
    assert "was changed after signing" in detail
    with pytest.raises(ak.InvalidCheckpoint, match="changed after signing"):
        ak.Checkpoint.parse(edited).check_signature(public)

    # A forged signature under the right key's name and hash: fails the same way.
    name, encoded = signed.signatures[0]
    raw = base64.b64decode(encoded)
    forged = dataclasses.replace(
        signed, signatures=((name, base64.b64encode(raw[:4] + os.urandom(64)).decode()),)
    )
    assert (
        "changed after signing"
        in _only(arc.verify(r, STREAM, since=forged, public_key=public), "checkpoint-signature")[
            "detail"
        ]
    )

    # Signed by the other key instead: verifies with that key only.
    resigned = ak.Checkpoint.parse(edited.split("\n\n")[0]).sign(other_private)
    resigned.check_signature(other_public)

    unsigned = arc.checkpoint(STREAM)
    with pytest.raises(ak.InvalidCheckpoint, match="not signed"):
        unsigned.check_signature(public)
    assert (
        "not signed"
        in _only(arc.verify(r, STREAM, since=unsigned, public_key=public), "checkpoint-signature")[
            "detail"
        ]
    )


def test_a_witness_can_co_sign(tmp_path):
    _, archive_key, archive_public = _keys(tmp_path)
    _, witness_key, witness_public = _keys(tmp_path, "witness")
    checkpoint = ak.Checkpoint("orders", 2, 9, "5-0", "cd" * 32, datetime(2026, 3, 1, tzinfo=UTC))
    both = checkpoint.sign(archive_key).sign(witness_key, name="witness.example/log")
    again = ak.Checkpoint.parse(str(both))
    again.check_signature(archive_public)
    again.check_signature(witness_public)
    assert [name for name, _ in again.signatures] == ["auditkit", "witness.example/log"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "Cannot read the key file"),
        (b"not a key", "holds no PEM private key"),
        ("public", "holds a public key"),
    ],
)
def test_unusable_signing_keys_say_why(tmp_path, content, message):
    _, _, public = _keys(tmp_path)
    path = tmp_path / "key.pem"
    if content == "public":
        path = public
    elif content is not None:
        path.write_bytes(content)
    checkpoint = ak.Checkpoint("s", 1, 1, "1-0", "0" * 64, datetime(2026, 3, 1, tzinfo=UTC))
    with pytest.raises(ak.InvalidKey, match=message):
        checkpoint.sign(path)


def test_a_private_key_is_not_taken_for_a_public_one(tmp_path):
    key, private, _ = _keys(tmp_path)
    checkpoint = ak.Checkpoint("s", 1, 1, "1-0", "0" * 64, datetime(2026, 3, 1, tzinfo=UTC))
    with pytest.raises(ak.InvalidKey, match="holds a private key; verify with its public half"):
        checkpoint.check_signature(private)
    with pytest.raises(ak.InvalidKey, match="public_key is a private key"):
        checkpoint.check_signature(key)


# ---- witnesses --------------------------------------------------------------------------


def test_a_redis_witness_catches_a_rewrite(r, start_redis, trimmed):
    witness = start_redis().client()
    trimmed.checkpoint(STREAM, witness=witness)
    assert witness.xlen(f"auditkit:witness:{STREAM}") == 1
    assert trimmed.verify(r, STREAM, witness=witness).ok
    _forge(trimmed)
    report = trimmed.verify(r, STREAM, witness=witness)
    row = _only(report, "checkpoint-not-extended")
    assert not report.ok and "rewrite" in row["detail"]
    assert row["detail"].startswith("the latest checkpoint in the Redis witness")
    # The witness keeps what it has: it takes no checkpoint of the forgery.
    with pytest.raises(ak.WitnessRefused, match="does not extend the latest checkpoint"):
        trimmed.checkpoint(STREAM, witness=witness)
    assert witness.xlen(f"auditkit:witness:{STREAM}") == 1


def test_a_folder_witness_catches_a_rollback(r, tmp_path):
    _, private, public = _keys(tmp_path)
    witness = tmp_path / "witness"
    _fill(r, 40)
    arc = ak.Archive(tmp_path / "arc", rows_per_file=20)
    arc.export(r, STREAM)
    arc.checkpoint(STREAM, witness=witness, signing_key=private)
    shutil.copytree(tmp_path / "arc", tmp_path / "old")
    _fill(r, 40, start=40)
    arc.export(r, STREAM)
    arc.checkpoint(STREAM, witness=str(witness), signing_key=private)
    kept = sorted(witness.rglob("*.checkpoint"))
    assert [p.name[:12] for p in kept] == ["000000000002", "000000000004"]
    assert ak.Checkpoint.parse(kept[-1].read_text()).entries == 80
    assert arc.verify(r, STREAM, witness=witness, public_key=public).ok

    shutil.rmtree(tmp_path / "arc")
    shutil.copytree(tmp_path / "old", tmp_path / "arc")
    report = ak.Archive(tmp_path / "arc").verify(r, witness=witness, public_key=public)
    assert "rollback" in _only(report, "checkpoint-not-extended")["detail"]
    # The stream lost from the archive altogether: named, it is checked against the witness.
    shutil.rmtree(tmp_path / "arc" / "_manifest" / STREAM)
    report = ak.Archive(tmp_path / "arc").verify(stream=STREAM, witness=witness)
    assert "rollback" in _only(report, "checkpoint-not-extended")["detail"]


def test_a_witness_inside_the_archive_is_refused(r, tmp_path):
    _fill(r, 10)
    arc = ak.Archive(tmp_path / "arc")
    arc.export(r, STREAM)
    with pytest.raises(ValueError, match="is inside the archive"):
        arc.checkpoint(STREAM, witness=tmp_path / "arc" / "witness")


def test_an_empty_witness_is_a_warning(r, tmp_path):
    _fill(r, 10)
    arc = ak.Archive(tmp_path / "arc")
    arc.export(r, STREAM)
    report = arc.verify(r, STREAM, witness=tmp_path / "empty")
    assert report.ok
    assert _only(report, "checkpoint-witness")["severity"] == "warning"


# ---- the command line -------------------------------------------------------------------


def _auditkit(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "auditkit", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )


def test_the_command_line_end_to_end(redis_server, r, tmp_path):
    _, private, public = _keys(tmp_path)
    _fill(r, 60)
    archive = ["--archive", tmp_path / "arc"]
    url = ["--redis-url", redis_server.url]
    assert _auditkit("export", STREAM, *archive, *url, "--rows-per-file", "25").returncode == 0
    shutil.copytree(tmp_path / "arc", tmp_path / "old")
    _fill(r, 60, start=60)
    assert _auditkit("export", STREAM, *archive, *url, "--rows-per-file", "25").returncode == 0

    kept = tmp_path / "payments.checkpoint"
    done = _auditkit(
        "checkpoint",
        STREAM,
        *archive,
        "--sign-key",
        private,
        "--witness",
        redis_server.url,
        "--output",
        kept,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == kept.read_text()
    assert ak.Checkpoint.parse(done.stdout).entries == 120
    assert r.xlen(f"auditkit:witness:{STREAM}") == 1

    # verify prints the findings, then the current checkpoint for the audit record.
    done = _auditkit("verify", STREAM, *archive, *url, "--since", kept, "--public-key", public)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checkpoint-extended" in done.stdout
    current = ak.Checkpoint.parse(done.stdout.split("\n\n", 1)[1])
    assert (current.chain_length, current.entries) == (6, 120)
    done = _auditkit(
        "verify",
        STREAM,
        *archive,
        "--offline",
        "--format",
        "json",
        "--since",
        kept.read_text().rstrip("\n"),
    )
    result = json.loads(done.stdout)
    assert done.returncode == 0 and result["ok"]
    assert ak.Checkpoint.parse(result["checkpoints"][0]).head == current.head

    # The older copy put back: verify fails naming the rollback, and prints no checkpoint.
    shutil.rmtree(tmp_path / "arc")
    shutil.copytree(tmp_path / "old", tmp_path / "arc")
    done = _auditkit("verify", STREAM, *archive, *url, "--since", kept)
    assert done.returncode == 1
    assert "checkpoint-not-extended" in done.stdout and "rollback" in done.stdout
    assert "auditkit-checkpoint/v1" not in done.stdout
    done = _auditkit("verify", STREAM, *archive, *url, "--witness", redis_server.url)
    assert done.returncode == 1 and "rollback" in done.stdout
    done = _auditkit("checkpoint", STREAM, *archive, "--witness", redis_server.url)
    assert done.returncode == 3
    assert "does not extend the latest checkpoint" in done.stderr

    # Errors in the command line's words, one line each, exit 2.
    for args, words in [
        (["--since", tmp_path / "missing.txt"], "--since `"),
        (["--since", "auditkit-checkpoint/v1\nnonsense"], "line 2 should be `stream ...`"),
        (["--since", kept, "--public-key", tmp_path / "nope.pem"], "Cannot read the key file"),
        (["--public-key", public], "--public-key checks checkpoints: pass --since"),
    ]:
        done = _auditkit("verify", STREAM, *archive, "--offline", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr

    help_text = " ".join(_auditkit("checkpoint", "--help").stdout.split())
    assert "--sign-key signing.pem" in help_text and "--witness redis://" in help_text
    help_text = " ".join(_auditkit("verify", "--help").stdout.split())
    assert "--since orders-2026-03-01.checkpoint" in help_text
    assert "--public-key signing.pub.pem" in help_text


def test_trim_refuses_an_archive_that_no_longer_extends_a_kept_checkpoint(
    redis_server, r, tmp_path, capsys
):
    from auditkit._cli.main import main

    _, private, public = _keys(tmp_path)
    witness = tmp_path / "witness"
    _fill(r, 100)
    arc = ak.Archive(tmp_path / "arc", rows_per_file=40)
    arc.export(r, STREAM)
    shutil.copytree(tmp_path / "arc", tmp_path / "old")
    _fill(r, 100, start=100)
    arc.export(r, STREAM)
    later = arc.checkpoint(STREAM, witness=witness, signing_key=private)
    kept = tmp_path / "payments.checkpoint"
    kept.write_text(str(later))
    shutil.copytree(tmp_path / "arc", tmp_path / "new")
    shutil.rmtree(tmp_path / "arc")
    shutil.copytree(tmp_path / "old", tmp_path / "arc")  # rolled back: 100 entries archived
    rolled = ak.Archive(tmp_path / "arc")
    assert rolled.plan_trim(r, STREAM).entries == 100  # consistent with itself: it would trim
    with pytest.raises(ak.TrimRefused, match=r"rollback.*checkpoint-not-extended"):
        rolled.trim(r, STREAM, since=later)
    with pytest.raises(ak.TrimRefused, match=r"latest checkpoint in .*rollback"):
        rolled.trim(r, STREAM, witness=witness, public_key=public, dry_run=True)
    argv = ["trim", STREAM, "--archive", str(tmp_path / "arc"), "--redis-url", redis_server.url]
    assert main([*argv, "--since", str(kept), "--dry-run"]) == 3
    err = capsys.readouterr().err
    assert "rollback" in err and "auditkit verify --since" in err and len(err.splitlines()) == 1
    assert main([*argv, "--public-key", str(public)]) == 2  # nothing to check it against
    assert "pass --since or --witness" in capsys.readouterr().err
    assert r.xlen(STREAM) == 200  # nothing was removed
    shutil.rmtree(tmp_path / "arc")
    shutil.copytree(tmp_path / "new", tmp_path / "arc")  # the archive as the checkpoint saw it
    assert main([*argv, "--since", str(kept), "--witness", str(witness)]) == 0
    assert "trimmed 200" in capsys.readouterr().out and r.xlen(STREAM) == 0
