"""All clients' buffers together are bounded (--client-buffer-total, Redis's
maxmemory-clients): each connection alone stays under its own query and output limits, so
only the total can stop many of them; past it the largest is disconnected."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster
from raftkv.node.sizes import GiB, total_limit
from raftkv.probe import call, parse_info
from raftkv.server.client_buffers import ClientBuffers
from raftkv.server.connection import Connection
from wire.addr import parse_addr
from wire.reply import OK
from wire.resp import encode_command

MiB = 1024 * 1024


def test_the_largest_connection_is_disconnected_until_the_total_is_under_the_bound() -> None:
    cut: list[tuple[int, int, int]] = []
    buffers = ClientBuffers(100, lambda conn, size, total: cut.append((conn.id, size, total)))
    a, b, c = (Connection(i, f"h:{i}") for i in (1, 2, 3))
    for conn in (a, b, c):
        buffers.open(conn)
    buffers.set_query(a, 30)
    buffers.add_output(b, 50)
    buffers.set_query(c, 20)
    assert buffers.total == 100 and cut == []  # at the bound is allowed
    buffers.set_query(c, 25)  # c crosses it, b (the largest) pays
    assert cut == [(2, 50, 55)] and buffers.total == 55
    buffers.add_output(b, -50)  # b's writer finishing later changes nothing
    buffers.close(b)
    assert buffers.total == 55
    buffers.set_query(a, 90)  # a alone is over: a goes, c stays
    assert cut[-1] == (1, 90, 25) and buffers.total == 25 and buffers.disconnects == 2
    buffers.close(c)
    assert buffers.total == 0


def test_the_default_bound_is_a_share_of_maxmemory_or_one_gib() -> None:
    assert total_limit(123, 0, 8 * MiB) == 123
    assert total_limit(0, 0, 8 * MiB) == GiB
    assert total_limit(0, 4 * GiB, 8 * MiB) == GiB
    assert total_limit(0, 64 * MiB, 8 * MiB) == 32 * MiB  # never under 4 maximal requests


def wait_for(cond: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)  # polling another process: no event to wait on
    raise AssertionError(f"timed out waiting for {what}")


def closed_by_peer(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the node may cut us off halfway: that is the point
        sock.sendall(data)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_many_connections_with_partial_queries_and_unread_replies_stay_under_the_total(
        tmp_path: Path) -> None:
    limit = 32 * MiB
    partial = 4 * MiB
    with LocalCluster(tmp_path, extra_args=["--client-buffer-total", str(limit)],
                      fsync="never") as c:
        leader = c.wait_for_leader()
        addr = c.nodes[leader].client_addr
        term = int(parse_info(call(addr, "INFO", "raft", timeout=10))["term"])
        assert call(addr, "SET", "big", b"v" * MiB, timeout=10) == OK
        host, port = parse_addr(addr)
        socks: list[socket.socket] = []
        try:
            readers: list[socket.socket] = []
            for _ in range(6):  # 16 MiB of replies each, never read
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.settimeout(10)
                sock.connect((host, port))
                send_quietly(sock, encode_command(b"GET", b"big") * 16)
                readers.append(sock)
            partials: list[socket.socket] = []
            header = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$8000000\r\n"
            for _ in range(12):  # 4 MiB of an 8 MB SET each, the rest never sent
                sock = socket.create_connection((host, port), timeout=10)
                send_quietly(sock, header + b"x" * partial)
                partials.append(sock)
            socks = readers + partials

            def settled() -> bool:
                alive = sum(not closed_by_peer(s) for s in partials)
                return alive * partial <= limit

            wait_for(settled, 30.0, "the node to cut the largest connections")
            clients = parse_info(call(addr, "INFO", "clients", timeout=10))
            stats = parse_info(call(addr, "INFO", "stats", timeout=10))
            assert int(clients["client_buffers_bytes"]) <= limit, clients
            assert int(clients["client_buffer_total_limit"]) == limit
            assert int(stats["client_buffer_total_disconnects"]) >= 4, stats
            assert "client buffers over --client-buffer-total" in \
                c.nodes[leader].log_path.read_text()
        finally:
            for sock in socks:
                sock.close()
        # The node is still the leader of the same term, and serves a new client.
        assert call(addr, "SET", "after", "v", timeout=10) == OK
        assert int(parse_info(call(addr, "INFO", "raft", timeout=10))["term"]) == term
        assert c.wait_for_leader() == leader
        assert not c.crashed(), c.logs_tail()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_multi_queues_and_watched_keys_count_toward_the_total(tmp_path: Path) -> None:
    """attack8: a MULTI queue and WATCHed keys stay in memory as long as the client likes,
    and no bound counted them (20 connections with an 8 MiB SET queued held 150 MB of a
    live node, client_buffers_bytes 27). Now they count with the query buffer."""
    limit = 32 * MiB
    value = b"x" * (4 * MiB)
    with LocalCluster(tmp_path, extra_args=["--client-buffer-total", str(limit)],
                      fsync="never") as c:
        leader = c.wait_for_leader()
        addr = c.nodes[leader].client_addr
        host, port = parse_addr(addr)
        socks: list[socket.socket] = []
        try:
            for i in range(6):  # 4 MiB queued each, and a PING to be counted after it
                sock = socket.create_connection((host, port), timeout=10)
                send_quietly(sock, encode_command(b"MULTI") + encode_command(
                    b"SET", b"k%d" % i, value) + encode_command(b"PING"))
                socks.append(sock)
            for i in range(6):  # 4 MiB of watched key each, and a PING
                sock = socket.create_connection((host, port), timeout=10)
                send_quietly(sock, encode_command(b"WATCH", b"w%d" % i + value))
                send_quietly(sock, encode_command(b"PING"))
                socks.append(sock)

            def cut() -> bool:  # (the sockets hold unread replies: ask the node)
                stats = parse_info(call(addr, "INFO", "stats", timeout=10))
                return int(stats["client_buffer_total_disconnects"]) >= 4

            wait_for(cut, 30.0, "the node to cut the largest connections")
            clients = parse_info(call(addr, "INFO", "clients", timeout=10))
            assert int(clients["client_buffers_bytes"]) <= limit, clients
        finally:
            for sock in socks:
                sock.close()
        assert call(addr, "SET", "after", "v", timeout=10) == OK
        assert not c.crashed(), c.logs_tail()


def read_confirmation(sock: socket.socket, size: int) -> None:
    """Read a (P)SUBSCRIBE confirmation echoing a name of about ``size`` bytes."""
    got = 0
    with contextlib.suppress(OSError):  # (cut off by the node: that is the point)
        while got < size:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return
            got += len(chunk)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_subscribed_names_count_toward_the_total(tmp_path: Path) -> None:
    """attack8: a connection may subscribe 10,000 channels or patterns, each name up to
    --max-request-bytes, kept for its life: 20 names of 8 MiB held 183 MB of a live node
    with client_buffers_bytes 27. Now they count with the query buffer."""
    limit = 32 * MiB
    name = b"c" * (4 * MiB)
    with LocalCluster(tmp_path, extra_args=["--client-buffer-total", str(limit)],
                      fsync="never") as c:
        leader = c.wait_for_leader()
        addr = c.nodes[leader].client_addr
        host, port = parse_addr(addr)
        socks: list[socket.socket] = []
        try:
            for i in range(12):  # 4 MiB of channel (or pattern) name each
                sock = socket.create_connection((host, port), timeout=10)
                verb = b"SUBSCRIBE" if i % 2 else b"PSUBSCRIBE"
                send_quietly(sock, encode_command(verb, b"%d" % i + name))
                socks.append(sock)
                read_confirmation(sock, len(name))  # (else its output buffer counts)

            def cut() -> bool:  # (the sockets hold unread confirmations: ask the node)
                stats = parse_info(call(addr, "INFO", "stats", timeout=10))
                return int(stats["client_buffer_total_disconnects"]) >= 4

            wait_for(cut, 30.0, "the node to cut the largest connections")
            clients = parse_info(call(addr, "INFO", "clients", timeout=10))
            assert int(clients["client_buffers_bytes"]) <= limit, clients
        finally:
            for sock in socks:
                sock.close()
        assert call(addr, "SET", "after", "v", timeout=10) == OK
        assert not c.crashed(), c.logs_tail()
