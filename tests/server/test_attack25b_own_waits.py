"""attack25b: the client port's first connections wait with trio's own waits
(``OWN_WAITS_UP_TO``), later ones on the shared ReadPoller. With 1, 2, 3 connections
opening and closing (the 3rd on the poller, then the first two closed, then more), every
connection is still served (a command split over two sends too), the poller holds exactly
the connections accepted past the limit, and nothing is left registered or parked."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from chaos.cluster import free_ports
from raftkv.node.read_poller import ReadPoller
from raftkv.server.client_port import OWN_WAITS_UP_TO
from raftkv.testing import connect_and_ping, one_node_port, read_line


async def ping(c: trio.SocketStream) -> None:
    await c.send_all(b"PI")
    await trio.testing.wait_all_tasks_blocked()  # (the server reads the first half)
    await c.send_all(b"NG\r\n")
    with trio.fail_after(20):
        assert await read_line(c) == b"+PONG\r\n"


async def settle(server: object, open_count: int) -> None:
    with trio.fail_after(20):
        while len(server.connections) != open_count:  # type: ignore[attr-defined]
            await trio.testing.wait_all_tasks_blocked()
            await trio.lowlevel.checkpoint()


async def test_first_two_closed_third_on_the_poller_then_more(tmp_path: Path) -> None:
    assert OWN_WAITS_UP_TO == 2
    peer, client = free_ports(2)
    async with one_node_port(tmp_path / "data", peer, client, fsync="never") as (_, server):
        poller = ReadPoller.current()
        with trio.fail_after(20):
            a, b, c = [await connect_and_ping(client) for _ in range(3)]
        assert len(poller.registered) == 1  # c
        await a.aclose()
        await b.aclose()
        await settle(server, 1)
        await ping(c)
        with trio.fail_after(20):
            d = await connect_and_ping(client)  # 2 open at its accept: its own waits
            e = await connect_and_ping(client)  # 3: the poller
        assert len(poller.registered) == 2  # c, e
        await c.aclose()
        await settle(server, 2)
        for s in (d, e):
            await ping(s)
        assert len(poller.registered) == 1
        for s in (d, e):
            await s.aclose()
        await settle(server, 0)
        assert poller.registered == frozenset() and poller._parked == {}
