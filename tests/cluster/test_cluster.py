"""A real 3-node cluster on loopback, used through real clients (redis-py, redis-cli, nc)."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from chaos.cluster import LocalCluster
from wire.reply import SimpleString
from wire.resp import encode_command
from wire.resp_reply import NEED_MORE, ReplyParser

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path) as c:
        c.wait_for_leader()
        yield c


def client(c: LocalCluster, node_id: int, **kw: object) -> redis.Redis:
    host, port = c.client_addr(node_id)
    return redis.Redis(host=host, port=port, **{"socket_timeout": 10, **kw})


def retry(fn, timeout: float = 10.0):
    """Call ``fn`` until it stops raising a retryable error (TRYAGAIN during elections)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (redis.ResponseError, redis.ConnectionError) as exc:
            if time.monotonic() > deadline or ("TRYAGAIN" not in str(exc) and not isinstance(
                exc, redis.ConnectionError
            )):
                raise
            time.sleep(0.05)


def raw(c: LocalCluster, node_id: int, payload: bytes, expect_lines: int) -> list[bytes]:
    """Send raw bytes to the client port; read ``expect_lines`` CRLF-terminated lines."""
    with socket.create_connection(c.client_addr(node_id), timeout=10) as s:
        s.sendall(payload)
        buf = b""
        while buf.count(b"\r\n") < expect_lines:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return buf.split(b"\r\n")[:expect_lines]


def test_write_through_each_node_is_read_through_every_node(cluster: LocalCluster) -> None:
    for writer in cluster.nodes:
        assert client(cluster, writer).set(f"k{writer}", f"v{writer}") is True
    for reader in cluster.nodes:
        r = client(cluster, reader)
        for writer in cluster.nodes:
            assert r.get(f"k{writer}") == f"v{writer}".encode()


def test_redis_py_resp3_default_and_resp2_and_pipeline(cluster: LocalCluster) -> None:
    for node_id in cluster.nodes:
        r3 = client(cluster, node_id)  # redis-py 8 opens with HELLO 3
        assert r3.ping() is True
        assert r3.get("missing") is None
        r2 = client(cluster, node_id, protocol=2)
        assert r2.get("missing") is None
    r = client(cluster, 2)
    with r.pipeline(transaction=False) as pipe:
        for i in range(1000):
            pipe.set(f"p{i}", i)
        assert pipe.execute() == [True] * 1000
    with client(cluster, 3).pipeline(transaction=False) as pipe:
        for i in range(1000):
            pipe.get(f"p{i}")
        assert pipe.execute() == [str(i).encode() for i in range(1000)]
    assert client(cluster, 1).incr("counter") == 1
    assert client(cluster, 2).incrby("counter", 5) == 6
    assert client(cluster, 3).execute_command("CAS", "counter", "6", "7") == 1
    assert client(cluster, 1).execute_command("CAS", "counter", "6", "8") == 0
    assert client(cluster, 2).get("counter") == b"7"


def test_inline_commands_and_the_original_forms(cluster: LocalCluster) -> None:
    lines = raw(cluster, 2, b"set mykey=hello\r\nget mykey\nPING\r\nSET \"a b\" 'c d'\r\n"
                b"GET \"a b\"\r\n", 7)
    assert lines == [b"+OK", b"$5", b"hello", b"+PONG", b"+OK", b"$3", b"c d"]


def test_redis_cli_one_shot(cluster: LocalCluster) -> None:
    host, port = cluster.client_addr(3)
    run = lambda *a: subprocess.run(  # noqa: E731
        ["redis-cli", "-h", host, "-p", str(port), *a], capture_output=True, text=True, timeout=30
    )
    assert run("SET", "cli", "works").stdout.strip() == "OK"
    assert run("GET", "cli").stdout.strip() == "works"
    out = run("INFO", "raft").stdout
    assert "# Raft" in out and "leader_id:" in out
    assert run("GET", "nope").stdout.strip() == ""


def test_leader_kill_new_leader_and_old_leader_catches_up(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    survivor = next(i for i in cluster.nodes if i != leader)
    assert retry(lambda: client(cluster, survivor).set("before", "1"))
    cluster.kill(leader)
    new_leader = cluster.wait_for_leader(exclude=leader)
    assert new_leader != leader
    for i in range(20):
        assert retry(lambda i=i: client(cluster, survivor).set(f"after{i}", i))
    cluster.start(leader)
    cluster.wait_for_leader()
    old = client(cluster, leader)
    assert retry(lambda: old.get("after19")) == b"19"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        info = cluster.info(leader)
        lead = cluster.info(new_leader)
        if info and lead and info["role"] == "follower" and \
                int(info["last_applied"]) >= int(lead["commit_index"]) - 1:
            break
        time.sleep(0.05)
    assert info and info["role"] == "follower"


def test_leadership_transfer_by_admin_command(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    target = next(i for i in cluster.nodes if i != leader)
    reply = client(cluster, leader).execute_command("RAFT", "TRANSFER", str(target))
    assert reply in (b"OK", "OK", True)
    assert cluster.wait_for_leader(exclude=leader) == target


def test_whole_cluster_kill9_loses_no_acknowledged_write(cluster: LocalCluster) -> None:
    acked = {}
    r = client(cluster, 1)
    for i in range(200):
        r.set(f"d{i}", f"v{i}")
        acked[f"d{i}"] = f"v{i}".encode()
    for node_id in cluster.nodes:
        cluster.kill(node_id)
    cluster.start()
    cluster.wait_for_leader()
    r = client(cluster, 2)
    values = retry(lambda: r.mget(list(acked)))
    assert dict(zip(acked, values, strict=True)) == acked


def test_bad_input_on_both_ports_leaves_the_node_serving(cluster: LocalCluster) -> None:
    # Garbage and protocol errors on the client port: Redis's error text, then close.
    lines = raw(cluster, 1, b"*2\r\n$3\r\nGET\r\n$-5\r\n", 1)
    assert lines[0].startswith(b"-ERR Protocol error")
    with socket.create_connection(cluster.client_addr(1), timeout=5) as s:
        s.sendall(b"\x00\xff" * 40000 + b"\r\n")
    # Garbage, a huge length prefix and a half-open connection on the peer port.
    peer_host, _, peer_port = cluster.nodes[1].peer_addr.rpartition(":")
    for junk in (b"\xff\xff\xff\xff", b"GET / HTTP/1.1\r\n\r\n", b"\x00\x00\x00\x05hello"):
        with socket.create_connection((peer_host, int(peer_port)), timeout=5) as s:
            s.sendall(junk)
    idle = socket.create_connection((peer_host, int(peer_port)), timeout=5)
    try:
        assert retry(lambda: client(cluster, 1).set("still", "ok")) is True
        assert client(cluster, 2).get("still") == b"ok"
    finally:
        idle.close()


def test_pipelined_commands_keep_program_order_on_every_node(cluster: LocalCluster) -> None:
    # A pipelined GET after a SET must see it, and a GET before a SET must not see it,
    # on the leader and on followers (regression: reads used to race ahead of writes).
    for node_id in cluster.nodes:
        with socket.create_connection(cluster.client_addr(node_id), timeout=10) as s:
            stream = b"".join(
                encode(["GET", f"po{node_id}"]) + encode(["SET", f"po{node_id}", f"v{i}"])
                + encode(["GET", f"po{node_id}"])
                for i in range(50)
            )
            s.sendall(stream)
            parser = ReplyParser()
            replies: list[object] = []
            while len(replies) < 150:
                parser.feed(s.recv(65536))
                while (reply := parser.next_reply()) is not NEED_MORE:
                    replies.append(reply)
        for i in range(50):
            before, ok, after = replies[3 * i: 3 * i + 3]
            assert before == (None if i == 0 else f"v{i - 1}".encode())
            assert ok == SimpleString("OK")
            assert after == f"v{i}".encode()


def encode(args: list[str]) -> bytes:
    return encode_command(*args)


def test_clients_that_reset_their_connection_leave_every_node_serving(
    cluster: LocalCluster,
) -> None:
    # Regression: a reset (RST with replies still unread, as redis-benchmark does when it
    # stops) used to escape the connection handler inside an ExceptionGroup and kill the node.
    for node_id in cluster.nodes:
        for _ in range(3):
            s = socket.create_connection(cluster.client_addr(node_id), timeout=10)
            s.sendall(b"".join(encode(["SET", f"rst{i}", "x" * 100]) for i in range(100)))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    time.sleep(0.5)  # let the nodes hit the reset while writing the replies
    for node_id, node in cluster.nodes.items():
        assert node.alive, cluster.logs_tail()
        assert retry(lambda n=node_id: client(cluster, n).set(f"alive{n}", 1)) is True


def test_kill9_of_every_node_under_load_loses_no_acknowledged_write(
    cluster: LocalCluster,
) -> None:
    # Writers on every node keep writing unique keys; all three nodes die by kill -9 at
    # once in the middle of it. After a restart every acknowledged key must be there.
    acked: dict[str, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()
    started = threading.Barrier(7)

    def writer(w: int) -> None:
        r = client(cluster, 1 + w % 3, socket_timeout=2)
        started.wait(timeout=30)
        n = 0
        while not stop.is_set():
            key, value = f"load{w}-{n}", f"v{w}-{n}".encode()
            n += 1
            try:
                if r.set(key, value) is True:
                    with lock:
                        acked[key] = value
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                pass  # unknown or refused: not acknowledged, so not owed
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    started.wait(timeout=30)
    deadline = time.monotonic() + 10
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)  # let load build up: polling a counter other threads fill
    for node in cluster.nodes.values():
        assert node.proc is not None
        node.proc.send_signal(signal.SIGKILL)  # all at once, mid-write
    for node_id in cluster.nodes:
        cluster.kill(node_id)  # reap
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 300, "the load never built up"
    cluster.start()
    cluster.wait_for_leader()
    r = client(cluster, 3)
    keys = sorted(acked)
    values = retry(lambda: r.mget(keys))
    missing = [k for k, v in zip(keys, values, strict=True) if v != acked[k]]
    assert missing == []
