"""The plain client port waits for its connections' commands on the shared ReadPoller
(raftkv.node.read_poller) once more than a couple are open (the first ones wait with
trio's own waits): each such connection is registered once, and once connections have
come and gone (closed idle, closed with a command unanswered, closed by the server) none is
left registered or parked."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.lowlevel
import trio.testing

from chaos.cluster import free_ports
from raftkv.node.read_poller import ReadPoller
from raftkv.server.client_port import OWN_WAITS_UP_TO
from raftkv.testing import connect_and_ping, one_node_port, read_line


async def test_connections_come_and_go_and_leave_no_registration(tmp_path: Path) -> None:
    peer, client = free_ports(2)
    async with one_node_port(tmp_path / "data", peer, client, fsync="never") as (_, server):
        poller = ReadPoller.current()
        for _ in range(3):
            with trio.fail_after(20):
                clients = [await connect_and_ping(client) for _ in range(30)]
            # Each served connection, once; the first ones wait with trio's own waits
            # (OWN_WAITS_UP_TO: few clients do without the poller's task).
            assert len(poller.registered) == 30 - OWN_WAITS_UP_TO
            for c in clients[:10]:  # idle, its reader parked on the poller
                await c.aclose()
            for c in clients[10:20]:  # a command sent and never read
                await c.send_all(b"SET k v\r\nGET k\r\n")
                await c.aclose()
            for c in clients[20:]:  # the server closes it
                await c.send_all(b"QUIT\r\n")
                with trio.fail_after(20):
                    assert await read_line(c) == b"+OK\r\n"
                await c.aclose()
            with trio.fail_after(20):
                while server.connections:
                    await trio.testing.wait_all_tasks_blocked()
                    await trio.lowlevel.checkpoint()
            assert poller.registered == frozenset() and poller._parked == {}


async def test_the_first_connections_wait_without_the_poller_and_later_ones_on_it(
        tmp_path: Path) -> None:
    peer, client = free_ports(2)
    async with one_node_port(tmp_path / "data", peer, client, fsync="never") as _:
        poller = ReadPoller.current()
        with trio.fail_after(20):
            few = [await connect_and_ping(client) for _ in range(OWN_WAITS_UP_TO)]
        assert poller.registered == frozenset()
        with trio.fail_after(20):
            more = [await connect_and_ping(client) for _ in range(3)]
        assert len(poller.registered) == 3
        for c in few + more:  # each still served, after its reader waited for it
            await c.send_all(b"SET k v\r\n")
            with trio.fail_after(20):
                assert await read_line(c) == b"+OK\r\n"
        for c in few + more:
            await c.aclose()
