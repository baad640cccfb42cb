"""The ops HTTP port as a way to get healthy nodes restarted (attack2 branch, round 2).
Fails today.

``/livez`` is what the README tells Kubernetes to use for liveness and ``/readyz`` what
the Dockerfile's HEALTHCHECK polls; the port listens on 0.0.0.0 in the image and the
example config. The port serves 32 connections at once and answers ``503 too many
connections`` past that, *whatever the path*; a connection may take 5 s to send its
head. So 32 idle sockets from anyone who can reach the port, reopened every 5 s, make
``/livez`` answer 503 on a perfectly healthy node (seen live: 503 with 200 idle sockets,
and 503 during a 32-connection slowloris), and the orchestrator restarts it; done to
every node, the cluster is restarted in a loop. A probe must not be decided by strangers
holding sockets.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster, free_ports

pytestmark = [pytest.mark.timeout(60)]

HOLDERS = 40  # over the 32-connection cap


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[LocalCluster, tuple[str, int]]]:
    (port,) = free_ports(1)
    c = LocalCluster(tmp_path, nodes=1, fsync="never",
                     extra_args=["--metrics-addr", f"127.0.0.1:{port}"])
    c.start()
    try:
        c.wait_for_leader()
        yield c, ("127.0.0.1", port)
    finally:
        c.close()


def _get(addr: tuple[str, int], path: str) -> bytes:
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.split(b"\r\n", 1)[0]


def test_idle_sockets_do_not_fail_the_liveness_probe(node) -> None:
    """A healthy node's /livez answers 200 while strangers hold 40 idle connections to
    the ops port (today: ``503 Service Unavailable``, body ``too many connections``)."""
    _, addr = node
    assert _get(addr, "/livez") == b"HTTP/1.1 200 OK"
    holders = [socket.create_connection(addr, timeout=10) for _ in range(HOLDERS)]
    try:
        # Each holder is accepted (its handler started) once it can be answered at all:
        # a probe of our own after them is then behind every one of them.
        status = _get(addr, "/livez")
    finally:
        for s in holders:
            s.close()
    assert status == b"HTTP/1.1 200 OK", status


def _first_bytes(s: socket.socket) -> bytes:
    """What the server sends first: b"" if it closed without answering."""
    s.settimeout(15)
    try:
        return s.recv(64)
    except ConnectionResetError:
        return b""


@pytest.mark.slow
def test_when_full_newcomers_are_refused_or_close_an_older_idle_connection(node) -> None:
    """Pinned by the fix (fix-a), then by harden9: a newcomer past the cap that has not
    sent its head closes one connection that has had STALLED_AFTER to send its own (closed
    without a reply), or else gets a 503 at accept (a flood's newcomers arriving together
    no longer evict each other); the rest get the usual 408 when their head deadline
    passes. So the port never holds more than the cap for long."""
    _, addr = node
    holders = [socket.create_connection(addr, timeout=10) for _ in range(HOLDERS)]
    try:
        assert _get(addr, "/livez") == b"HTTP/1.1 200 OK"
        first = [_first_bytes(s) for s in holders]
    finally:
        for s in holders:
            s.close()
    evicted = sum(1 for data in first if data == b"")
    refused = sum(1 for data in first if data.startswith(b"HTTP/1.1 503"))
    timed_out = sum(1 for data in first if data.startswith(b"HTTP/1.1 408"))
    assert evicted + refused + timed_out == HOLDERS, first
    assert timed_out <= 32 and evicted + refused >= HOLDERS - 32, (evicted, refused, timed_out)
