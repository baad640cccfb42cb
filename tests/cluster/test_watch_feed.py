"""The change feed on a real 3-node cluster, through redis-py: a reader blocked in XREAD on
a follower sees exactly the leader's committed writes, in order; the feed survives a
restart from a snapshot; a blocked reader that hangs up frees its slot."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from chaos.cluster import LocalCluster

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

FEED = "__raftkv:changes"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    # Snapshots every 50 entries: the feed must outlive them (it travels in the snapshot).
    with LocalCluster(tmp_path, extra_args=["--snapshot-entries", "50",
                                            "--watch-max-blocked", "2"]) as c:
        c.wait_for_leader()
        yield c


def client(c: LocalCluster, node_id: int, timeout: float = 10) -> redis.Redis:
    host, port = c.client_addr(node_id)
    return redis.Redis(host=host, port=port, socket_timeout=timeout)


def follow(r: redis.Redis, stream: str, start: str, until: int,
           out: list[tuple[str, dict]]) -> None:
    """XREAD BLOCK from ``start`` until ``until`` entries are read (or 30 s pass)."""
    last = start
    deadline = time.monotonic() + 30
    while len(out) < until and time.monotonic() < deadline:
        reply = r.xread({stream: last}, count=50, block=2000)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                out.append((entry_id.decode(), {k.decode(): v for k, v in fields.items()}))
                last = entry_id.decode()


def test_a_follower_reader_sees_the_committed_writes_in_order(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    follower = next(i for i in cluster.nodes if i != leader)
    writer = client(cluster, leader)
    everything: list[tuple[str, dict]] = []
    users: list[tuple[str, dict]] = []
    n = 120
    writer.set("before", "x")
    start = writer.xinfo_stream(FEED)["last-generated-id"].decode()  # ids mean the same
    readers = [threading.Thread(target=follow, args=(client(cluster, follower), FEED, start,
                                                     n + 1, everything)),
               threading.Thread(target=follow, args=(client(cluster, follower),
                                                     FEED + ":user:*", start, n // 2, users))]
    for t in readers:
        t.start()
    for i in range(n):
        writer.set(f"user:{i}" if i % 2 == 0 else f"other:{i}", f"v{i}")
    writer.mset({"a": "1", "b": "2"})
    for t in readers:
        t.join(40)
    # What the leader's own feed says happened: the reference order.
    reference = [(i.decode(), {k.decode(): v for k, v in f.items()})
                 for i, f in writer.xrange(FEED, "-", "+", count=10_000)]
    assert len(everything) >= n + 1
    assert everything == reference[-len(everything):]
    assert [f["key"] for _, f in everything[:n]] == [
        (f"user:{i}" if i % 2 == 0 else f"other:{i}").encode() for i in range(n)]
    assert everything[-2][0].rsplit("-")[0] == everything[-1][0].rsplit("-")[0]  # one MSET
    assert [f for _, f in users] == [f for _, f in everything if f["key"].startswith(b"user:")]
    assert len(users) == n // 2


def test_the_feed_survives_a_restart_from_a_snapshot(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    r = client(cluster, leader)
    for i in range(130):  # past two snapshots
        r.incr("n")
    before = r.xrange(FEED, "-", "+", count=1000)
    assert [f[b"value"] for _, f in before] == [str(i).encode() for i in range(1, 131)]
    victim = next(i for i in cluster.nodes if i != leader)
    deadline = time.monotonic() + 20
    while client(cluster, victim).xrange(FEED, "-", "+", count=1000) != before:
        assert time.monotonic() < deadline, "the follower never caught up"
        time.sleep(0.05)
    cluster.kill(victim)
    cluster.start(victim)
    deadline = time.monotonic() + 20
    while True:
        try:
            after = client(cluster, victim).xrange(FEED, "-", "+", count=1000)
            if after == before:
                break
        except redis.ConnectionError:
            pass
        assert time.monotonic() < deadline, "the restarted node lost its feed"
        time.sleep(0.05)
    info = client(cluster, victim).xinfo_stream(FEED)
    assert info["length"] == 130 and info["first-entry"][0] == before[0][0]


def test_blocked_readers_are_bounded_and_a_hang_up_frees_a_slot(cluster: LocalCluster) -> None:
    node = cluster.wait_for_leader()
    host, port = cluster.client_addr(node)
    sockets = []
    for _ in range(2):
        s = socket.create_connection((host, port))
        s.sendall(b"XREAD BLOCK 0 STREAMS __raftkv:changes $\r\n")
        sockets.append(s)
    r = client(cluster, node)
    deadline = time.monotonic() + 10
    while True:  # both are blocked once the third is refused
        try:
            r.xread({FEED: "$"}, block=1)
        except redis.ResponseError as exc:
            assert "max blocked readers" in str(exc)
            break
        assert time.monotonic() < deadline
    sockets.pop().close()
    deadline = time.monotonic() + 10
    while True:  # the slot comes back once the node sees the hang-up
        try:
            assert r.xread({FEED: "$"}, block=1) == []
            break
        except redis.ResponseError:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    r.set("k", "v")
    reply = sockets[0].recv(4096)
    assert b"__raftkv:changes" in reply and b"k" in reply
    sockets[0].close()
