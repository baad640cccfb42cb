"""A change-feed read on one connection does not see that connection's own write before it
(attack6: pipelined batches and program order).

The client port orders a read pipelined after a write behind it (``ProgramOrder``: "a read
after a write waits until the write is answered, so it sees it"), but it told the two
kinds apart with ``is_write``, which calls ``XREAD``/``XRANGE``/``XREVRANGE``/``XINFO``
local commands (None) like PING: they ran at parse time, before the write before them
was even proposed. Live, ``SET fk <v>`` then ``XREVRANGE __raftkv:changes:fk + - COUNT 1``
in one pipeline missed the SET 50 times out of 50 on every node, the leader included
(Redis runs a connection's commands in order). On a follower the same two commands sent
one after the other (the SET's ``+OK`` read before the XREVRANGE is sent) missed it 14
and 17 times out of 50: a follower answers a forwarded write when the leader has applied
it, before it has applied it itself, and then read its own feed, which trails. ``GET``
after ``SET`` on a follower never misses (it waits for a ReadIndex).
"""

from __future__ import annotations

import socket
import time
import uuid

import pytest
import redis

from chaos.cluster import LocalCluster

pytestmark = [pytest.mark.timeout(60)]

ROUNDS = 20
STREAM = "__raftkv:changes:fk"


def _last_value(reply: list) -> bytes | None:
    return reply[0][1].get(b"value") if reply else None


def _nodes(cluster: LocalCluster) -> dict[str, redis.Redis]:
    leader = cluster.wait_for_leader()
    follower = next(i for i in cluster.nodes if i != leader)
    out = {}
    for name, node in (("leader", leader), ("follower", follower)):
        host, port = cluster.client_addr(node)
        out[name] = redis.Redis(host=host, port=port, socket_timeout=15)
    return out


def test_a_pipelined_feed_read_sees_the_write_before_it(cluster: LocalCluster) -> None:
    missed = {}
    for name, r in _nodes(cluster).items():
        missed[name] = 0
        for _ in range(ROUNDS):
            value = uuid.uuid4().hex.encode()
            pipe = r.pipeline(transaction=False)
            pipe.set("fk", value)
            pipe.xrevrange(STREAM, count=1)
            _, last = pipe.execute()
            missed[name] += _last_value(last) != value
    assert missed == {"leader": 0, "follower": 0}, (
        f"of {ROUNDS} pipelines SET; XREVRANGE, the feed read missed the SET before it: "
        f"{missed}")


def test_a_feed_read_after_an_acknowledged_write_on_a_follower_sees_it(
        cluster: LocalCluster) -> None:
    r = _nodes(cluster)["follower"]
    missed = 0
    for _ in range(ROUNDS):
        value = uuid.uuid4().hex.encode()
        assert r.set("fk", value)
        missed += _last_value(r.xrevrange(STREAM, count=1)) != value
    assert missed == 0, (
        f"{missed} of {ROUNDS} XREVRANGE on a follower, each sent after its SET was "
        f"acknowledged on the same connection, missed that SET")


def test_a_write_pipelined_behind_a_blocked_xread_does_not_wait_for_it(
        cluster: LocalCluster) -> None:
    """The fix must not order later commands behind a feed read: ``XREAD BLOCK 0`` then
    ``SET`` in one pipeline, and the client hangs up. A first fix counted feed reads as
    reads, so the SET waited for the XREAD, the connection's reader no longer saw the
    hang-up, and the blocked slot (of --watch-max-blocked) and the connection stayed
    forever. The SET applies at once (as before), the slot is freed."""
    leader = cluster.wait_for_leader()
    host, port = cluster.client_addr(leader)
    r = redis.Redis(host=host, port=port, socket_timeout=15)
    with socket.create_connection((host, port), timeout=15) as sock:
        sock.sendall(b"*6\r\n$5\r\nXREAD\r\n$5\r\nBLOCK\r\n$1\r\n0\r\n$7\r\nSTREAMS\r\n"
                     b"$19\r\n__raftkv:changes:z*\r\n$1\r\n$\r\n"
                     b"*3\r\n$3\r\nSET\r\n$6\r\nbehind\r\n$1\r\n1\r\n")
        deadline = time.monotonic() + 15
        while r.get("behind") != b"1":
            assert time.monotonic() < deadline, "the SET behind a blocked XREAD never applied"
            time.sleep(0.05)  # another process: nothing to wait on but its answers
        assert r.info("clients")["blocked_clients"] == 1
        assert "blocked_readers_window_ms" in r.info("stats")  # (the window now: ms)
    deadline = time.monotonic() + 15
    while r.info("clients")["blocked_clients"]:
        assert time.monotonic() < deadline, (
            "a blocked XREAD whose client hung up still holds its slot")
        time.sleep(0.05)
