"""Any stream key, archived and read back: glob and SQL characters, long keys, case, bytes.

Keys reach file names (`encode_key`), DuckDB (`Archive.duckdb`), JSON (the manifest) and
Redis again (restore, trim). Each must keep every key apart from every other and name the
same key on the way back, on real servers and real files.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import auditkit as ak
from auditkit._archive.manifest import encode_key
from auditkit._cli import main
from auditkit._redis.text import key_bytes, key_text, shown

BASE_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
NOT_UTF8 = key_text(b"orders:\xff")

KEYS = [
    "G:orders",
    "G:orders*",
    "G:orders[1]",
    "G:a?",
    "{tag}orders",
    'it\'s "quoted"',
    "a/b\\c",
    "%41",
    "A",  # what `%41` would name if percent-decoded by a reader
    ".hidden",
    "..",
    "spaces and\ttabs",
    "new\nline",
    "k" * 300,
    "x" * 100_000,
    "orders",
    "Orders",
    "ORDERS",
    NOT_UTF8,
    key_text(b"\xc3\x28 \xed\xa0\x80"),  # an invalid sequence, an encoded surrogate
]
SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:@+,%~")


def _fill(r, key, n, start_ms=BASE_MS):
    for i in range(n):
        r.execute_command(
            "XADD",
            key_bytes(key),
            f"{start_ms + i}-0",
            *(b"type", b"Paid", b"aggregate_id", b"a-%d" % i),
            *(b"payload", json.dumps({"n": i, "key": len(key)}).encode()),
        )


def _entries(r, key):
    return r.xrange(key_bytes(key))


@pytest.fixture
def client(r, redis_server):
    """auditkit's own client of the flushed test server (`r` writes with bytes keys)."""
    client = ak.connect(redis_server.url)
    yield client
    client.close()


def _filled(r, keys=KEYS):
    """Each key with a different number of entries: {key: count}."""
    counts = {key: 2 + i for i, key in enumerate(keys)}
    for key, n in counts.items():
        _fill(r, key, n)
    return counts


def _counts(connection):
    rows = connection.sql("select stream, count(*) from events group by stream").fetchall()
    return dict(rows)


@pytest.mark.parametrize("root", ["arc", "arch[1]", "a*b", "a,b", "it's", "{x}?"])
def test_every_key_is_archived_counted_restored_and_trimmed_apart(
    r, client, tmp_path, root, monkeypatch
):
    counts = _filled(r)
    arc = ak.Archive(tmp_path / root)
    for key in KEYS:
        assert arc.export(client, key).rows == counts[key], key
    assert arc.streams() == sorted(KEYS)
    assert arc.verify(client).ok
    folders = {encode_key(key).lower() for key in KEYS}
    assert len(folders) == len(KEYS)  # apart even where a file system ignores case
    if root == "arc":
        # The files are read by DuckDB itself, by the list the manifests hold.
        monkeypatch.setattr(ak.Archive, "_archived_tables", _not_called)
    # The `stream` column shows a byte that is not UTF-8 as `\xNN`.
    expected = {shown(key): n for key, n in counts.items()}
    assert _counts(arc.duckdb()) == expected
    for key in KEYS:
        _fill(r, key, 1, start_ms=BASE_MS + 1_000_000)  # one more, live only
    assert _counts(arc.duckdb(live=client)) == {k: n + 1 for k, n in expected.items()}
    for key in ("G:orders", "G:orders*", "orders", "Orders", NOT_UTF8, "x" * 100_000):
        table = arc.events_table(stream=key)
        assert table.num_rows == counts[key]
        assert set(table.column("stream").to_pylist()) == {shown(key)}
    for key in KEYS:
        target = key + ":restored"
        assert arc.restore(client, key, target) == counts[key]
        assert _entries(r, target) == _entries(r, key)[:-1]
        assert arc.trim(client, key) == counts[key]
        assert r.xlen(key_bytes(key)) == 1  # the live entry stays
    assert arc.verify(client).ok


def _not_called(self, files):
    raise AssertionError(f"read through pyarrow: {files[:3]}")


@pytest.mark.heavy
def test_object_storage_keeps_keys_apart(r, client, s3_server, bucket):
    keys = ["G:orders", "G:orders*", "G:orders[1]", "a/b\\c", "Orders", "orders", "k" * 300]
    keys.append(NOT_UTF8)
    counts = _filled(r, keys)
    arc = ak.Archive(f"s3://{bucket}/a*b[1]", filesystem=s3_server.filesystem())
    for key in keys:
        assert arc.export(client, key).rows == counts[key]
    assert arc.streams() == sorted(keys)
    assert arc.verify(client).ok
    assert _counts(arc.duckdb(live=client)) == {shown(k): n for k, n in counts.items()}
    for key in keys:
        assert arc.events_table(stream=key).num_rows == counts[key]
        assert arc.restore(client, key, key + "~") == counts[key]
        assert _entries(r, key + "~") == _entries(r, key)
        assert arc.trim(client, key) == counts[key]


def test_the_empty_key_is_a_stream_like_any_other(r, client, tmp_path):
    counts = _filled(r, ["", "\x00", "%00"])
    arc = ak.Archive(tmp_path / "arc")
    for key in counts:
        assert arc.export(client, key).rows == counts[key]
    assert arc.streams() == sorted(counts)
    assert _counts(arc.duckdb()) == counts
    assert arc.verify(client).ok


# ---- keys that are not UTF-8 ------------------------------------------------------------


def test_a_key_that_is_not_utf8_is_listed_and_names_itself_back(r, client, tmp_path):
    _fill(r, NOT_UTF8, 3)
    _fill(r, "orders:\\xff", 2)  # the same key as shown: another key
    listed = ak.streams(client)
    assert sorted(listed["key"]) == sorted([NOT_UTF8, "orders:\\xff"])
    assert dict(zip(listed["key"], listed["length"], strict=True))[NOT_UTF8] == 3
    key = next(k for k in listed["key"] if k != "orders:\\xff")
    table = ak.read_arrow(client, key)
    assert table.num_rows == 3
    assert table.column("stream").to_pylist() == ["orders:\\xff"] * 3
    assert ak.read_arrow(client, ["orders:\\xff"]).num_rows == 2
    arc = ak.Archive(tmp_path / "arc")
    assert arc.export(client, key).rows == 3
    assert arc.streams() == [NOT_UTF8]  # through the manifest's JSON
    manifest = arc.layout.versions(key)[-1][1]
    assert json.loads((tmp_path / "arc" / manifest).read_text().splitlines()[0])["stream"] == key
    assert arc.verify(client, key).ok
    assert arc.restore(client, key, key + "\udcfe") == 3
    assert r.xrange(b"orders:\xff\xfe") == r.xrange(b"orders:\xff")
    assert arc.trim(client, key) == 3
    assert r.xlen(b"orders:\xff") == 0 and r.xlen(b"orders:\\xff") == 2


def test_a_client_that_sends_text_strictly_says_what_to_use(r):
    _fill(r, NOT_UTF8, 1)
    with pytest.raises(ak.AuditKitError, match=r"auditkit\.connect") as caught:
        ak.read_arrow(r, NOT_UTF8)  # redis-py's default: hiredis encodes str strictly
    assert "orders:\\xff" in str(caught.value) and "\n" not in str(caught.value)


@pytest.fixture
def cli(redis_server, tmp_path, capsys):
    def run(*args):
        code = main([*args, "--redis-url", redis_server.url])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_the_command_line_shows_such_a_key_and_says_how_to_name_it(r, cli, tmp_path):
    _fill(r, NOT_UTF8, 3)
    code, out, _ = cli("streams")
    assert code == 0 and "orders:\\xff" in out
    code, out, _ = cli("streams", "--format", "json")
    assert json.loads(out)[0]["key"] == "orders:\\xff"
    archive = str(tmp_path / "arc")
    code, _, err = cli("export", "orders:\\xff", "--archive", archive)  # as shown
    assert code != 0
    assert err.count("\n") == 1 and "$'orders:\\xff'" in err
    # The bytes themselves, as a shell's $'orders:\xff' passes them.
    code, out, _ = cli("export", NOT_UTF8, "--archive", archive)
    assert code == 0 and out.startswith("orders:\\xff: 3 entries")
    code, out, err = cli("verify", NOT_UTF8, "--archive", archive)
    assert code == 0, err
    code, out, _ = cli("trim", NOT_UTF8, "--archive", archive)
    assert code == 0 and r.xlen(b"orders:\xff") == 0


# ---- encode_key ------------------------------------------------------------------------

any_key = st.one_of(
    st.text(),
    st.text(alphabet="aAbB.%~*?[]{}/\\ \t\n'\"", max_size=12),
    st.binary().map(key_text),
    st.binary(min_size=60, max_size=400).map(key_text),
    st.text(alphabet="xX.%", min_size=80, max_size=200),
)


@settings(max_examples=500, deadline=None)
@given(any_key, any_key)
@example("", "\x00")
@example("", "%00")
@example("x" * 200, "x" * 201)
@example("a.", "a%2E")
@example("Orders", "orders")
def test_encode_key_gives_distinct_keys_distinct_names_whatever_the_case(a, b):
    if a != b:
        assert encode_key(a) != encode_key(b)
        assert encode_key(a).lower() != encode_key(b).lower()


@settings(max_examples=500, deadline=None)
@given(any_key)
@example("")
@example(".")
@example("..")
@example("x" * 100_000)
def test_encode_key_is_a_short_safe_name(key):
    name = encode_key(key)
    assert name and set(name) <= SAFE
    assert len(name) <= 120
    assert not name.startswith(".") and not name.endswith(".")
    assert name == encode_key(key)  # the same every time: folders are found again


def test_encode_key_keeps_lowercase_keys_readable():
    assert encode_key("orders:eu-1") == "orders:eu-1"
    assert encode_key("G:orders*").startswith("G:orders%2A~")
    assert encode_key(NOT_UTF8) == "orders:%FF"
