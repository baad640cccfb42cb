"""A leadership transfer that does not happen strands the writes sent meanwhile
(attack2 branch, round 2). Fails today.

``RAFT TRANSFER id`` (any client may send it: the client port has no AUTH yet) makes the
leader stop taking proposals until the target takes over or an election timeout passes.
Writes that arrive meanwhile are parked (``NotLeader``); parked commands are dispatched
again only when the leader *or the role* changes. When the transfer is aborted (the
target is down, paused or partitioned) the same node simply resumes leading, nothing
changes, and the parked writes wait out ``leader_wait`` (2 s) and answer ``-TRYAGAIN no
leader known`` although the leader was back after one election timeout. Live (default
150 ms election timeout, target paused): every SET after a ``RAFT TRANSFER`` answered
TRYAGAIN after 2.0 s, five times in a row; a client repeating the transfer keeps every
write failing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from chaos.cluster import LocalCluster

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

ELECTION_TICKS = 50  # 0.5 s: the aborted transfer gives the leader back after this


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path, fsync="never",
                     extra_args=["--election-ticks", str(ELECTION_TICKS)])
    c.start()
    try:
        c.wait_for_leader()
        yield c
    finally:
        for node_id in c.nodes:
            c.resume(node_id)
        c.close()


def test_write_during_an_aborted_transfer_waits_for_the_resumed_leader(cluster) -> None:
    leader = cluster.wait_for_leader()
    target = next(i for i in cluster.nodes if i != leader)
    host, port = cluster.client_addr(leader)
    r = redis.Redis(host=host, port=port, socket_timeout=10)
    assert r.set("before", "1")
    term = (cluster.info(leader, timeout=5) or {}).get("term")
    cluster.pause(target)  # the transfer target cannot take over
    assert r.execute_command("RAFT", "TRANSFER", str(target)) == b"OK"
    started = time.monotonic()
    try:
        reply: object = r.set("during", "1")
    except redis.ResponseError as exc:
        reply = exc
    elapsed = time.monotonic() - started
    now = cluster.info(leader, timeout=5) or {}
    assert reply is True, (f"{reply!r} after {elapsed:.2f} s; node {leader} now "
                           f"{now.get('role')} of term {now.get('term')} (was {term})")
