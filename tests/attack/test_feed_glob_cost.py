"""The change feed's filtered streams run their glob over the retained tail on the event
loop, in one go (attack3, watch branch). KEYS and SCAN MATCH slice the same glob work; here
``XREAD COUNT 1 STREAMS __raftkv:changes:?*?*?*?*?*?*?*?*b 0`` walks every retained change
(100,000 by default) through the step-at-a-time matcher: measured in process, 37 s for
100,000 changes of 200-byte keys (``*[a]*[a]*[a]*[a]*b``: 46 s), and XINFO STREAM on such a
stream walks the whole tail too. A node doing that answers nobody and sends no heartbeats.
Here 20,000 changes (20 MSETs) and one such XREAD on the leader: a PING on another
connection must still be answered within a second, and the leader must keep its term."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

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


def test_a_blocked_xread_of_many_streams_does_not_tax_every_write(tmp_path: Path) -> None:
    """One ``XREAD BLOCK 0 STREAMS`` of 100,000 filtered names (2.5 MB, under the 8 MiB
    request limit), then 1,000 changes and one that one of the names matches: the woken
    reader runs ``FeedReader.read``, one ``feed.after`` walk of the new changes per name,
    100 million matches on the loop (with 200,000 names, live: the node answered nothing
    for over 4 minutes, when the run was stopped). Up to --watch-max-blocked (1,000)
    readers can each do that. A PING must still be answered within a second."""
    with LocalCluster(tmp_path, fsync="never", extra_args=["--watch-max-blocked", "1"]) as c:
        c.wait_for_leader()
        _many_streams(c)


def _many_streams(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    host, port = cluster.client_addr(leader)
    names = [f"__raftkv:changes:k{i}" for i in range(100_000)]
    blocker = redis.Redis(host=host, port=port, socket_timeout=120)
    outcome: list[object] = []

    def block() -> None:
        try:
            outcome.append(blocker.xread(dict.fromkeys(names, "$"), block=0))
        except redis.RedisError as exc:
            outcome.append(exc)
    blocked = threading.Thread(target=block, daemon=True)
    blocked.start()
    r = redis.Redis(host=host, port=port, socket_timeout=10, retry=Retry(NoBackoff(), 0))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not outcome:  # parked once the one blocking slot is taken
        try:
            r.xread({"__raftkv:changes": "$"}, block=1)
        except redis.ResponseError as exc:
            if "max blocked readers" in str(exc):
                break
        time.sleep(0.05)  # polling another connection's state: no event to wait on
    else:
        raise AssertionError(f"the 100,000-stream XREAD never blocked: {outcome}")
    done = threading.Event()

    def writes() -> None:
        _quietly(lambda: r.mset({f"x{i}": "v" for i in range(1000)}))
        _quietly(lambda: r.set("k5", "wakes the reader"))
        done.set()
    threading.Thread(target=writes, daemon=True).start()
    ping = redis.Redis(host=host, port=port, socket_timeout=5, retry=Retry(NoBackoff(), 0))
    worst = 0.0
    after = 40  # pings after the writes: the woken reader runs once the SET is answered
    while not done.is_set() or (after := after - 1) > 0:
        started = time.monotonic()
        try:
            ping.ping()
        except redis.TimeoutError:
            worst = float("inf")
            break
        worst = max(worst, time.monotonic() - started)
        done.wait(0.05)
    blocker.close()
    assert worst < 1.0, f"a PING waited {worst:.1f} s behind a woken 100,000-stream XREAD"


def _quietly(fn: Callable[[], object]) -> None:
    with contextlib.suppress(redis.RedisError):
        fn()
