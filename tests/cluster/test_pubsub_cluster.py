"""Pub/Sub and keyspace notifications on a real 3-node cluster, through redis-py's
``pubsub()`` (RESP2 and RESP3) and ``redis-cli``: a subscriber on a follower gets what is
PUBLISHed on another node, subscribers on different nodes see one order, and SET/DEL/
EXPIRE and expiry make Redis's keyspace events."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from chaos.cluster import LocalCluster

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    path = tmp_path_factory.mktemp("pubsub")
    with LocalCluster(path, extra_args=["--notify-keyspace-events", "KEA",
                                        "--client-output-buffer-limit", "262144",
                                        "--client-output-stall-timeout", "2"]) as c:
        c.wait_for_leader()
        yield c


def client(c: LocalCluster, node_id: int, protocol: int = 2) -> redis.Redis:
    host, port = c.client_addr(node_id)
    return redis.Redis(host=host, port=port, socket_timeout=10, protocol=protocol)


def followers(c: LocalCluster) -> tuple[int, int]:
    leader = c.wait_for_leader()
    f1, f2 = (i for i in c.nodes if i != leader)
    return f1, f2


def next_message(sub: Any, timeout: float = 10.0) -> dict[str, Any]:
    """The next message (not a confirmation), waiting up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = sub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if msg is not None:
            return msg
    raise AssertionError("no message within the deadline")


def confirmations(sub: Any, n: int) -> list[dict[str, Any]]:
    return [sub.get_message(timeout=10) for _ in range(n)]


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_follower_subscriber_gets_what_another_node_publishes(
        cluster: LocalCluster, protocol: int) -> None:
    f1, f2 = followers(cluster)
    sub = client(cluster, f1, protocol).pubsub()
    sub.subscribe(f"news{protocol}")
    sub.psubscribe(f"n*s{protocol}")
    assert [m["type"] for m in confirmations(sub, 2)] == ["subscribe", "psubscribe"]
    # Published on the other follower (forwarded to the leader, applied everywhere):
    # no subscriber there, so PUBLISH answers 0, as a Redis node without subscribers.
    assert client(cluster, f2).publish(f"news{protocol}", "hello") == 0
    got = [next_message(sub), next_message(sub)]
    assert {(m["type"], m["channel"], m["data"]) for m in got} == {
        ("message", f"news{protocol}".encode(), b"hello"),
        ("pmessage", f"news{protocol}".encode(), b"hello")}
    # On the subscriber's node: one channel and one pattern subscription reach it.
    assert client(cluster, f1).publish(f"news{protocol}", "again") == 2
    assert client(cluster, f1).pubsub_numsub(f"news{protocol}") == [(f"news{protocol}".encode(), 1)]
    assert client(cluster, f1).pubsub_numpat() == 1
    sub.close()


def test_subscribers_on_every_node_see_one_order(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    f1, f2 = followers(cluster)
    subs = []
    for node in (leader, f1, f2):
        sub = client(cluster, node, 3).pubsub()
        sub.subscribe("order")
        confirmations(sub, 1)
        subs.append(sub)
    # Three publishers on three nodes, interleaved: the log decides one order.
    publishers = [client(cluster, node).pipeline(transaction=False)
                  for node in (leader, f1, f2)]
    for i in range(60):
        publishers[i % 3].publish("order", f"{i % 3}:{i}")
    for p in publishers:
        p.execute()
    seen = [[next_message(sub)["data"] for _ in range(60)] for sub in subs]
    assert sorted(seen[0]) == sorted(f"{i % 3}:{i}".encode() for i in range(60))
    assert seen[0] == seen[1] == seen[2]
    for sub in subs:
        sub.close()


def test_keyspace_events_for_set_del_expire_and_expired(cluster: LocalCluster) -> None:
    f1, f2 = followers(cluster)
    sub = client(cluster, f1).pubsub()
    sub.psubscribe("__keyspace@0__:ks:*")
    sub.subscribe("__keyevent@0__:expired")
    confirmations(sub, 2)
    writer = client(cluster, f2)
    writer.set("ks:a", "1")
    writer.expire("ks:a", 100)
    writer.delete("ks:a")
    writer.set("ks:b", "1", px=300)  # expires: the leader's EXPIRED entry deletes it
    events = [(m["channel"], m["data"]) for m in (next_message(sub) for _ in range(7))]
    assert events == [
        (b"__keyspace@0__:ks:a", b"set"),
        (b"__keyspace@0__:ks:a", b"expire"),
        (b"__keyspace@0__:ks:a", b"del"),
        (b"__keyspace@0__:ks:b", b"set"),
        (b"__keyspace@0__:ks:b", b"expire"),
        (b"__keyspace@0__:ks:b", b"expired"),
        (b"__keyevent@0__:expired", b"ks:b"),
    ]
    sub.close()


def test_config_set_notify_keyspace_events_is_per_node(cluster: LocalCluster) -> None:
    f1, f2 = followers(cluster)
    a, b = client(cluster, f1), client(cluster, f2)
    assert a.config_get("notify-keyspace-events") == {"notify-keyspace-events": "AKE"}
    try:
        assert b.config_set("notify-keyspace-events", "Ex")
        assert b.config_get("notify-keyspace-events") == {"notify-keyspace-events": "xE"}
        assert a.config_get("notify-keyspace-events") == {"notify-keyspace-events": "AKE"}
        with pytest.raises(redis.ResponseError, match="Invalid event class character"):
            b.config_set("notify-keyspace-events", "KEQ")
    finally:
        b.config_set("notify-keyspace-events", "KEA")


def test_resp2_subscribed_mode_refuses_other_commands(cluster: LocalCluster) -> None:
    f1, _ = followers(cluster)
    conn = client(cluster, f1).connection_pool.make_connection()
    try:
        conn.send_command("SUBSCRIBE", "x")
        assert conn.read_response() == [b"subscribe", b"x", 1]
        conn.send_command("GET", "x")
        with pytest.raises(redis.ResponseError, match=r"only \(P\|S\)SUBSCRIBE"):
            conn.read_response()
        conn.send_command("PING")
        assert conn.read_response() == [b"pong", b""]
        conn.send_command("RESET")
        assert conn.read_response() == b"RESET"
        conn.send_command("GET", "x")
        assert conn.read_response() is None
    finally:
        conn.disconnect()


def test_a_subscriber_that_does_not_read_is_disconnected(cluster: LocalCluster) -> None:
    f1, f2 = followers(cluster)
    conn = client(cluster, f1).connection_pool.make_connection()
    conn.connect()
    conn._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        conn.send_command("SUBSCRIBE", "flood")
        assert conn.read_response() == [b"subscribe", b"flood", 1]
        publisher = client(cluster, f2)
        before = int(client(cluster, f1).info("stats")["client_output_buffer_disconnects"])
        payload = b"x" * 16384
        deadline = time.monotonic() + 30
        published = 0
        while client(cluster, f1).pubsub_numsub("flood") != [(b"flood", 0)]:
            assert time.monotonic() < deadline, "the subscriber was never disconnected"
            pipe = publisher.pipeline(transaction=False)
            for _ in range(50):
                pipe.publish("flood", payload)
            pipe.execute()
            published += 50
        after = int(client(cluster, f1).info("stats")["client_output_buffer_disconnects"])
        assert after > before
        # By the byte limit (256 KiB + what the sockets hold, a few MiB at most: some
        # hundreds of 16 KiB messages), long before the backlog of 10,000 messages.
        assert published < 2000
    finally:
        conn.disconnect()


def test_redis_cli_subscribe(cluster: LocalCluster) -> None:
    f1, f2 = followers(cluster)
    host, port = cluster.client_addr(f1)
    proc = subprocess.Popen(["redis-cli", "-h", host, "-p", str(port), "SUBSCRIBE", "cli"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        assert lines == ["subscribe", "cli", "1"]
        client(cluster, f2).publish("cli", "from redis-py")
        lines = [proc.stdout.readline().strip() for _ in range(3)]
        assert lines == ["message", "cli", "from redis-py"]
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_idle_timeout_spares_subscribers(tmp_path: Path) -> None:
    with LocalCluster(tmp_path, nodes=1, extra_args=["--idle-timeout", "1"]) as c:
        node = c.wait_for_leader()
        host, port = c.client_addr(node)
        sub = client(c, node).pubsub()
        sub.subscribe("still")
        confirmations(sub, 1)
        idle = socket.create_connection((host, port), timeout=10)
        try:
            idle.sendall(b"PING\r\n")
            assert idle.recv(64) == b"+PONG\r\n"
            assert idle.recv(64) == b""  # closed after the idle timeout (recv waits for it)
        finally:
            idle.close()
        # The subscriber was idle as long, and is still subscribed.
        assert client(c, node).publish("still", "here") == 1
        assert next_message(sub)["data"] == b"here"
        sub.close()
