"""SETRANGE as a memory and stall amplifier (attack2 branch, round 2). Fails today.

Every argument is bounded by ``--max-request-bytes`` (8 MiB), but the state machine lets
SETRANGE grow a value to 512 MiB (Redis's proto-max-bulk-len): ``SETRANGE big 104857600
x`` is a 40-byte request that makes every replica zero-fill and copy 100 MiB inside one
apply. Live, on a default 3-node cluster, it stalled every node's loop for about 1 s, the
leader lost its term, and the next ``SETRANGE big 0 y`` (another full copy) answered
``-UNKNOWN`` after yet another election. At 512 MiB each such command costs every replica
1.5 GB and seconds of stall; a handful of keys exhaust memory cluster-wide.

The cluster here runs with a 1 s election timeout (100 ticks), so only a real stall can
cost the leader its term.
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
MAX_REQUEST = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(Path(tmp_path_factory.mktemp("attack2-strings")), fsync="never",
                     extra_args=["--election-ticks", str(ELECTION_TICKS),
                                 "--max-request-bytes", str(MAX_REQUEST)])
    with c.serving():
        yield c


def _info(c: LocalCluster, node_id: int) -> dict[str, str]:
    return parse_info(call(c.nodes[node_id].client_addr, "INFO", "everything", timeout=10))


def test_setrange_cannot_grow_a_value_past_max_request_bytes(cluster: LocalCluster) -> None:
    """A 40-byte SETRANGE must not create a value 12 times larger than any request the
    node accepts (README Limits: one argument 8 MiB): the node answers an error, keeps
    its leader and term, and no replica holds the value."""
    leader = cluster.wait_for_leader()
    term = int(_info(cluster, leader)["term"])
    host, port = cluster.client_addr(leader)
    r = redis.Redis(host=host, port=port, socket_timeout=60)
    offset = 100 * 1024 * 1024
    deadline = time.monotonic() + 30
    while True:
        try:
            reply: object = r.execute_command("SETRANGE", "big", str(offset), "x")
        except redis.ResponseError as exc:
            reply = exc
            if str(exc).startswith(("TRYAGAIN", "UNKNOWN")) and time.monotonic() < deadline:
                continue  # an election in the way: the same command again
        break
    assert isinstance(reply, redis.ResponseError), (
        f"SETRANGE at offset {offset} made a {reply}-byte value with max-request-bytes "
        f"{MAX_REQUEST}")
    assert cluster.wait_for_leader() == leader
    assert int(_info(cluster, leader)["term"]) == term
    for node_id in cluster.nodes:
        assert call(cluster.nodes[node_id].client_addr, "STRLEN", "big", timeout=10) == 0


def test_append_cannot_grow_a_value_past_max_request_bytes(cluster: LocalCluster) -> None:
    """The same bound through APPEND: two 6 MiB requests make a 12 MiB value, and each
    further APPEND copies the whole value inside one apply on every replica (64 appends
    of 8 MiB reach 512 MiB and copy 16 GiB in all). A value no client could SET must not
    be built a piece at a time; the node answers an error and keeps the 6 MiB value."""
    piece = b"a" * (6 * 1024 * 1024)
    leader = cluster.wait_for_leader()
    host, port = cluster.client_addr(leader)
    r = redis.Redis(host=host, port=port, socket_timeout=60)
    assert r.set("grown", piece)
    try:
        reply: object = r.append("grown", piece)
    except redis.ResponseError as exc:
        reply = exc
    assert isinstance(reply, redis.ResponseError), (
        f"APPEND made a {reply}-byte value with max-request-bytes {MAX_REQUEST}")
    assert r.strlen("grown") == len(piece)
