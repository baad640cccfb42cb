"""An idle link, plain TCP or mutual TLS, is written by ``send`` itself
(PeerTransport._write_direct), not by a wake-up of its sender task: one write, no scheduler
pass. Order on the link is kept whatever mix of direct writes, partial writes and queued
messages carries it (on TLS, the records a full socket left in the stream go first)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from test_transport import LIMITS, Note, Peer, connected, receive, start

from raftkv import certs
from raftkv.node import transport
from raftkv.node.tls import PeerTLS, peer_tls


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    good = tmp_path_factory.mktemp("pki")
    certs.create(good)
    return good


@pytest.fixture(params=["plain", "tls"])
def tls(request: pytest.FixtureRequest, pki: Path) -> PeerTLS | None:
    if request.param == "plain":
        return None
    return peer_tls(str(pki / "node.crt"), str(pki / "node.key"), str(pki / "ca.crt"))


async def mesh(nursery: trio.Nursery, n: int, tls: PeerTLS | None) -> list[Peer]:
    """n transports (mutual TLS if ``tls``), every one a peer of every other, links up."""
    nodes = [await start(nursery, i, limits=LIMITS, tls=tls) for i in range(1, n + 1)]
    for p in nodes:
        p.t.update_peers({q.id: q.addr for q in nodes if q is not p})
    for p in nodes:
        await p.t.wait_until(connected(p, *(q.id for q in nodes if q is not p)))
    return nodes


async def test_a_message_on_an_idle_link_is_written_before_send_returns(nursery, tls) -> None:
    with trio.fail_after(10):
        a, b = await mesh(nursery, 2, tls)
        await trio.testing.wait_all_tasks_blocked()  # a's sender task waits on its queue
        before = a.t.stats()[2].sent
        assert a.t.send(Note(1, 2, 0))
        # No checkpoint since: only a write inside send() can have counted it.
        assert a.t.stats()[2].sent == before + 1
        assert not a.t.backlog()
        assert a.t.send_many([Note(1, 2, 1), Note(1, 2, 2)]) == 2
        assert a.t.stats()[2].sent == before + 3
        assert await receive(b, 3) == [Note(1, 2, seq) for seq in range(3)]


async def test_a_burst_that_fills_the_socket_keeps_its_order(nursery, tls) -> None:
    """Direct writes until the socket buffer is full; the unsent end of the partial one is
    the sender task's to write first, and every message after it is queued behind it."""
    with trio.fail_after(15):
        a, b = await mesh(nursery, 2, tls)
        await trio.testing.wait_all_tasks_blocked()
        data = b"d" * 20_000  # well under DIRECT_MAX_BULK: each may go direct
        count = 600  # 12 MB: more than a loopback socket's buffers take at once
        partial = False
        for seq in range(count):
            assert a.t.send(Note(1, 2, seq, data))
            partial = partial or a.t.backlog()  # (a direct write left something)
        assert partial, "the burst never filled the socket: the test proves nothing"
        assert a.t.backlog()
        got = await receive(b, count)
        await a.t.wait_until(lambda: not a.t.backlog())
    assert [m.seq for m in got] == list(range(count))
    assert all(m.data == data for m in got)
    assert a.t.stats()[2].dropped == 0


async def test_send_many_keeps_order_around_a_message_that_must_be_queued(nursery, tls) -> None:
    """A message too large for a direct write goes through the sender task; what the same
    batch had for that link before it is written first, what follows it queues behind."""
    with trio.fail_after(10):
        a, b = await mesh(nursery, 2, tls)
        await trio.testing.wait_all_tasks_blocked()
        big = b"b" * transport.DIRECT_MAX_BULK
        batch = [Note(1, 2, 0), Note(1, 2, 1, big), Note(1, 2, 2)]
        assert a.t.send_many(batch) == 3
        assert await receive(b, 3) == batch
