"""A client whose forwarded reply the leader dropped (over its bound for followers' clients,
raftkv.node.forwarding) is disconnected, as Redis disconnects a client over its output
buffer limit: the command was applied, so no reply may say otherwise (attack20).

One node serves a client; its ``submit`` is replaced by one that answers, when the test
says so, what the forwarder answers for a dropped reply (``REPLY_DROPPED``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import trio

from chaos.cluster import free_ports
from raftkv.node.forwarding import REPLY_DROPPED
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings
from raftkv.raft import Role
from raftkv.server.client_port import ClientServer, serve_clients
from wire.resp import encode_command


async def _received(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    got = b""
    with trio.fail_after(20):
        while data := await stream.receive_some(1 << 16):
            got += data
    return got


@pytest.mark.parametrize("pipelined", [False, True])
async def test_a_dropped_forwarded_reply_disconnects_the_client(
        tmp_path: Path, pipelined: bool) -> None:
    peer, client = free_ports(2)
    s = NodeSettings(node_id=1, client_addr=f"127.0.0.1:{client}",
                     peer_addr=f"127.0.0.1:{peer}", cluster={1: f"127.0.0.1:{peer}"},
                     data_dir=str(tmp_path / "data"), fsync="never", snapshot_entries=0)
    node = Node(s, admin=Pending.of)
    server = ClientServer(node)
    submitted: list[Pending] = []
    asked = trio.Event()

    def submit(args: list[bytes]) -> Pending:  # a write whose reply the leader dropped
        submitted.append(Pending())
        asked.set()
        return submitted[-1]

    node.submit = submit  # type: ignore[method-assign]
    # (The leader's SET: a write run of one.)
    node.submit_run = lambda commands, size: submit(commands[0])  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run, partial(serve_clients, server))
        with trio.fail_after(30):
            while node.core.role is not Role.LEADER:
                await node.driver.role_changed.wait()
        stream = await trio.open_tcp_stream("127.0.0.1", client)
        # Alone, the reply would go out from the answering task (the writer idle);
        # pipelined, the writer holds the PING's answer behind it.
        await stream.send_all(encode_command(b"SET", b"k", b"v")
                              + (encode_command(b"PING") if pipelined else b""))
        with trio.fail_after(20):
            await asked.wait()
        submitted[0].set(REPLY_DROPPED)
        assert await _received(stream) == b""  # closed: neither an answer nor the PING's
        assert server.stats["client_reply_dropped_disconnects"] == 1
        await trio.aclose_forcefully(stream)
        nursery.cancel_scope.cancel()
