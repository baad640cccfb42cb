"""Fixtures shared across the test folders."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from chaos.cluster import free_ports
from raftkv.node.node import Node
from raftkv.node.pending import Pending
from raftkv.node.settings import NodeSettings
from raftkv.raft import Role
from raftkv.server.client_port import ClientServer, serve_clients


@asynccontextmanager
async def _one_node_leader(data_dir: Path, **settings: Any) -> AsyncIterator[Node]:
    peer, client = free_ports(2)
    node_settings = NodeSettings(node_id=1, client_addr=f"127.0.0.1:{client}",
                                 peer_addr=f"127.0.0.1:{peer}",
                                 cluster={1: f"127.0.0.1:{peer}"}, data_dir=str(data_dir),
                                 snapshot_entries=0, **settings)
    node = Node(node_settings, admin=Pending.of)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run, partial(serve_clients, ClientServer(node)))
        with trio.fail_after(30):
            while node.core.role is not Role.LEADER:
                await node.driver.role_changed.wait()
            # The leader's own publish_member entry (raftkv.node.publish) is proposed once
            # it leads: a test counting proposals or batches would count it too.
            while not node.kv.is_published(1):
                await node.next_tick()
        yield node
        nursery.cancel_scope.cancel()


@pytest.fixture
def one_node_leader(tmp_path: Path) -> Callable[..., AbstractAsyncContextManager[Node]]:
    """``async with one_node_leader(**settings) as node``: a one-node cluster in this
    process (NodeSettings ``settings`` on top of the defaults), its leader elected and
    published, its client port open; stopped on leaving."""
    return partial(_one_node_leader, tmp_path / "data")
