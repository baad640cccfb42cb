"""Keyspace notifications go through the same pattern matching as PUBLISH (issue 18, attack3
follow-up): a 4 MB key's ``__keyspace@0__:<key>`` channel against many patterns must not
stall the node either. Real processes; a PING on another connection is the probe."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from chaos.cluster import LocalCluster

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def test_a_huge_keys_events_and_many_patterns_do_not_stall_the_node(
        cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    host, port = cluster.client_addr(leader)
    admin = redis.Redis(host=host, port=port, socket_timeout=30)
    assert admin.config_set("notify-keyspace-events", "KA")
    sub = redis.Redis(host=host, port=port, socket_timeout=60).pubsub()
    patterns = ["__keyspace@0__:?*?*b"] + [f"__keyspace@0__:*[ab]{i}?*" for i in range(30)]
    sub.psubscribe(*patterns)
    confirmed = 0
    deadline = time.monotonic() + 30
    while confirmed < len(patterns) and time.monotonic() < deadline:
        message = sub.get_message(timeout=1)
        confirmed += message is not None and message["type"] == "psubscribe"
    assert confirmed == len(patterns)
    key = b"k" * 4_000_000 + b"b"
    done = threading.Event()

    def write() -> None:
        writer = redis.Redis(host=host, port=port, socket_timeout=60)
        try:
            for _ in range(5):  # a loaded machine may hold an election: retry, as clients do
                try:
                    writer.set(key, "v")
                    return
                except (redis.exceptions.TryAgainError, redis.exceptions.ResponseError):
                    time.sleep(0.5)
        finally:
            done.set()
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    ping = redis.Redis(host=host, port=port, socket_timeout=10)
    worst = 0.0
    got = None
    try:
        deadline = time.monotonic() + 60
        while got is None and time.monotonic() < deadline:
            started = time.monotonic()
            ping.ping()
            worst = max(worst, time.monotonic() - started)
            got = sub.get_message(timeout=0.05)
    finally:
        writer.join(60)
        sub.close()
    assert got is not None and got["type"] == "pmessage", got
    assert got["pattern"] == b"__keyspace@0__:?*?*b" and got["channel"] == b"__keyspace@0__:" + key
    assert got["data"] == b"set"
    assert worst < 1.0, f"a PING waited {worst:.1f} s behind one SET's keyspace events"
