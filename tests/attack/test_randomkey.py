"""RANDOMKEY builds SCAN's whole hash order on the event loop (attack2 branch, round 2).
Fails today.

SCAN builds its order in slices (``read_deferred``), but RANDOMKEY calls
``_scan_order()``, which builds it at once (BLAKE2b of every key, then a sort) or
finishes a sliced build synchronously. Measured in-process on 1M keys: 4.1 s for the
first RANDOMKEY. The order is dropped by FLUSHALL, a snapshot install and every restart,
so one RANDOMKEY after any of those holds the serving node's loop for seconds: on the
leader, an election (the default election timeout is 150-300 ms).

The cluster here runs with a 1 s election timeout (100 ticks), like tests/cluster/
test_heavy_commands.py, whose list of heavy commands (KEYS, SCAN, MGET, MSET, DBSIZE,
FLUSHALL) leaves RANDOMKEY out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from chaos.cluster import LocalCluster
from raftkv.probe import call, parse_info

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

KEYS = 1_000_000
BATCH = 50_000
ELECTION_TICKS = 100
ELECTION_MS = ELECTION_TICKS * 10


def _retry(fn: Callable[[], object], timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except redis.ResponseError as exc:
            if not str(exc).startswith(("TRYAGAIN", "UNKNOWN")) or time.monotonic() > deadline:
                raise
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() > deadline:
                raise


def _client(c: LocalCluster, node_id: int) -> redis.Redis:
    host, port = c.client_addr(node_id)
    return redis.Redis(host=host, port=port, socket_timeout=60, protocol=2)


def _info(c: LocalCluster, node_id: int) -> dict[str, str]:
    return parse_info(call(c.nodes[node_id].client_addr, "INFO", "everything", timeout=10))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(Path(tmp_path_factory.mktemp("attack2-randomkey")), fsync="never",
                     extra_args=["--election-ticks", str(ELECTION_TICKS),
                                 "--max-keys-per-command", str(BATCH)])  # (loading)
    c.start()
    try:
        c.wait_for_leader()
        for start in range(0, KEYS, BATCH):  # one MSET at a time (MSET is idempotent)
            batch = {b"k:%07d" % i: b"v" for i in range(start, start + BATCH)}
            assert _retry(lambda batch=batch: _client(c, c.wait_for_leader()).mset(batch))
        yield c
    finally:
        c.close()


def test_first_randomkey_on_a_large_map_keeps_the_leader(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    term = int(_info(cluster, leader)["term"])
    for node_id in cluster.nodes:
        assert call(cluster.nodes[node_id].client_addr, "CONFIG", "RESETSTAT", timeout=10)
    key = _client(cluster, leader).randomkey()
    assert key is not None and key.startswith(b"k:")
    lags = {node_id: float(_info(cluster, node_id)["loop_lag_max_ms"])
            for node_id in cluster.nodes}
    assert cluster.wait_for_leader() == leader, lags
    assert int(_info(cluster, leader)["term"]) == term, lags
    assert lags[leader] < ELECTION_MS, lags
