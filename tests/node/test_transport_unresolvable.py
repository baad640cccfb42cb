"""A peer (or learner) whose address does not resolve is logged (session 11).

Before: a dial whose name lookup failed (``socket.gaierror``: a misspelt host in
``--cluster`` or ``RAFT ADDNODE``, a container name that is gone) was logged at DEBUG only,
so a learner added under a wrong name never caught up and nothing said why. Now a WARNING
names the peer, its address and the resolver's error, at most once per 10 s per peer
(the transport's LogThrottle), however often the link redials.

The resolver is trio's custom hostname resolver, so the test needs no DNS and fails the
same way everywhere."""

from __future__ import annotations

import logging
import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from raftkv.node.transport import PeerTransport, TransportLimits

BAD_HOST = "no-such-peer.example"
LIMITS = TransportLimits(stall_timeout=2.0, keepalive_interval=0.5, hello_timeout=2.0,
                         dial_backoff_base=0.01, dial_backoff_max=0.05)


class Resolver(trio.abc.HostnameResolver):
    """``BAD_HOST`` does not resolve; every other name is refused (no lookups leave)."""

    async def getaddrinfo(self, host: Any, port: Any, family: int = 0, type: int = 0,
                          proto: int = 0, flags: int = 0) -> Any:
        if host in (BAD_HOST, BAD_HOST.encode()):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    async def getnameinfo(self, sockaddr: Any, flags: int) -> Any:
        raise NotImplementedError


@pytest.fixture
def warnings() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("raftkv.transport")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


async def test_an_unresolvable_peer_is_logged_once_per_interval(
        warnings: list[logging.LogRecord]) -> None:
    previous = trio.socket.set_custom_hostname_resolver(Resolver())
    inbox, _ = trio.open_memory_channel[object](16)
    t = PeerTransport(node_id=1, cluster_id="c", listen=("127.0.0.1", 0),
                      advertise_peer_addr="127.0.0.1:1", client_addr="127.0.0.1:2",
                      peers={7: f"{BAD_HOST}:7101"}, inbound=inbox, limits=LIMITS,
                      rng=random.Random(1))
    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                await nursery.start(t.run)
                await t.wait_until(lambda: t.stats()[7].dial_failures >= 10)
                nursery.cancel_scope.cancel()
    finally:
        trio.socket.set_custom_hostname_resolver(previous)
    lines = [r for r in warnings if r.getMessage() == "cannot resolve peer address"]
    assert len(lines) == 1, [r.getMessage() for r in warnings]  # 10 dials, one line
    fields = lines[0].fields  # type: ignore[attr-defined]
    assert fields["peer"] == 7 and fields["addr"] == f"{BAD_HOST}:7101"
    assert "Name or service not known" in fields["error"]
