"""Client sessions (RAFT SESSION / RAFT ONCE) on a real 3-node cluster, through redis-py:
a retried write answers its first reply on any node, across a leader kill and a restart."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from chaos.cluster import LocalCluster

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    # Snapshots every 20 entries: the restarted node below gets the sessions from one.
    with LocalCluster(tmp_path, extra_args=["--snapshot-entries", "20"]) as c:
        c.wait_for_leader()
        yield c


def client(c: LocalCluster, node_id: int) -> redis.Redis:
    host, port = c.client_addr(node_id)
    return redis.Redis(host=host, port=port, socket_timeout=10)


def retry(fn: Callable, timeout: float = 20.0):
    """``fn()`` until it stops failing for a leader change (TRYAGAIN, a lost connection, and
    UNKNOWN: the point of a session is that its commands may be sent again after that)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (redis.ResponseError, redis.ConnectionError, redis.TimeoutError) as exc:
            retryable = (str(exc).startswith(("TRYAGAIN", "UNKNOWN"))
                         or not isinstance(exc, redis.ResponseError))
            if time.monotonic() > deadline or not retryable:
                raise
            time.sleep(0.05)


def test_a_retried_incr_answers_its_first_reply_on_every_node(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    follower = next(i for i in cluster.nodes if i != leader)
    sid = client(cluster, follower).execute_command("RAFT", "SESSION", "OPEN", "60")
    assert isinstance(sid, int) and sid > 0
    once = ("RAFT", "ONCE", sid)
    assert client(cluster, follower).execute_command(*once, 1, "INCR", "n") == 1
    for node in cluster.nodes:  # the same (session, seq) anywhere: the recorded reply
        assert client(cluster, node).execute_command(*once, 1, "INCR", "n") == 1
    assert client(cluster, leader).execute_command(*once, 2, "INCR", "n") == 2
    assert client(cluster, leader).execute_command(*once, 3, "GET", "n") == b"2"  # a read
    assert client(cluster, leader).get("n") == b"2"


def test_sessions_survive_a_leader_kill_and_a_restart_from_a_snapshot(
        cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    sid = client(cluster, leader).execute_command("RAFT", "SESSION", "OPEN")
    once = ("RAFT", "ONCE", sid)
    assert client(cluster, leader).execute_command(*once, 1, "APPEND", "log", "a") == 1
    cluster.kill(leader)
    survivor = next(i for i in cluster.nodes if i != leader)
    retried = retry(lambda: client(cluster, survivor).execute_command(*once, 1, "APPEND",
                                                                     "log", "a"))
    assert retried == 1  # not applied again by the new leader
    for i in range(2, 40):  # past two snapshots
        retry(lambda i=i: client(cluster, survivor).execute_command(*once, i, "APPEND",
                                                                   "log", "b"))
    cluster.start(leader)
    again = retry(lambda: client(cluster, leader).execute_command(*once, 39, "APPEND",
                                                                  "log", "b"))
    assert again == 39  # the restarted node has the session, and the reply
    assert client(cluster, survivor).get("log") == b"a" + b"b" * 38


def test_closed_unknown_and_hostile_sessions_are_refused(cluster: LocalCluster) -> None:
    r = client(cluster, cluster.wait_for_leader())
    sid = r.execute_command("RAFT", "SESSION", "OPEN", "60")
    assert r.execute_command("RAFT", "SESSION", "CLOSE", sid) == 1
    for unknown in (sid, 123456):
        with pytest.raises(redis.ResponseError, match=r"^SESSIONEXPIRED session"):
            r.execute_command("RAFT", "ONCE", unknown, 1, "SET", "k", "v")
    assert r.get("k") is None
    hostile = [
        (("RAFT", "ONCE", sid, 0, "INCR", "n"), "sequence number must be a positive"),
        (("RAFT", "ONCE", "x", 1, "INCR", "n"), "session id must be a positive"),
        (("RAFT", "ONCE", sid, 1, "EXPIRED", "n"), "unknown command"),
        (("RAFT", "ONCE", sid, 1, "RAFT", "SESSION", "OPEN"), "unknown command"),
        (("RAFT", "ONCE", sid), "wrong arguments"),
        (("RAFT", "SESSION", "OPEN", "-1"), "positive number of seconds"),
        (("RAFT", "SESSION", "OPEN", "99999999999999"), "positive number of seconds"),
        (("RAFT", "SESSION", "OPEN", "700000"), "at most 604800 seconds"),
    ]
    for args, text in hostile:
        with pytest.raises(redis.ResponseError, match=text):
            r.execute_command(*args)
    assert r.ping()
