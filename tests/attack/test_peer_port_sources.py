"""Attacker round 4: the peer port's handshake gate (peer_accept.py) caps connections in
their handshake at 64, and 8 per source address, so eight addresses (127.0.0.2-9 here; on
a network, eight hosts or one IPv6 /64) that keep 8 silent connections each open, reopened
as the node cuts them at the 5 s handshake deadline, hold all 64: every other connection
is refused at accept. Established links are not in the gate, but a link that drops (a
restart, a network blip) cannot be accepted again while the flood lasts.

Expected: as on the client port, a newcomer from a source holding fewer than the largest
holder takes the slot of that holder's oldest connection, so a member on its own address
always gets its handshake in."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster
from wire.addr import parse_addr

pytestmark = [pytest.mark.timeout(90), pytest.mark.slow]

SOURCES = [f"127.0.0.{i}" for i in range(2, 10)]  # 8 sources x 8 = MAX_PENDING (64)


def refused_at_once(host: str, port: int, source: str = "127.0.0.1") -> bool:
    """Connect from ``source`` and see whether the node closes it at once (refused by the
    gate) or holds it waiting for a handshake."""
    s = socket.socket()
    try:
        s.bind((source, 0))
        s.settimeout(1.0)
        s.connect((host, port))
        try:
            return s.recv(1) == b""  # closed at once: refused
        except TimeoutError:
            return False  # held: admitted, waiting for our Hello
        except OSError:
            return True
    finally:
        s.close()


def closed_by_peer(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path, nodes=1, fsync="never") as c:
        c.wait_for_leader()
        yield c


def test_eight_sources_cannot_hold_every_peer_handshake_slot(cluster: LocalCluster) -> None:
    host, port = parse_addr(cluster.nodes[1].peer_addr)
    stop = threading.Event()
    flood: list[socket.socket] = []

    def keep_flooding() -> None:  # reopen what the node cuts, as an attacker would
        while not stop.is_set():
            for s in [s for s in flood if closed_by_peer(s)]:
                flood.remove(s)
                s.close()
            for source in SOURCES:
                alive = sum(1 for s in flood if s.getsockname()[0] == source)
                for _ in range(8 - alive):
                    s = socket.socket()
                    with contextlib.suppress(OSError):
                        s.bind((source, 0))
                        s.settimeout(1)
                        s.connect((host, port))
                        flood.append(s)
            stop.wait(0.2)

    thread = threading.Thread(target=keep_flooding, daemon=True)
    thread.start()
    try:
        # until the flood holds the gate: a further connection from a flooding source is
        # refused at once
        deadline = time.monotonic() + 20
        while not refused_at_once(host, port, SOURCES[0]) and time.monotonic() < deadline:
            time.sleep(0.1)  # polling the node: no event to wait on
        assert refused_at_once(host, port, SOURCES[0]), "the flood never filled its share"
        # a member connecting from its own address is admitted to its handshake
        admitted = [not refused_at_once(host, port) for _ in range(3)]
    finally:
        stop.set()
        thread.join()
        for s in flood:
            s.close()
    assert all(admitted), admitted
    assert not cluster.crashed(), cluster.logs_tail()
