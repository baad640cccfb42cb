"""The bounded EVAL cache on real processes (script_cache.py): 501 EVALs leave the first
one evicted on the leader; a follower that missed them gets the cache from a snapshot
install (version 5, with the eviction order); with the two others killed and one of them
restarted (a quorum whose nodes both rebuilt their state from a snapshot: installed, or
read from disk), the cluster answers exactly as the old leader did, and the next EVAL
evicts the body the old leader would have evicted (not the one a lost order would)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from test_datamodel import client, wait_until

from chaos.cluster import LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
T = TypeVar("T")
SNAPSHOT_EVERY = 100


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path, extra_args=["--snapshot-entries", str(SNAPSHOT_EVERY)]) as c:
        c.wait_for_leader()
        yield c


def sha(n: int) -> str:
    return hashlib.sha1(b"return %d" % n).hexdigest()


LOADED = hashlib.sha1(b"return 'loaded'").hexdigest()


def retry(fn: Callable[[], T], timeout: float = 30.0) -> T:
    """``fn()`` until it stops failing with an error that says nothing was applied, or
    the connection's (elections: 500 scripts compiled on apply can cost one here)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (redis.exceptions.TryAgainError, redis.ConnectionError,
                redis.TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # polling other processes: there is no event to wait on


def eval_chunk(r: redis.Redis, start: int) -> list[int]:
    with r.pipeline(transaction=False) as p:
        for n in range(start, min(start + 50, 501)):
            p.eval(f"return {n}", 0)
        return p.execute()


def test_the_eval_cache_and_its_order_reach_a_follower_by_snapshot(
        cluster: LocalCluster) -> None:
    c = cluster
    leader = c.wait_for_leader()
    lagging = next(i for i in c.nodes if i != leader)
    r = client(c, leader)
    assert retry(lambda: r.script_load("return 'loaded'"))
    c.kill(lagging)
    for start in range(0, 501, 50):  # a chunk sent again (after an election) keeps the order
        assert retry(lambda start=start: eval_chunk(r, start)) == list(range(start,
                                                                             min(start + 50, 501)))
    assert retry(lambda: r.evalsha(sha(1), 0)) == 1  # 1 is now the newest
    before = retry(lambda: r.script_exists(sha(0), sha(1), sha(2), LOADED))
    assert before == [False, True, True, True]
    c.start(lagging)
    log = c.nodes[lagging].log_path
    wait_until(lambda: "snapshot installed" in log.read_text(errors="replace"), "install")
    others = [i for i in c.nodes if i != lagging]
    for i in others:
        c.kill(i)
    c.start(others[0])  # a quorum with the node that only has the snapshot's cache
    new_leader = c.wait_for_leader(among=[lagging, others[0]])
    survivor = client(c, new_leader)
    assert retry(lambda: survivor.script_exists(sha(0), sha(1), sha(2), LOADED)) == before
    assert retry(lambda: survivor.eval("return 501", 0)) == 501  # evicts 2, not 1
    assert retry(lambda: survivor.script_exists(sha(1), sha(2), sha(3))) == [True, False, True]
    with pytest.raises(redis.exceptions.NoScriptError):
        retry(lambda: survivor.evalsha(sha(2), 0))
