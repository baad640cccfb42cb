"""Attacks through the client port on a real 3-node cluster (attacker branch, issue 12
follow-up). Each test reproduces a bug found on the merge of peer-, port- and
storage-hardening; it fails today.

The cluster runs with an election timeout of 1 s (100 ticks of 10 ms) so that only a
stall far longer than CPU contention on a shared machine can cost the leader its term.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from chaos.cluster import LocalCluster
from raftkv.probe import call, parse_info

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

ELECTION_TICKS = 100
ELECTION_MS = ELECTION_TICKS * 10
BIG_KEY = b"a" * (6 * 1024 * 1024)  # under max-request-bytes (8 MiB)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(Path(tmp_path_factory.mktemp("attack-client")), fsync="never",
                     extra_args=["--election-ticks", str(ELECTION_TICKS)])
    with c.serving():
        yield c


def client(c: LocalCluster, node_id: int) -> redis.Redis:
    host, port = c.client_addr(node_id)
    return redis.Redis(host=host, port=port, socket_timeout=60, protocol=2)


def info(c: LocalCluster, node_id: int) -> dict[str, str]:
    return parse_info(call(c.nodes[node_id].client_addr, "INFO", "everything", timeout=10))


def run_without_election(c: LocalCluster, *command: str | bytes) -> object:
    """Run ``command`` on the leader; the leader and its term must survive it and no
    node's loop-lag monitor may see a stall as long as the election timeout."""
    leader = c.wait_for_leader()
    term = int(info(c, leader)["term"])
    for node_id in c.nodes:
        assert call(c.nodes[node_id].client_addr, "CONFIG", "RESETSTAT", timeout=10)
    reply = client(c, leader).execute_command(*command)
    lags = {node_id: float(info(c, node_id)["loop_lag_max_ms"]) for node_id in c.nodes}
    assert c.wait_for_leader() == leader and int(info(c, leader)["term"]) == term, lags
    assert max(lags.values()) < ELECTION_MS, lags
    return reply


def set_big_key(c: LocalCluster) -> None:
    deadline = time.monotonic() + 30
    while True:  # the write itself may meet an election on a loaded machine
        try:
            assert client(c, c.wait_for_leader()).set(BIG_KEY, b"v")
            return
        except redis.ResponseError as exc:
            if not str(exc).startswith(("TRYAGAIN", "UNKNOWN")) or time.monotonic() > deadline:
                raise


def test_keys_pattern_against_one_large_key_does_not_stall_the_loop(cluster) -> None:
    """KEYS is sliced by key count (256 keys per slice), not by bytes matched: one large
    key (6 MiB here) and the pattern ``*b`` make the pure-Python glob walk every byte in one slice
    (about 2.5 s per MiB on this machine; 21 s for an 8 MiB key), so the leader loses
    its term. Repeated, the cluster never has a leader for long."""
    set_big_key(cluster)
    assert run_without_election(cluster, "KEYS", "*b") == []


def test_scan_match_against_one_large_key_does_not_stall_the_loop(cluster) -> None:
    """The same through SCAN MATCH, which is not sliced at all past the index build."""
    set_big_key(cluster)
    _cursor, keys = run_without_election(cluster, "SCAN", "0", "MATCH", "*b", "COUNT", "10")
    assert keys == []


def test_a_pattern_the_literal_path_cannot_take_is_matched_in_slices(cluster) -> None:
    """``*?b`` runs the step-by-step port (about a second of Python per MiB), a few ms a
    slice: the command takes a while, the loop and the leader's term do not notice. (A
    2 MiB key alone, to keep the test short; the other tests set the 6 MiB one again.)"""
    leader = cluster.wait_for_leader()
    assert client(cluster, leader).delete(BIG_KEY) in (0, 1)
    assert client(cluster, leader).set(b"a" * (2 * 1024 * 1024), b"v")
    assert run_without_election(cluster, "KEYS", "*?b") == []
    assert client(cluster, leader).delete(b"a" * (2 * 1024 * 1024)) == 1
