"""Slots for connections that have not sent a command yet (attack3). ``--max-new-clients``
(1,024) is one pool for every source: one host that opens 1,024 sockets and sends nothing
(or, on a TLS port, no ClientHello) locks every other client out for the first-command
timeout (10 s; 5 s for a TLS handshake), and again as soon as it reopens them. Live, on a
TLS port: 1,100 silent sockets, then ``redis-cli --tls ping`` failed three times in a row
(``SSL_connect failed: wrong version number``: it was answered the plain-text refusal).
The peer port caps handshakes per source address (8); the client port must too."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster
from raftkv.probe import call

pytestmark = [pytest.mark.timeout(60)]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path, nodes=1, fsync="never", extra_args=["--max-new-clients", "200"])
    with c.serving():
        yield c


def test_one_source_cannot_take_every_new_connection_slot(node: LocalCluster) -> None:
    host, port = node.client_addr(1)
    silent: list[socket.socket] = []
    try:
        for _ in range(200):  # from 127.0.0.2: another host, as far as the node can tell
            s = socket.socket()
            s.bind(("127.0.0.2", 0))
            s.settimeout(10)
            s.connect((host, port))
            silent.append(s)
        # A client from another address is served at once (probe.call: a fresh connection).
        reply = call(node.nodes[1].client_addr, "PING", timeout=5)
        assert "too many connections" not in str(reply), reply
    finally:
        for s in silent:
            s.close()
