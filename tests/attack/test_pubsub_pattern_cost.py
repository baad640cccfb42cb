"""Pub/Sub patterns are matched against every published channel on the event loop, each
in Python (attack3, pubsub branch). One connection may hold 10,000 patterns; a pattern such
as ``?*?*?*?*?*?*?*?*b<n>`` costs ~0.4 ms against a 200-byte channel in the step-by-step
matcher, so one PUBLISH costs that connection's patterns x 0.4 ms on every node (twice on
the node that answers PUBLISH: ``receivers`` then ``deliver``), and any number of
connections multiply it. Here 5,000 patterns on one connection and one PUBLISH: a PING on
another connection must still be answered within a second."""

from __future__ import annotations

import time

import pytest
import redis
from loop_probe import worst_ping_while

from chaos.cluster import LocalCluster

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def test_many_slow_patterns_do_not_stall_a_publish(cluster: LocalCluster) -> None:
    _stall(cluster, [f"?*?*?*?*?*?*?*?*b{i}" for i in range(5000)], "a" * 200)


def test_one_slow_pattern_and_a_long_channel_do_not_stall_a_publish(
        cluster: LocalCluster) -> None:
    """The matcher's cost grows with the channel name: ``?*?*b`` takes ~1 s per MB (in
    process: 1.07 s for 1,000,000 bytes), and a channel name may be as long as a request
    (8 MiB). One subscriber of that pattern and one PUBLISH to a 4 MB channel."""
    _stall(cluster, ["?*?*b"], "a" * 4_000_000)


def _stall(cluster: LocalCluster, patterns: list[str], channel: str) -> None:
    leader = cluster.wait_for_leader()
    host, port = cluster.client_addr(leader)
    sub = redis.Redis(host=host, port=port, socket_timeout=60).pubsub()
    sub.psubscribe(*patterns)
    deadline = time.monotonic() + 30
    while sub.get_message(timeout=1) is not None and time.monotonic() < deadline:
        pass  # the 5,000 psubscribe confirmations
    publisher = redis.Redis(host=host, port=port, socket_timeout=60)
    try:
        worst = worst_ping_while(host, port, lambda: publisher.publish(channel, "m"))
    finally:
        sub.close()
    assert worst < 1.0, f"a PING waited {worst:.1f} s behind one PUBLISH"
