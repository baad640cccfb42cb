"""A command waits for a leader as long as a normal election can take (session 11).

``leader_wait`` was a fixed 2 s: with ``--election-ticks`` making the election timeout 2 s
or more, a write that arrived while no leader was known got ``-TRYAGAIN no leader known``
before the election could end, during every normal election. It is now derived from the
election timeout (``NodeSettings.leader_wait``: at least 2 s and 3 timeouts)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from raftkv.node.requests import NO_LEADER
from raftkv.node.settings import NodeSettings
from raftkv.raft import Role
from raftkv.testing import idle_node

WRITE = [b"SET", b"k", b"1"]


async def test_a_write_waits_out_a_3_s_election_instead_of_trying_again_at_2_s() -> None:
    n = idle_node(election_ticks=300)  # 300 x 10 ms: a 3 s election timeout (3-6 s drawn)
    n.core = SimpleNamespace(role=Role.FOLLOWER, leader_id=0)  # the leader just died
    n.driver = SimpleNamespace(wake=lambda: None, proposed=lambda: None)
    n.membership = SimpleNamespace(removed=lambda: False)
    n._now = lambda: 0.0
    reply = n.submit(WRITE)
    assert not reply.done and len(n.requests.parked) == 1
    for t in (2.05, 5.0, 6.5):  # the followers' timeouts fire in 3-6 s, then the vote
        n.requests.sweep(t)
        assert not reply.done, f"answered {reply.value} at t={t} during a normal election"
    n.requests.sweep(9.05)  # 3 election timeouts: no leader came, the client retries
    assert reply.done and reply.value == NO_LEADER


@pytest.mark.parametrize(("ticks", "tick_ms", "wait"), [
    (15, 10.0, 2.0),  # the defaults: 150 ms, the 2 s floor as before
    (100, 10.0, 3.0),  # 1 s (etcd's default): 3 s
    (200, 25.0, 15.0),  # 5 s: 15 s
])
def test_the_wait_is_at_least_2_s_and_3_election_timeouts(
        ticks: int, tick_ms: float, wait: float) -> None:
    s = NodeSettings(node_id=1, client_addr="127.0.0.1:1", peer_addr="127.0.0.1:2",
                     cluster={1: "127.0.0.1:2"}, data_dir="unused", election_ticks=ticks,
                     tick_ms=tick_ms)
    assert s.leader_wait == pytest.approx(wait)
