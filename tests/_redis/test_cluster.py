"""Redis Cluster: a real three-primary cluster; streams on every shard, slots moving mid-read."""

import json
from pathlib import Path

import pandas as pd
import pytest
from redis.cluster import RedisCluster

import auditkit as ak
import auditkit._archive.export
import auditkit._redis.pages
from auditkit._demo import demo_projection
from auditkit._redis.connection import address_of, servers
from auditkit._redis.pages import iter_pages

BASE_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z


def _fill(client, key, n, *, start_ms=BASE_MS):
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(
            key,
            {
                "type": ["Placed", "Paid", "Shipped"][i % 3],
                "aggregate_id": f"order-{i % 40}",
                "payload": json.dumps({"n": i}),
            },
            id=f"{start_ms + i * 1_000}-0",
        )
        if len(pipe) >= 2_000:
            pipe.execute()
    pipe.execute()


def _keys_on_every_node(cluster, count=3):
    """Stream names whose slots lie on each of the primaries, `count` per primary."""
    found = {index: [] for index in range(len(cluster.nodes))}
    i = 0
    while any(len(keys) < count for keys in found.values()):
        key = f"orders:{i}"
        keys = found[cluster.index_of(key)]
        if len(keys) < count:
            keys.append(key)
        i += 1
    return found


def _xrange(client, key):
    return client.xrange(key)


def test_connect_recognises_a_cluster_node(redis_cluster, rc):
    for node in redis_cluster.nodes:
        client = ak.connect(node.url)
        assert isinstance(client, RedisCluster)
        assert len(client.get_primaries()) == 3
        assert "cluster of 3 primaries" in address_of(client)
    assert ak.connect(rc) is rc
    with pytest.raises(ak.ConnectionFailed, match=r"only database 0.*Drop `/3`"):
        ak.connect(redis_cluster.url.replace("/0", "/3"))


def test_a_single_server_stays_a_plain_client(r, redis_server):
    client = ak.connect(redis_server.url)
    assert not isinstance(client, RedisCluster)


def test_streams_are_discovered_on_every_primary(redis_cluster, rc):
    placed = _keys_on_every_node(redis_cluster)
    every = sorted(key for keys in placed.values() for key in keys)
    for n, key in enumerate(every):
        _fill(rc, key, 10 + n)
    rc.set("orders:not-a-stream", "x")
    found = ak.streams(rc, "orders:*")
    assert sorted(found["key"]) == every
    assert dict(zip(found["key"], found["length"], strict=True)) == {
        key: 10 + n for n, key in enumerate(every)
    }
    # Each primary really holds its share: the discovery crossed all three.
    for index, keys in placed.items():
        own = sorted(k.decode() for k in redis_cluster.node_client(index).scan_iter(_type="stream"))
        assert own == sorted(keys)


def test_loading_across_shards_equals_xrange(redis_cluster, rc):
    placed = _keys_on_every_node(redis_cluster, count=1)
    keys = sorted(key for group in placed.values() for key in group)
    for key in keys:
        _fill(rc, key, 12_000)  # more than two pages each
    table = ak.read_arrow(rc, "orders:*")
    assert table.num_rows == 36_000
    frame = table.select(["stream", "id"]).to_pandas()
    for key in keys:
        expected = [entry_id.decode() for entry_id, _ in _xrange(rc, key)]
        assert frame.loc[frame["stream"] == key, "id"].tolist() == expected


def test_hash_tagged_streams_share_a_slot_and_load_together(redis_cluster, rc):
    keys = ["{acct-7}:events", "{acct-7}:commands"]
    for key in keys:
        _fill(rc, key, 50)
    assert len({redis_cluster.index_of(key) for key in keys}) == 1
    table = ak.read_arrow(rc, keys)
    assert table.num_rows == 100
    assert sorted(set(table.column("stream").to_pylist())) == sorted(keys)


@pytest.mark.parametrize("finish_after", [1, None], ids=["moved", "ask-then-moved"])
def test_a_read_follows_its_slot_through_a_reshard(redis_cluster, rc, finish_after):
    key = "orders:resharded"
    _fill(rc, key, 23_456)
    expected = [entry_id for entry_id, _ in _xrange(rc, key)]
    source = redis_cluster.index_of(key)
    target = (source + 1) % 3
    seen, move = [], None
    for pages, page in enumerate(iter_pages(rc, key, page_size=1_000), start=1):
        seen.extend(entry[0] for entry in page)
        if pages == 2:
            move = redis_cluster.begin_move(key, target)  # the key is gone: ASK from here
            if finish_after == 1:
                redis_cluster.finish_move(*move)  # the slot is reassigned: MOVED
        if pages == 12 and finish_after is None:
            redis_cluster.finish_move(*move)
    assert redis_cluster.index_of(key) == target
    assert seen == expected  # every entry once, in order


@pytest.mark.heavy
def test_export_survives_a_reshard_mid_export(redis_cluster, rc, tmp_path, monkeypatch):
    key = "orders:moving"
    _fill(rc, key, 30_000)
    expected = [entry_id.decode() for entry_id, _ in _xrange(rc, key)]
    source = redis_cluster.index_of(key)
    real_iter_pages = auditkit._archive.export.iter_pages
    moves = []

    def pages_while_resharding(*args, **kwargs):
        for number, page in enumerate(real_iter_pages(*args, **kwargs), start=1):
            yield page
            if number == 1:  # half-way: keys migrated, slot not yet reassigned (ASK)
                moves.append(redis_cluster.begin_move(key, (source + 1) % 3))
            elif number == 3:  # then the slot changes owner (MOVED)
                redis_cluster.finish_move(*moves[0])

    monkeypatch.setattr(auditkit._archive.export, "iter_pages", pages_while_resharding)
    archive = ak.Archive(tmp_path / "arc", rows_per_file=4_000)
    report = archive.export(rc, key)
    assert moves and redis_cluster.index_of(key) != source
    assert report.rows == 30_000
    archived = [row[0] for row in archive.duckdb().execute("select id from events").fetchall()]
    assert sorted(archived, key=ak.StreamID.parse) == expected
    assert archive.verify(rc, key).ok
    assert archive.trim(rc, key) == 30_000
    assert rc.xlen(key) == 0
    # Restored onto whichever primary owns the new key's slot, entry for entry.
    assert archive.restore(rc, key, "orders:restored") == 30_000
    assert [entry_id.decode() for entry_id, _ in _xrange(rc, "orders:restored")] == expected


def test_audit_of_the_demo_on_a_cluster_matches_one_server(redis_cluster, rc, r):
    ak.seed_demo(rc)
    ak.seed_demo(r)
    for index in range(3):  # the read model's keys are spread over every primary
        assert any(redis_cluster.node_client(index).scan_iter(match="demo:balance:*"))

    def findings(client):
        frame = pd.concat(
            [
                ak.audit(
                    client,
                    "demo:accounts",
                    projection=demo_projection(),
                    read_model=(client, "demo:balance:{aggregate_id}"),
                    terminal_types=["AccountClosed"],
                ),
                ak.audit(client, "demo:payments"),
            ],
            ignore_index=True,
        )
        rows = frame[frame["check"] != "no-persistence"].drop(columns="detail")
        return rows.sort_values(list(rows.columns)).reset_index(drop=True)

    on_cluster, on_one = findings(rc), findings(r)
    assert len(on_one) > 10
    pd.testing.assert_frame_equal(on_cluster, on_one)
    drift_cluster = ak.schema_drift((rc, "demo:*"), window="week").findings
    drift_one = ak.schema_drift((r, "demo:*"), window="week").findings
    pd.testing.assert_frame_equal(drift_cluster, drift_one)


def test_durability_is_checked_on_every_primary(redis_cluster, rc):
    findings = ak.check_durability(rc)
    nopersist = findings[findings["check"] == "no-persistence"]
    assert len(nopersist) == 3
    for node in redis_cluster.nodes:
        assert nopersist["detail"].str.contains(f"{node.host}:{node.port}").sum() == 1
    assert len(servers(rc)) == 3


def _documented_cluster_acl():
    lines = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    line = next(
        text
        for text in lines.splitlines()
        if text.startswith("ACL SETUSER auditor") and "cluster|slots" in text
    )
    return line.split()[2:]


def test_the_documented_cluster_auditor_reads_but_cannot_trim(redis_cluster, rc, tmp_path):
    ak.seed_demo(rc)
    rules = [rule.replace(">CHANGE-ME", ">s3cret-pass") for rule in _documented_cluster_acl()]
    without_slots = [rule for rule in rules if rule != "+cluster|slots"]
    port = redis_cluster.nodes[1].port
    url = f"redis://auditor:s3cret-pass@127.0.0.1:{port}"
    try:
        for index in range(3):
            redis_cluster.node_client(index).execute_command("ACL", "SETUSER", *without_slots)
        with pytest.raises(ak.ConnectionFailed, match=r"\+cluster\|slots") as caught:
            ak.connect(url)
        assert "s3cret-pass" not in str(caught.value)
        for index in range(3):
            redis_cluster.node_client(index).execute_command("ACL", "SETUSER", *rules)
        auditor = ak.connect(url)
        assert ak.read_arrow(auditor, "demo:*").num_rows > 16_000
        findings = ak.audit(auditor, "demo:accounts")
        assert {"poison-message", "durability-unknown"} <= set(findings["check"])
        arc = ak.Archive(tmp_path)
        arc.export(auditor, "demo:accounts")
        assert arc.verify(auditor, "demo:accounts").ok
        with pytest.raises(ak.PermissionDenied, match="XTRIM"):
            arc.trim(auditor, "demo:accounts", allow_pending=True)
    finally:
        for index in range(3):
            redis_cluster.node_client(index).execute_command("ACL", "DELUSER", "auditor")


@pytest.fixture
def failover_cluster(redis_cluster):
    """A cluster of its own (this test kills a primary), failing over within a second."""
    from _cluster import Cluster

    cluster = Cluster(redis_cluster.executable, node_timeout_ms=1_000).start()
    yield cluster
    cluster.stop()


@pytest.mark.heavy
def test_a_read_goes_on_after_its_primary_fails_over(failover_cluster, caplog):
    cluster = failover_cluster
    client = cluster.client()
    key = "orders:failover"
    _fill(client, key, 20_000)
    expected = [entry_id for entry_id, _ in _xrange(client, key)]
    primary = cluster.index_of(key)
    replica = cluster.add_replica(of=primary)
    reader = ak.connect(cluster.nodes[(primary + 1) % 3].url)
    seen = []
    for number, page in enumerate(iter_pages(reader, key, page_size=1_000), start=1):
        seen.extend(entry[0] for entry in page)
        if number == 3:
            cluster.kill(primary)  # mid-read; the replica takes over a few seconds later
    cluster.wait_for_primary(replica)
    assert seen == expected
    assert "waiting for a failover" in caplog.text  # the read did meet the dead primary
    assert cluster.index_of(key) == replica


@pytest.mark.heavy
def test_a_read_gives_up_clearly_when_no_replica_takes_over(failover_cluster, monkeypatch):
    monkeypatch.setattr(auditkit._redis.pages, "FAILOVER_SECONDS", 2.0)
    cluster = failover_cluster
    key = "orders:orphaned"
    _fill(cluster.client(), key, 5_000)
    primary = cluster.index_of(key)
    reader = ak.connect(cluster.nodes[(primary + 1) % 3].url)
    pages = iter_pages(reader, key, page_size=1_000)
    next(pages)
    cluster.kill(primary)
    dead = f"127.0.0.1:{cluster.nodes[primary].port}"
    with pytest.raises(ak.ConnectionFailed, match=rf"node {dead} holding `{key}`.*no replica"):
        list(pages)
