"""Attacker round 4: the per-source share of ``--max-new-clients`` (attack3) still lets a
few sources starve everyone else. One source may hold a quarter of the slots, so four
addresses (four hosts, a NAT pool, or an IPv6 /64, which gives one machine 2^64 source
addresses) that open sockets and send nothing take every slot: any other client is
refused with ``-ERR too many connections that have not sent a command yet`` until they
let go, and they reopen at once. Live: 4 x 8 silent sockets from 127.0.0.2-5 against
``--max-new-clients 32``, then ``PING`` from 127.0.0.1 was refused.

Expected: a newcomer from a source that holds fewer of the slots than the largest holder
takes the slot of that holder's oldest silent connection (fair shares), so a host with no
connection pending is always served while the port is flooded from elsewhere."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.cluster import LocalCluster
from raftkv.probe import call
from raftkv.server.client_port import source_key

pytestmark = [pytest.mark.timeout(60)]

MAX_NEW = 32  # so 8 per source


@pytest.fixture
def node(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path, nodes=1, fsync="never",
                     extra_args=["--max-new-clients", str(MAX_NEW)])
    c.start()
    try:
        c.wait_for_leader()
        yield c
    finally:
        c.close()


def silent_from(source: str, host: str, port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(10)
        s.connect((host, port))
        socks.append(s)
    return socks


def test_four_sources_cannot_take_every_new_connection_slot(node: LocalCluster) -> None:
    host, port = node.client_addr(1)
    silent: list[socket.socket] = []
    try:
        for i in range(2, 6):  # 127.0.0.2 .. 127.0.0.5: 8 each, the whole pool
            silent += silent_from(f"127.0.0.{i}", host, port, MAX_NEW // 4)
        # one more from an attacker source is refused (its source is at its share) ...
        extra = silent_from("127.0.0.2", host, port, 1)[0]
        extra.settimeout(5)
        assert b"too many connections" in extra.recv(200)
        # ... but a client from a source with nothing pending is served, several times
        for _ in range(3):
            reply = call(node.nodes[1].client_addr, "PING", timeout=5)
            assert "too many connections" not in str(reply), reply
    finally:
        for s in silent:
            s.close()


def test_ipv6_sources_are_counted_per_64_prefix() -> None:
    """An IPv6 host usually owns a whole /64 (SLAAC, privacy addresses): counted per
    address, one machine is any number of sources. IPv4 counts per address, and an
    IPv4-mapped IPv6 address (a dual-stack socket) as that IPv4 address."""
    assert source_key("2001:db8:1:2::1") == source_key("2001:db8:1:2:ffff:1:2:3")
    assert source_key("2001:db8:1:2::1") != source_key("2001:db8:1:3::1")
    assert source_key("::ffff:10.0.0.1") == source_key("10.0.0.1")
    assert source_key("10.0.0.1") != source_key("10.0.0.2")
    assert source_key("fe80::1%eth0") == source_key("fe80::2%eth0")
