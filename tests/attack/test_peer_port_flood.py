"""The attacker's peer-port descriptor test (branch ``attacker``, test_peer_cluster.py),
against a real 3-node cluster: silent connections to the peer port must not take the
descriptors the client port and storage need (raftkv/node/peer_accept.py)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster
from raftkv.probe import call
from wire.addr import parse_addr
from wire.reply import OK

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def closed_by_peer(socks: list[socket.socket]) -> int:
    """How many of ``socks`` the other end has closed (EOF or reset), without blocking."""
    closed = 0
    for sock in socks:
        sock.setblocking(False)  # (a socket with a timeout would wait for it first)
        try:
            closed += sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    return closed


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path) as c:
        c.wait_for_leader()
        yield c


def test_connections_to_the_peer_port_cannot_take_every_descriptor(
        cluster: LocalCluster) -> None:
    """The client port caps its connections below the open-file limit (a reserve of 96 for
    storage and peers) and caps connections that have sent no command; the peer port capped
    nothing: connections that never send a Hello are held for hello_timeout (5 s) and can
    be replaced as fast as they time out. Under a limit of 128 descriptors, 300 such
    connections took all of them: clients got EMFILE at accept (the node logged 'accept
    failed ... clients=0'), and a peer link that drops meanwhile cannot be accepted again.
    Expected: a client can still connect and write while the peer port is flooded."""
    c = cluster
    leader = c.wait_for_leader()
    proc = c.nodes[leader].proc
    assert proc is not None
    subprocess.run(["prlimit", "--pid", str(proc.pid), "--nofile=128:128"], check=True)
    host, port = parse_addr(c.nodes[leader].peer_addr)
    flood: list[socket.socket] = []
    try:
        for _ in range(300):
            with contextlib.suppress(OSError):
                flood.append(socket.create_connection((host, port), timeout=1))
        # Until the flood is in: the node's descriptor table full (no cap), or all but the
        # capped handshakes (8 per source) closed by the node (the accept gate).
        deadline = time.monotonic() + 10
        while (len(os.listdir(f"/proc/{proc.pid}/fd")) < 128
               and closed_by_peer(flood) < len(flood) - 8 and time.monotonic() < deadline):
            time.sleep(0.05)  # polling the node's descriptor table and our sockets
        try:
            reply: object = call(c.nodes[leader].client_addr, "SET", "during-flood", "v",
                                 timeout=4.0)
        except OSError as exc:  # (TimeoutError: accepted by no one)
            reply = exc
    finally:
        for sock in flood:
            sock.close()
    assert reply == OK, reply
    assert not c.crashed(), c.logs_tail()
