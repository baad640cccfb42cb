"""Pipelined writes read together go to disk together: one Ready, one WAL sync (INFO
``raft_wal_syncs``; ``raft_proposed`` over it is the commands per batch a bench reads)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from chaos.cluster import free_ports
from raftkv.node.node import Node
from raftkv.testing import one_node_leader
from wire.resp import encode_command


@pytest.fixture
async def leader(tmp_path: Path) -> AsyncIterator[Node]:
    """A one-node cluster, its leader elected, its client port open, each write its own
    entry (``write_run=1``: a pipeline's writes are one entry otherwise, test_write_runs)."""
    async with one_node_leader(tmp_path / "data", *free_ports(2), write_run=1) as node:
        yield node


async def test_sixteen_pipelined_sets_are_one_wal_sync(leader: Node) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", leader.client_port)
    with trio.fail_after(20):
        # A first write: the connection is set up, the leader's own entries are synced.
        await stream.send_all(encode_command(b"SET", b"warm", b"up"))
        assert await stream.receive_some(100) == b"+OK\r\n"
        syncs, proposed = leader.stats["wal_syncs"], leader.stats["proposed"]
        await stream.send_all(b"".join(encode_command(b"SET", b"k%d" % i, b"v")
                                       for i in range(16)))
        got = b""
        while got.count(b"\r\n") < 16:
            got += await stream.receive_some(1000)
        assert got == b"+OK\r\n" * 16
    assert leader.stats["proposed"] - proposed == 16
    assert leader.stats["wal_syncs"] - syncs == 1
    await stream.aclose()


async def test_replies_written_make_no_event_each(leader: Node,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer wakes a reader waiting for output room with an Event made only when one
    waits (Connection.drained): it made a new one per reply written, a measurable share of
    a pipelined SET (issue 15). 64 pipelined SETs make far fewer than 64 Events (the node's
    own loop makes a few: a Ready, a Pending waited on)."""
    stream = await trio.open_tcp_stream("127.0.0.1", leader.client_port)
    made = 0
    event = trio.Event

    def counted() -> trio.Event:
        nonlocal made
        made += 1
        return event()

    with trio.fail_after(20):
        await stream.send_all(encode_command(b"SET", b"warm", b"up"))
        assert await stream.receive_some(100) == b"+OK\r\n"
        monkeypatch.setattr(trio, "Event", counted)
        await stream.send_all(b"".join(encode_command(b"SET", b"k%d" % i, b"v")
                                       for i in range(64)))
        got = b""
        while got.count(b"\r\n") < 64:
            got += await stream.receive_some(1000)
        monkeypatch.undo()
        assert got == b"+OK\r\n" * 64
    assert made < 32
    await stream.aclose()
