"""The change feed's filtered streams run their glob over the retained tail on the event
loop, in one go (attack3, watch branch). KEYS and SCAN MATCH slice the same glob work; here
``XREAD COUNT 1 STREAMS __raftkv:changes:?*?*?*?*?*?*?*?*b 0`` walks every retained change
(100,000 by default) through the step-at-a-time matcher: measured in process, 37 s for
100,000 changes of 200-byte keys (``*[a]*[a]*[a]*[a]*b``: 46 s), and XINFO STREAM on such a
stream walks the whole tail too. A node doing that answers nobody and sends no heartbeats.
Here 20,000 changes (20 MSETs) and one such XREAD on the leader: a PING on another
connection must still be answered within a second, and the leader must keep its term."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from chaos.cluster import LocalCluster
from raftkv.probe import info_raft

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path, fsync="never") as c:
        c.wait_for_leader()
        yield c


def test_a_filtered_xread_does_not_hold_the_loop(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    host, port = cluster.client_addr(leader)
    r = redis.Redis(host=host, port=port, socket_timeout=60)
    prefix = "a" * 200
    for batch in range(20):  # 20 x 1,000 changes (each retried through a leader change)
        for _ in range(50):
            try:
                r.mset({f"{prefix}{batch}-{i}": "v" for i in range(1000)})
                break
            except (redis.ResponseError, redis.ConnectionError):
                leader = cluster.wait_for_leader()
                host, port = cluster.client_addr(leader)
                r = redis.Redis(host=host, port=port, socket_timeout=60)
    term = info_raft(cluster.nodes[leader].client_addr)["term"]
    done = threading.Event()

    def slow_read() -> None:
        try:
            redis.Redis(host=host, port=port, socket_timeout=60).xread(
                {"__raftkv:changes:?*?*?*?*?*?*?*?*b": "0"}, count=1)
        except redis.RedisError:
            pass
        finally:
            done.set()
    reader = threading.Thread(target=slow_read, daemon=True)
    reader.start()
    ping = redis.Redis(host=host, port=port, socket_timeout=5)
    worst = 0.0
    try:
        while not done.is_set():
            started = time.monotonic()
            try:
                ping.ping()
            except redis.TimeoutError:
                worst = float("inf")
                break
            worst = max(worst, time.monotonic() - started)
            done.wait(0.05)
    finally:
        reader.join(60)
    assert worst < 1.0, f"a PING waited {worst:.1f} s behind one filtered XREAD"
    assert cluster.wait_for_leader() == leader
    assert info_raft(cluster.nodes[leader].client_addr)["term"] == term
