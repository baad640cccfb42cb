"""raftkv.node.peer_accept: connections to the peer port that have not finished their
handshake are capped in total and per source; one over a cap is closed at once."""

from __future__ import annotations

from types import SimpleNamespace

import attrs
import pytest
import trio
from test_transport import LIMITS, connected, start

from raftkv.node.peer_accept import AcceptGate


def fake_stream(host: str) -> SimpleNamespace:
    return SimpleNamespace(socket=SimpleNamespace(getpeername=lambda: (host, 1)))


async def test_caps_in_total_and_per_source_and_frees_slots_at_the_handshake() -> None:
    gate = AcceptGate(max_pending=3, max_per_source=2)
    started: list[str] = []
    cancelled: list[SimpleNamespace] = []
    release = trio.Event()

    async def handler(stream: SimpleNamespace) -> None:
        started.append(stream.socket.getpeername()[0])
        try:
            await release.wait()
        except trio.Cancelled:
            cancelled.append(stream)
            raise

    gated = gate.wrap(handler)
    a1, a2, a3, b1, b2, c1 = (fake_stream(h) for h in ("a", "a", "a", "b", "b", "c"))
    async with trio.open_nursery() as nursery:
        for s in (a1, a2, a3, b1, b2):  # one at a time, as the listener accepts them
            nursery.start_soon(gated, s)
            await trio.testing.wait_all_tasks_blocked()
        # a3: over the per-source cap; b2: over the total, and b would then hold as many
        # as a, the largest holder. Both returned at once.
        assert started == ["a", "a", "b"] and gate.pending == 3 and gate.refused == 2
        # c1: over the total, but c holds none and a holds two: a's oldest (a1) is
        # cancelled and c1 takes its slot (attack4: fair shares)
        nursery.start_soon(gated, c1)
        await trio.testing.wait_all_tasks_blocked()
        assert started == ["a", "a", "b", "c"] and cancelled == [a1]
        assert gate.pending == 3 and gate.refused == 2 and gate.evicted == 1
        gate.handshaken(a2)  # authenticated: its slot is free, the link carries on
        gate.handshaken(a2)  # (idempotent: the wrapper calls it again at the end)
        assert gate.pending == 2
        nursery.start_soon(gated, a3)
        await trio.testing.wait_all_tasks_blocked()
        assert started == ["a", "a", "b", "c", "a"] and gate.pending == 3
        release.set()
    assert gate.pending == 0 and cancelled == [a1]


def test_caps_must_be_positive() -> None:
    with pytest.raises(ValueError):
        AcceptGate(max_pending=0)


async def test_a_flood_of_silent_connections_is_closed_at_once_and_a_peer_gets_in(
        nursery) -> None:
    """300 connections that never send a Hello took every descriptor of a node limited to
    128 (each held for hello_timeout). Here 12 from 127.0.0.2 against a per-source cap
    of 3 and a 30 s handshake deadline: 9 are closed at once, and a peer dialling from
    127.0.0.1 meanwhile still connects."""
    slow = attrs.evolve(LIMITS, hello_timeout=30.0)
    a = await start(nursery, 1, limits=slow)
    a.t.accept_gate.max_per_source = 3
    flood: list[trio.socket.SocketType] = []
    try:
        for _ in range(12):
            sock = trio.socket.socket()
            await sock.bind(("127.0.0.2", 0))
            await sock.connect(("127.0.0.1", a.port))
            flood.append(sock)
        closed = 0
        nine_closed = trio.Event()

        async def watch(sock: trio.socket.SocketType) -> None:
            nonlocal closed
            try:
                data = await sock.recv(1)
            except OSError:  # reset
                data = b""
            assert data == b""
            closed += 1
            if closed == 9:
                nine_closed.set()

        async with trio.open_nursery() as watchers:
            for sock in flood:
                watchers.start_soon(watch, sock)
            with trio.fail_after(10):  # far below the 30 s deadline of a held connection
                await nine_closed.wait()
            await trio.testing.wait_all_tasks_blocked()
            watchers.cancel_scope.cancel()
        assert closed == 9
        assert a.t.accept_gate.pending == 3 and a.t.accept_gate.refused == 9
        b = await start(nursery, 2, limits=slow)
        b.t.update_peers({1: a.addr})
        a.t.update_peers({2: b.addr})
        with trio.fail_after(10):
            await b.t.wait_until(connected(b, 1))
    finally:
        for sock in flood:
            sock.close()
