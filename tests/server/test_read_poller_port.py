"""The plain client port waits for its connections' commands on the shared ReadPoller
(raftkv.node.read_poller): each connection is registered once, and once connections have
come and gone (closed idle, closed with a command unanswered, closed by the server) none is
left registered or parked."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import trio
import trio.lowlevel
import trio.testing

from chaos.cluster import free_ports
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.read_poller import ReadPoller
from raftkv.node.settings import NodeSettings
from raftkv.raft import Role
from raftkv.server.client_port import ClientServer, serve_clients


async def _reply(stream: trio.SocketStream) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        with trio.fail_after(20):
            more = await stream.receive_some(1024)
        assert more, "connection closed"
        data += more
    return data


async def test_connections_come_and_go_and_leave_no_registration(tmp_path: Path) -> None:
    peer, client = free_ports(2)
    settings = NodeSettings(node_id=1, client_addr=f"127.0.0.1:{client}",
                            peer_addr=f"127.0.0.1:{peer}", cluster={1: f"127.0.0.1:{peer}"},
                            data_dir=str(tmp_path / "data"), fsync="never",
                            snapshot_entries=0)
    node = Node(settings, admin=Pending.of)
    server = ClientServer(node)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run, partial(serve_clients, server))
        with trio.fail_after(30):
            while node.core.role is not Role.LEADER:
                await node.driver.role_changed.wait()
        poller = ReadPoller.current()
        for _ in range(3):
            clients = [await trio.open_tcp_stream("127.0.0.1", client) for _ in range(30)]
            for c in clients:
                await c.send_all(b"PING\r\n")
                assert await _reply(c) == b"+PONG\r\n"
            assert len(poller.registered) == 30  # each served connection, once
            for c in clients[:10]:  # idle, its reader parked on the poller
                await c.aclose()
            for c in clients[10:20]:  # a command sent and never read
                await c.send_all(b"SET k v\r\nGET k\r\n")
                await c.aclose()
            for c in clients[20:]:  # the server closes it
                await c.send_all(b"QUIT\r\n")
                assert await _reply(c) == b"+OK\r\n"
                await c.aclose()
            with trio.fail_after(20):
                while server.connections:
                    await trio.testing.wait_all_tasks_blocked()
                    await trio.lowlevel.checkpoint()
            assert poller.registered == frozenset() and poller._parked == {}
        nursery.cancel_scope.cancel()
