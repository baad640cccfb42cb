"""The change feed's filtered streams run their glob over the retained tail on the event
loop, in one go (attack3, watch branch). KEYS and SCAN MATCH slice the same glob work; here
``XREAD COUNT 1 STREAMS __raftkv:changes:?*?*?*?*?*?*?*?*b 0`` walks every retained change
(100,000 by default) through the step-at-a-time matcher: measured in process, 37 s for
100,000 changes of 200-byte keys (``*[a]*[a]*[a]*[a]*b``: 46 s), and XINFO STREAM on such a
stream walks the whole tail too. A node doing that answers nobody and sends no heartbeats.
Here 20,000 changes (20 MSETs) and one such XREAD on the leader: a PING on another
connection must still be answered within a second, and the leader must keep its term."""

from __future__ import annotations

import pytest
import redis
from loop_probe import worst_ping_while

from chaos.cluster import LocalCluster
from raftkv.probe import info_raft
from raftkv.server.streams import parse_xread
from wire.reply import ErrorReply

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


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
    reader = redis.Redis(host=host, port=port, socket_timeout=60)
    worst = worst_ping_while(host, port, lambda: reader.xread(
        {"__raftkv:changes:?*?*?*?*?*?*?*?*b": "0"}, count=1), timeout=5)
    assert worst < 1.0, f"a PING waited {worst:.1f} s behind one filtered XREAD"
    assert cluster.wait_for_leader() == leader
    assert info_raft(cluster.nodes[leader].client_addr)["term"] == term


def test_one_xread_names_a_bounded_number_of_streams() -> None:
    """One ``XREAD BLOCK 0 STREAMS`` of 200,000 filtered names (5 MB, under the 8 MiB
    request limit), woken by a SET one name matches, re-read every name on the event loop:
    one ``feed.after`` walk of the new changes per name (live, after a 1,000-key MSET: the
    node answered nothing for over 4 minutes, when the run was stopped; with 100,000 names a
    PING timed out at 5 s). Up to --watch-max-blocked (1,000) readers can each do that. The
    number of streams one XREAD names must be bounded (the stall is a race with the reply
    to the waking SET, so this checks the bound itself)."""
    names = [b"__raftkv:changes:k%d" % i for i in range(100_000)]
    parsed = parse_xread([b"XREAD", b"BLOCK", b"0", b"STREAMS", *names, *[b"$"] * len(names)])
    assert isinstance(parsed, ErrorReply), f"{len(parsed.streams)} streams accepted"
