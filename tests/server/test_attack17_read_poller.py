"""attack17 against cpoll's shared read poller (raftkv/node/read_poller.py).

Held (not kept here, each took seconds): 60 connections ended in every way a client can
end one (QUIT, reset with a parked reader, half-close after a pipeline, idle timeout, no
first command, a command cut in the middle) left no registration, parked reader or
remembered edge; 40 resets each followed at once by a new connection (fd reuse) got only
their own replies; redis-benchmark -k 0 -c 100 (a connection per request) on a live
3-node cluster, connected_clients back to 1 after."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from chaos.cluster import free_ports
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.read_poller import ReadPoller
from raftkv.node.settings import NodeSettings
from raftkv.raft import Role
from raftkv.server.client_port import ClientServer, serve_clients

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[tuple[int, ClientServer]]:
    peer, client = free_ports(2)
    settings = NodeSettings(node_id=1, client_addr=f"127.0.0.1:{client}",
                            peer_addr=f"127.0.0.1:{peer}", cluster={1: f"127.0.0.1:{peer}"},
                            data_dir=str(tmp_path / "data"), fsync="never",
                            snapshot_entries=0, idle_timeout=0.3,
                            first_command_timeout=0.3)  # type: ignore[arg-type]
    node = Node(settings, admin=Pending.of)
    server = ClientServer(node)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run, partial(serve_clients, server))
        with trio.fail_after(30):
            while node.core.role is not Role.LEADER:
                await node.driver.role_changed.wait()
        yield client, server
        nursery.cancel_scope.cancel()


async def _read_exactly(sock: trio.socket.SocketType, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = await sock.recv(n - len(data))
        if not more:
            break
        data += more
    return data


async def _connect(client: int) -> trio.socket.SocketType:
    sock = trio.socket.socket()
    await sock.connect(("127.0.0.1", client))
    return sock


async def test_a_client_connecting_after_the_poller_failed_is_served(
        port: tuple[int, ClientServer]) -> None:
    """cpoll: a poller that fails "falls back to trio's waits" (its log line), and its
    parked readers do; but the run keeps the stopped poller (``ReadPoller.current``), whose
    epoll is closed, so every connection accepted afterwards fails in ``register`` with a
    ValueError (not the OSError ``PlainStream`` falls back on) and is dropped unanswered:
    the node serves no new plain-text client until it restarts."""
    client, _ = port
    first = await _connect(client)
    await first.send(b"PING\r\n")
    assert await _read_exactly(first, 7) == b"+PONG\r\n"
    poller = ReadPoller.current()

    def broken() -> None:  # (a bug in wake(): the hook is dropped, the task ends)
        raise RuntimeError("injected")

    poller.wake = broken  # type: ignore[method-assign]
    await first.send(b"PING\r\n")  # an event: the hook and the task call wake()
    with trio.fail_after(5):
        assert await _read_exactly(first, 7) == b"+PONG\r\n"  # (parked: trio's wait now)
    await trio.testing.wait_all_tasks_blocked()
    assert poller.closed  # (its task logged the failure and ended)
    late = await _connect(client)
    await late.send(b"PING\r\n")
    got = b"(no reply within 2 s)"
    with trio.move_on_after(2):
        got = await _read_exactly(late, 7)
    assert got == b"+PONG\r\n", f"a new client after the poller failed got {got!r}"
    first.close()
    late.close()
